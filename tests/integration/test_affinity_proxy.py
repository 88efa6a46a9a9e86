"""Sticky sessions through the real proxy: both modes, spread, failures, hostile cookies."""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
from collections import Counter

import aiohttp
import pytest

from proxy.app.runtime import ProxyServer
from proxy.control.sources.static import STATIC_CLUSTER
from proxy.core.affinity import Balancer
from proxy.core.cookies import CookieSettings, parse_cookie
from proxy.core.model import Affinity, AffinityMode, Endpoint, UpstreamPolicy
from proxy.core.ring import HashRing
from tests.integration.conftest import StartProxy, StartUpstreams
from tests.integration.harness import Upstream, connect, raw_request, start_raw_upstream, url

BALANCED = Affinity(AffinityMode.BALANCED, CookieSettings(name="key"))
PERSISTENT = Affinity(AffinityMode.PERSISTENT, CookieSettings(name="key", max_age=60))


async def get(session: aiohttp.ClientSession, target: str, cookie: str | None = None):
    headers = {"Cookie": f"key={cookie}"} if cookie is not None else {}
    async with session.get(target, headers=headers) as response:
        body = await response.json() if response.status == 200 else None
        return response.status, response.headers.getall("Set-Cookie", []), body


def cookie_value(set_cookie: str) -> str:
    value = parse_cookie(set_cookie.split(";", 1)[0], "key")
    assert value is not None
    return value


@pytest.mark.parametrize("affinity", [BALANCED, PERSISTENT], ids=["balanced", "persistent"])
async def test_a_client_with_its_cookie_always_reaches_the_same_upstream(
    upstreams: StartUpstreams, proxy: StartProxy, affinity: Affinity
) -> None:
    ups = await upstreams(4)
    server = await proxy([u.endpoint for u in ups], affinity)
    async with aiohttp.ClientSession() as session:
        for _ in range(8):  # several independent clients
            status, cookies, body = await get(session, url(server))
            assert status == 200 and len(cookies) == 1
            value = cookie_value(cookies[0])
            first = body["name"]
            for _ in range(20):
                status, cookies, body = await get(session, url(server), value)
                assert (status, cookies, body["name"]) == (200, [], first)


async def test_persistent_cookie_attributes_and_key(
    upstreams: StartUpstreams, proxy: StartProxy
) -> None:
    ups = await upstreams(2)
    server = await proxy([u.endpoint for u in ups], PERSISTENT)
    balancer = Balancer.build(STATIC_CLUSTER, [u.endpoint for u in ups], PERSISTENT)
    async with aiohttp.ClientSession() as session:
        status, cookies, body = await get(session, url(server))
    assert status == 200
    _, attributes = cookies[0].split("; ", 1)
    assert attributes == "Max-Age=60; Path=/; HttpOnly"
    key, backend_key = cookie_value(cookies[0]).split("|")
    assert backend_key == balancer.backend_key
    decision = balancer.choose(key, (), False, False, random.Random(0), 0.0, 1)
    assert decision is not None and decision.endpoint.port == next(
        u.port for u in ups if u.name == body["name"]
    )


async def test_persistent_spreads_new_clients_evenly(
    upstreams: StartUpstreams, proxy: StartProxy
) -> None:
    ups = await upstreams(4)
    server = await proxy([u.endpoint for u in ups], PERSISTENT)
    async with aiohttp.ClientSession() as session:
        for _ in range(2000):
            await get(session, url(server))
    fair = 2000 / 4
    for upstream in ups:
        assert abs(upstream.requests - fair) <= 0.15 * fair, [u.requests for u in ups]


async def test_balanced_new_clients_land_where_the_ring_puts_their_key(
    upstreams: StartUpstreams, proxy: StartProxy
) -> None:
    ups = await upstreams(4)
    endpoints = [u.endpoint for u in ups]
    server = await proxy(endpoints, BALANCED)
    ring = HashRing(e.node for e in endpoints)
    node_of = {u.name: u.endpoint.node for u in ups}
    seen: Counter[str] = Counter()
    async with aiohttp.ClientSession() as session:
        for _ in range(2000):
            _, cookies, body = await get(session, url(server))
            key = cookie_value(cookies[0]).split("|")[0]
            # every single pick is exactly the ring's answer for the key it was given
            assert ring.lookup(key) == node_of[body["name"]]
            seen[body["name"]] += 1
    # and the spread follows each endpoint's share of the ring (binomial, 4.5 sigma)
    shares = ring_shares(ring)
    for upstream in ups:
        share = shares[upstream.endpoint.node]
        expected = 2000 * share
        sigma = (2000 * share * (1 - share)) ** 0.5
        assert abs(seen[upstream.name] - expected) <= 4.5 * sigma, (seen, shares)


def ring_shares(ring: HashRing) -> dict[str, float]:
    """The fraction of the 32-bit hash space each node owns (a key maps to the next point up)."""
    points, owners = ring.points, ring.owners
    owned: Counter[str] = Counter()
    previous = 0
    for point, owner in zip(points, owners, strict=True):
        owned[owner] += point - previous
        previous = point
    owned[owners[0]] += 2**32 - previous  # above the last point wraps to the first
    return {node: size / 2**32 for node, size in owned.items()}


async def pin_then_stop(
    session: aiohttp.ClientSession, server: ProxyServer, ups: list[Upstream]
) -> tuple[str, Upstream]:
    """A new session's cookie value, and its upstream, which is then stopped."""
    _, cookies, body = await get(session, url(server))
    pinned = next(u for u in ups if u.name == body["name"])
    await pinned.stop()
    return cookie_value(cookies[0]), pinned


@pytest.mark.parametrize("mode", [AffinityMode.BALANCED, AffinityMode.PERSISTENT])
async def test_change_on_failure_true_moves_the_session_with_a_new_cookie(
    upstreams: StartUpstreams, proxy: StartProxy, mode: AffinityMode
) -> None:
    ups = await upstreams(3)
    affinity = Affinity(mode, CookieSettings(name="key", change_on_failure=True))
    server = await proxy([u.endpoint for u in ups], affinity)
    async with aiohttp.ClientSession() as session:
        value, pinned = await pin_then_stop(session, server, ups)
        status, cookies, body = await get(session, url(server), value)
        assert status == 200 and body["name"] != pinned.name
        assert len(cookies) == 1 and cookie_value(cookies[0]) != value
        moved_to = body["name"]
        status, cookies, body = await get(session, url(server), cookie_value(cookies[0]))
        assert (status, cookies, body["name"]) == (200, [], moved_to)
    metrics = server.metrics
    # (counts reach the prometheus-client metrics when the registry is read, as by a scrape)
    decisions = "sticky_proxy_affinity_decisions_total"
    assert metrics.registry.get_sample_value(decisions, {"outcome": "failover"}) == 1
    assert metrics.upstream_errors.labels("connect")._value.get() == 1


async def test_change_on_failure_false_retries_the_pinned_upstream_then_502(
    upstreams: StartUpstreams, proxy: StartProxy
) -> None:
    ups = await upstreams(3)
    affinity = Affinity(AffinityMode.BALANCED, CookieSettings(name="key"))
    server = await proxy([u.endpoint for u in ups], affinity)
    async with aiohttp.ClientSession() as session:
        value, pinned = await pin_then_stop(session, server, ups)
        status, cookies, _ = await get(session, url(server), value)
        assert (status, cookies) == (502, [])
        # every one of the 3 tries went to the pinned upstream, none elsewhere
        assert server.metrics.upstream_errors.labels("connect")._value.get() == 3
        assert sum(u.requests for u in ups if u is not pinned) == 0


async def test_all_upstreams_down_is_502(upstreams: StartUpstreams, proxy: StartProxy) -> None:
    ups = await upstreams(2)
    server = await proxy([u.endpoint for u in ups], BALANCED)
    for upstream in ups:
        await upstream.stop()
    async with aiohttp.ClientSession() as session:
        status, cookies, _ = await get(session, url(server))
    assert status == 502 and cookies == []


async def test_a_connect_timeout_ends_in_504(proxy: StartProxy) -> None:
    # A listener that never accepts and whose backlog is full leaves further SYNs unanswered,
    # so connecting can only time out, all on loopback.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    for _ in range(8):  # fill the accept queue so further SYNs go unanswered
        filler = socket.socket()
        filler.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            filler.connect(("127.0.0.1", port))
        fillers.append(filler)
    server = await proxy(
        [Endpoint("127.0.0.1", port)],
        BALANCED,
        UpstreamPolicy(connect_timeout=0.2, next_upstream_tries=2),
    )
    try:
        async with aiohttp.ClientSession() as session:
            status, cookies, _ = await get(session, url(server))
        assert status == 504 and cookies == []
    finally:
        for s in (*fillers, listener):
            s.close()


@pytest.mark.parametrize("mode", [AffinityMode.BALANCED, AffinityMode.PERSISTENT])
@pytest.mark.parametrize(
    "cookie",
    ["", "|", "||||", "x" * 4096, "ключ", "deadbeef" * 4 + "|forged", '"quoted"', "a;b=c", "=",
     "%00%ff", "1700000001.1.1.1|" + "f" * 32],
    ids=["empty", "pipe", "pipes", "4k-junk", "non-ascii", "forged", "quoted", "semicolon",
         "equals", "percent", "foreign-backend"],
)  # fmt: skip
async def test_bad_cookies_get_a_working_answer(
    upstreams: StartUpstreams, proxy: StartProxy, mode: AffinityMode, cookie: str
) -> None:
    ups = await upstreams(2)
    server = await proxy([u.endpoint for u in ups], Affinity(mode, CookieSettings(name="key")))
    header = f"key={cookie}".encode()
    response = await raw_request(
        server,
        b"GET / HTTP/1.1\r\nHost: t\r\nCookie: " + header + b"\r\nConnection: close\r\n\r\n",
    )
    assert response.startswith(b"HTTP/1.1 200 "), response[:200]


async def test_control_bytes_in_a_cookie_are_a_bad_request(
    upstreams: StartUpstreams, proxy: StartProxy
) -> None:
    ups = await upstreams(1)
    server = await proxy([u.endpoint for u in ups], BALANCED)
    response = await raw_request(
        server, b"GET / HTTP/1.1\r\nHost: t\r\nCookie: key=\x01\x7f\r\n\r\n"
    )
    assert response.startswith(b"HTTP/1.1 400 ") and ups[0].requests == 0


@pytest.mark.parametrize(("method", "tries"), [("GET", 2), ("PUT", 2), ("POST", 1)])
async def test_a_request_the_upstream_may_have_seen_is_retried_only_if_idempotent(
    proxy: StartProxy, method: str, tries: int
) -> None:
    # Both upstreams read the whole request, then close without answering.
    raws = [await start_raw_upstream(b"") for _ in range(2)]
    try:
        server = await proxy([r.endpoint for r in raws], None)
        head = f"{method} / HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\nConnection: close\r\n"
        response = await raw_request(server, head.encode() + b"\r\nhi")
        assert response.startswith(b"HTTP/1.1 502 ")
        assert sum(len(r.received) for r in raws) == tries
    finally:
        for raw in raws:
            await raw.stop()


async def test_an_upstream_that_stops_reading_the_body_is_504(proxy: StartProxy) -> None:
    raw = await start_raw_upstream(b"", close=False)  # reads the head, then nothing
    try:
        server = await proxy([raw.endpoint], None, UpstreamPolicy(send_timeout=0.3, body_size=0))
        reader, writer = await connect(server)
        writer.write(b"PUT / HTTP/1.1\r\nHost: t\r\nContent-Length: 100000000\r\n\r\n")

        async def upload() -> None:  # like a real client: sends while it waits for an answer
            with contextlib.suppress(ConnectionError):
                for _ in range(100_000_000 // 65536):
                    writer.write(b"b" * 65536)
                    await writer.drain()

        uploading = asyncio.ensure_future(upload())
        answer = await asyncio.wait_for(reader.read(4096), 10)
        uploading.cancel()
        writer.close()
        assert answer.startswith(b"HTTP/1.1 504 ")
    finally:
        await raw.stop()

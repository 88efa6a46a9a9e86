"""Passive outlier ejection through the real proxy (docs/behaviour.md, "Outlier ejection"):
sessions pinned to a pod that stops listening, with and without ejection, with and without
change-on-failure, and the pod's return."""

from __future__ import annotations

import aiohttp
import pytest

from proxy.app.runtime import ProxyServer
from proxy.control.sources.static import STATIC_CLUSTER, static_snapshot
from proxy.core.cookies import CookieSettings, parse_cookie
from proxy.core.model import Affinity, AffinityMode, UpstreamPolicy
from tests.integration.cluster import until
from tests.integration.conftest import StartProxy, StartUpstreams
from tests.integration.harness import Upstream, start_upstream, url

EJECTING = UpstreamPolicy(eject_after_failures=2, eject_seconds=0.2)


def affinity(mode: AffinityMode = AffinityMode.BALANCED, change_on_failure: bool = False):
    return Affinity(mode, CookieSettings(name="key", change_on_failure=change_on_failure))


async def get(
    session: aiohttp.ClientSession, server: ProxyServer, cookie: str | None = None
) -> tuple[int, str | None, str | None]:
    """(status, the upstream's name, the new affinity cookie value if any)."""
    headers = {"Cookie": f"key={cookie}"} if cookie is not None else {}
    async with session.get(url(server), headers=headers) as response:
        name = (await response.json())["name"] if response.status == 200 else None
        new = None
        for line in response.headers.getall("Set-Cookie", []):
            new = parse_cookie(line.split(";", 1)[0], "key")
        return response.status, name, new


async def sessions_on(
    session: aiohttp.ClientSession, server: ProxyServer, victim: Upstream, wanted: int
) -> list[str]:
    """Cookies of `wanted` new sessions that landed on `victim` (a 3-pod ring gives each pod
    a share well above 1/20: 200 new sessions find them)."""
    found: list[str] = []
    for _ in range(200):
        status, name, cookie = await get(session, server)
        assert status == 200 and cookie is not None
        if name == victim.name:
            found.append(cookie)
            if len(found) == wanted:
                return found
    raise AssertionError(f"fewer than {wanted} of 200 new sessions on {victim.name}")


def sample(server: ProxyServer, name: str, victim: Upstream) -> float | None:
    return server.metrics.registry.get_sample_value(
        name, {"cluster": STATIC_CLUSTER, "endpoint": victim.endpoint.node}
    )


async def status_row(server: ProxyServer, victim: Upstream) -> dict[str, object]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://{server.metrics_address}/status") as response,
    ):
        status = await response.json()
    node = victim.endpoint.node
    (row,) = [e for c in status["clusters"] for e in c["endpoints"] if e["address"] == node]
    return row


@pytest.mark.parametrize("mode", list(AffinityMode))
async def test_without_ejection_a_session_on_a_dead_pod_fails_every_request(
    upstreams: StartUpstreams, proxy: StartProxy, mode: AffinityMode
) -> None:
    ups = await upstreams(3)
    server = await proxy([u.endpoint for u in ups], affinity(mode))
    victim = ups[0]
    async with aiohttp.ClientSession() as session:
        (cookie,) = await sessions_on(session, server, victim, 1)
        await victim.stop()
        # ingress-nginx's default: every try goes back to the cookie's pod
        answers = [await get(session, server, cookie) for _ in range(5)]
    assert answers == [(502, None, None)] * 5
    assert sample(server, "sticky_proxy_endpoint_ejections_total", victim) is None


@pytest.mark.parametrize("mode", list(AffinityMode))
async def test_an_ejected_pod_s_sessions_are_served_elsewhere_without_a_new_cookie(
    upstreams: StartUpstreams, proxy: StartProxy, mode: AffinityMode
) -> None:
    ups = await upstreams(3)
    server = await proxy([u.endpoint for u in ups], affinity(mode), EJECTING)
    victim = ups[0]
    async with aiohttp.ClientSession() as session:
        cookies = await sessions_on(session, server, victim, 4)
        await victim.stop()
        # the first request fails twice on the dead pod, which ejects it: its third try goes
        # to the stand-in, and so does every later request of every session of that pod
        first = await get(session, server, cookies[0])
        assert first[0] == 200 and first[1] != victim.name and first[2] is None
        for cookie in cookies:
            answers = {await get(session, server, cookie) for _ in range(5)}
            assert len(answers) == 1, answers  # one stand-in per session
            ((status, name, new),) = answers
            assert status == 200 and name != victim.name and new is None
    errors = server.metrics.registry.get_sample_value(
        "sticky_proxy_upstream_errors_total", {"reason": "connect"}
    )
    assert errors is not None and errors >= 2
    assert sample(server, "sticky_proxy_endpoint_ejections_total", victim) is not None
    assert sample(server, "sticky_proxy_endpoint_ejected", victim) == 1
    row = await status_row(server, victim)
    assert row["ejected"] == 1 and row["ejections"] >= 1  # type: ignore[operator]


async def test_with_change_on_failure_an_ejected_pod_s_sessions_get_a_new_cookie(
    upstreams: StartUpstreams, proxy: StartProxy
) -> None:
    ups = await upstreams(3)
    server = await proxy([u.endpoint for u in ups], affinity(change_on_failure=True), EJECTING)
    victim = ups[0]
    async with aiohttp.ClientSession() as session:
        cookies = await sessions_on(session, server, victim, 3)
        await victim.stop()
        # Two sessions fail once each (change-on-failure moves them), and the pod is ejected.
        for cookie in cookies[:2]:
            status, name, new = await get(session, server, cookie)
            assert status == 200 and name != victim.name and new is not None
        registry = server.metrics.registry
        errors = {"reason": "connect"}
        failed = registry.get_sample_value("sticky_proxy_upstream_errors_total", errors)
        assert failed == 2 and sample(server, "sticky_proxy_endpoint_ejected", victim) == 1
        # the third session's request goes straight elsewhere, with a new cookie for it
        status, name, new = await get(session, server, cookies[2])
        assert status == 200 and name != victim.name and new is not None
        assert registry.get_sample_value("sticky_proxy_upstream_errors_total", errors) == 2
        # which the session then keeps
        assert await get(session, server, new) == (200, name, None)


async def test_a_pod_that_comes_back_gets_its_sessions_back(
    upstreams: StartUpstreams, proxy: StartProxy
) -> None:
    ups = await upstreams(3)
    server = await proxy([u.endpoint for u in ups], affinity(), EJECTING)
    victim = ups[0]
    async with aiohttp.ClientSession() as session:
        (cookie,) = await sessions_on(session, server, victim, 1)
        await victim.stop()
        status, stand_in, _ = await get(session, server, cookie)
        assert status == 200 and stand_in != victim.name
        back = await start_upstream(victim.name, port=victim.port)
        try:
            # a probe at the end of the back-off (0.2 s, doubling while the pod was down)
            # finds it listening again
            await until(
                lambda: sample(server, "sticky_proxy_endpoint_ejected", victim) == 0,
                "the pod back in service",
            )
            assert await get(session, server, cookie) == (200, victim.name, None)
        finally:
            await back.stop()
    row = await status_row(server, victim)
    assert row["ejected"] == 0 and row["ejections"] >= 1  # type: ignore[operator]


async def test_with_every_pod_ejected_requests_still_try_them(
    upstreams: StartUpstreams, proxy: StartProxy
) -> None:
    ups = await upstreams(2)
    policy = UpstreamPolicy(eject_after_failures=1, eject_seconds=60.0)
    server = await proxy([u.endpoint for u in ups], affinity(), policy)
    async with aiohttp.ClientSession() as session:
        for upstream in ups:
            await upstream.stop()
        assert (await get(session, server))[0] == 502  # both tried, both ejected
        for upstream in ups:
            assert sample(server, "sticky_proxy_endpoint_ejected", upstream) == 1
        # fail open: not a 503 for "nothing left", but tries on the ejected pods
        assert (await get(session, server))[0] == 502
    errors = server.metrics.registry.get_sample_value(
        "sticky_proxy_upstream_errors_total", {"reason": "connect"}
    )
    assert errors == 4


async def test_a_pod_that_stops_answering_is_ejected_after_read_timeouts(
    upstreams: StartUpstreams, proxy: StartProxy
) -> None:
    ups = await upstreams(3)
    policy = UpstreamPolicy(read_timeout=0.2, eject_after_failures=2, eject_seconds=60.0)
    server = await proxy([u.endpoint for u in ups], affinity(), policy)
    victim = ups[0]
    async with aiohttp.ClientSession() as session:
        (cookie,) = await sessions_on(session, server, victim, 1)
        victim.slow_seconds = 30.0  # listening, but never answering in time
        headers = {"Cookie": f"key={cookie}"}
        async with session.get(url(server, "/slow"), headers=headers) as response:
            assert response.status == 200
            assert await response.text() != victim.name
    timeouts = server.metrics.registry.get_sample_value(
        "sticky_proxy_upstream_errors_total", {"reason": "timeout"}
    )
    assert timeouts == 2
    assert sample(server, "sticky_proxy_endpoint_ejected", victim) == 1


async def test_a_pod_that_leaves_the_table_is_forgotten(
    upstreams: StartUpstreams, proxy: StartProxy
) -> None:
    ups = await upstreams(3)
    server = await proxy([u.endpoint for u in ups], affinity(), EJECTING)
    victim = ups[0]
    async with aiohttp.ClientSession() as session:
        (cookie,) = await sessions_on(session, server, victim, 1)
        await victim.stop()
        assert (await get(session, server, cookie))[0] == 200
        assert server.ctx is not None and victim.endpoint.node in server.ctx.ejections.ejected
        server.publisher.publish(
            static_snapshot([u.endpoint for u in ups[1:]], affinity(), EJECTING)
        )
        status, name, new = await get(session, server, cookie)  # the ring maps it anew
        assert status == 200 and name != victim.name and new is None
    assert not server.ctx.ejections.watched and not server.ctx.ejections.ejected
    assert sample(server, "sticky_proxy_endpoint_ejected", victim) is None  # its series went too

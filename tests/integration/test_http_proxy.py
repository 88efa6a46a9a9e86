"""HTTP behaviour of the data plane over real sockets (docs/behaviour.md, "HTTP handling")."""

from __future__ import annotations

import asyncio
import json
import re
import resource

import aiohttp
import pytest

from proxy.app.runtime import ProxyServer
from proxy.app.settings import ServeSettings
from proxy.control.sources.static import static_snapshot
from proxy.core.affinity import build_cluster
from proxy.core.model import Affinity, Endpoint, PathType, UpstreamPolicy
from proxy.core.routing import Route, Snapshot
from proxy.core.values import Address
from tests.integration.conftest import StartProxy, StartUpstreams
from tests.integration.harness import connect, raw_request, url

CLOSE = b"Connection: close\r\n"


def echoed_headers(body: dict[str, object]) -> dict[str, list[str]]:
    headers: dict[str, list[str]] = {}
    for name, value in body["headers"]:  # type: ignore[attr-defined]
        headers.setdefault(name.lower(), []).append(value)
    return headers


def parse_responses(data: bytes) -> list[tuple[int, dict[str, str], bytes]]:
    """Split raw bytes into (status, headers, body) for Content-Length framed answers."""
    responses = []
    while data:
        head, _, rest = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
        length = int(headers.get("content-length", "0"))
        responses.append((status, headers, rest[:length]))
        data = rest[length:]
    return responses


async def test_headers_are_rewritten_like_a_reverse_proxy(
    upstreams: StartUpstreams, proxy: StartProxy
) -> None:
    (up,) = await upstreams(1)
    server = await proxy([up.endpoint], None)
    request = (
        b"GET /a%2Fb/c?x=%20&y HTTP/1.1\r\nHost: Sticky.Info:8080\r\n"
        b"Connection: keep-alive, X-Secret\r\nX-Secret: hop\r\nKeep-Alive: timeout=5\r\n"
        b"TE: trailers\r\nTrailer: X-T\r\nProxy-Connection: keep-alive\r\nUpgrade: h2c\r\n"
        b"X-Forwarded-For: 10.0.0.1\r\nX-Request-ID: abc-123\r\nX-Real-IP: 6.6.6.6\r\n"
        b"X-Custom: one\r\nX-Custom: two\r\n" + CLOSE + b"\r\n"
    )
    ((status, _, body),) = parse_responses(await raw_request(server, request))
    assert status == 200
    echoed = json.loads(body)
    assert echoed["method"] == "GET" and echoed["path_qs"] == "/a%2Fb/c?x=%20&y"
    headers = echoed_headers(echoed)
    for hop in ("connection", "x-secret", "keep-alive", "te", "trailer", "proxy-connection",
                "upgrade"):  # fmt: skip
        assert hop not in headers, hop
    assert headers["host"] == ["Sticky.Info:8080"]
    assert headers["x-custom"] == ["one", "two"]
    assert headers["x-forwarded-for"] == ["10.0.0.1, 127.0.0.1"]
    assert headers["x-real-ip"] == ["127.0.0.1"]
    assert headers["x-forwarded-host"] == ["Sticky.Info:8080"]
    assert headers["x-forwarded-proto"] == ["http"]
    assert server.address is not None
    assert headers["x-forwarded-port"] == [str(server.address.port)]
    assert headers["x-request-id"] == ["abc-123"]


async def test_a_request_id_is_generated_when_missing(
    upstreams: StartUpstreams, proxy: StartProxy
) -> None:
    (up,) = await upstreams(1)
    server = await proxy([up.endpoint], None)
    async with aiohttp.ClientSession() as session:
        ids = set()
        for _ in range(3):
            async with session.get(url(server)) as response:
                (request_id,) = echoed_headers(await response.json())["x-request-id"]
                assert re.fullmatch(r"[0-9a-f]{32}", request_id)
                ids.add(request_id)
    assert len(ids) == 3


async def test_every_upstream_set_cookie_is_kept_and_the_affinity_cookie_added(
    upstreams: StartUpstreams, proxy: StartProxy
) -> None:
    (up,) = await upstreams(1)
    up.set_cookies = ["a=1; Path=/", "b=2; HttpOnly"]
    server = await proxy([up.endpoint], Affinity())
    async with aiohttp.ClientSession() as session, session.get(url(server)) as response:
        cookies = response.headers.getall("Set-Cookie")
    assert cookies[:2] == ["a=1; Path=/", "b=2; HttpOnly"]
    assert cookies[2].startswith("INGRESSCOOKIE=") and cookies[2].endswith("; Path=/; HttpOnly")


async def test_request_bodies_pass_through_with_length_or_chunked(
    upstreams: StartUpstreams, proxy: StartProxy
) -> None:
    (up,) = await upstreams(1)
    server = await proxy([up.endpoint], None, UpstreamPolicy(body_size=0))
    async with aiohttp.ClientSession() as session:
        payload = bytes(range(256)) * 40_000  # 10 MB, larger than any buffer on the way
        async with session.post(url(server, "/upload"), data=payload) as response:
            assert (await response.json())["body_size"] == len(payload)

        async def chunks():  # no length: aiohttp sends it chunked
            for _ in range(50):
                yield b"y" * 10_000

        async with session.put(url(server, "/upload"), data=chunks()) as response:
            echoed = await response.json()
    assert echoed["body_size"] == 500_000 and echoed["method"] == "PUT"
    assert echoed_headers(echoed)["transfer-encoding"] == ["chunked"]


async def test_large_responses_stream_through(upstreams: StartUpstreams, proxy: StartProxy) -> None:
    (up,) = await upstreams(1)
    server = await proxy([up.endpoint], None)
    total = 0
    async with (
        aiohttp.ClientSession() as session,
        session.get(url(server, "/big?size=20000000")) as response,
    ):
        async for block in response.content.iter_chunked(1 << 20):
            total += len(block)
    assert total == 20_000_000


async def test_a_chunked_response_is_relayed_as_it_arrives(
    upstreams: StartUpstreams, proxy: StartProxy
) -> None:
    (up,) = await upstreams(1)
    server = await proxy([up.endpoint], None)
    async with aiohttp.ClientSession() as session, session.get(url(server, "/stream")) as response:
        first = await asyncio.wait_for(response.content.readexactly(6), 5)
        assert first == b"first;"  # arrived while the upstream still holds the rest back
        up.release.set()
        assert await response.content.read() == b"second"


async def test_body_over_the_limit_is_413(upstreams: StartUpstreams, proxy: StartProxy) -> None:
    (up,) = await upstreams(1)
    server = await proxy([up.endpoint], None, UpstreamPolicy(body_size=1000))
    declared = await raw_request(
        server, b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 1001\r\n\r\n" + b"z" * 1001
    )
    assert declared.startswith(b"HTTP/1.1 413 ")
    chunk = b"400\r\n" + b"z" * 0x400 + b"\r\n"
    streamed = await raw_request(
        server, b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n" + chunk
    )
    assert streamed.startswith(b"HTTP/1.1 413 ")
    assert up.requests == 0


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GARBAGE\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", 400),
        (b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
         b"0\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: t\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n", 431),
        (b"GET / HTTP/1.1\r\nHost: t\r\n" + b"X-Many: aaaaaaaaaaaaaaaaaaaaaaaaa\r\n" * 2000, 431),
        (b"GET /" + b"p" * 9000 + b" HTTP/1.1\r\nHost: t\r\n\r\n", 431),
    ],
    ids=["garbage", "two-lengths", "length-and-chunked", "gzip-te", "two-hosts", "no-host",
         "long-header", "many-headers", "long-target"],
)  # fmt: skip
async def test_malformed_requests_get_a_4xx_and_a_closed_connection(
    upstreams: StartUpstreams, proxy: StartProxy, request_bytes: bytes, status: int
) -> None:
    (up,) = await upstreams(1)
    server = await proxy([up.endpoint], None)
    response = await raw_request(server, request_bytes)
    assert response.startswith(b"HTTP/1.1 %d " % status), response[:100]
    assert b"Connection: close" in response
    assert up.requests == 0


async def test_pipelined_requests_are_answered_in_order(
    upstreams: StartUpstreams, proxy: StartProxy
) -> None:
    (up,) = await upstreams(1)
    server = await proxy([up.endpoint], None)
    requests = (
        b"".join(b"GET /%d HTTP/1.1\r\nHost: t\r\n\r\n" % i for i in range(5))
        + b"HEAD /h HTTP/1.1\r\nHost: t\r\n\r\nGET /last HTTP/1.1\r\nHost: t\r\n"
        + CLOSE
        + b"\r\n"
    )
    answers = await raw_request(server, requests)
    # HEAD carries a Content-Length but no body: split it off by hand
    head_at = answers.index(b"HTTP/1.1", answers.index(b'"/4"'))
    tail = answers[head_at:]
    head_end = tail.index(b"\r\n\r\n") + 4
    paths = [json.loads(body)["path_qs"] for _, _, body in parse_responses(answers[:head_at])]
    assert paths == ["/0", "/1", "/2", "/3", "/4"]
    assert tail.startswith(b"HTTP/1.1 200 ") and b"Content-Length: " in tail[:head_end]
    ((status, _, body),) = parse_responses(tail[head_end:])
    assert status == 200 and json.loads(body)["path_qs"] == "/last"


async def test_upstream_connections_are_reused(
    upstreams: StartUpstreams, proxy: StartProxy
) -> None:
    (up,) = await upstreams(1)
    server = await proxy([up.endpoint], None)
    async with aiohttp.ClientSession() as session:
        for _ in range(50):
            async with session.get(url(server)) as response:
                assert response.status == 200
    assert up.requests == 50 and len(up.transports) == 1


async def test_an_http10_client_gets_a_close_delimited_stream(
    upstreams: StartUpstreams, proxy: StartProxy
) -> None:
    (up,) = await upstreams(1)
    up.release.set()
    server = await proxy([up.endpoint], None)
    response = await raw_request(server, b"GET /stream HTTP/1.0\r\n\r\n")
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ") and b"chunked" not in head.lower()
    assert b"Connection: close" in head and body == b"first;second"


async def test_read_timeout_is_504_after_trying_each_endpoint_once(
    upstreams: StartUpstreams, proxy: StartProxy
) -> None:
    ups = await upstreams(2)
    for up in ups:
        up.slow_seconds = 2.0
    server = await proxy([u.endpoint for u in ups], None, UpstreamPolicy(read_timeout=0.2))
    async with aiohttp.ClientSession() as session, session.get(url(server, "/slow")) as response:
        assert response.status == 504
    # 3 tries allowed, but a new pick never repeats an endpoint: 2 tries, one each
    assert server.metrics.upstream_errors.labels("timeout")._value.get() == 2
    assert [up.requests for up in ups] == [1, 1]


async def test_header_timeout_is_408(upstreams: StartUpstreams, proxy: StartProxy) -> None:
    (up,) = await upstreams(1)
    server = await proxy([up.endpoint], None, client_header_timeout=0.3)
    response = await raw_request(server, b"GET / HTTP/1.1\r\nHost: t\r\n", timeout=3)
    assert response.startswith(b"HTTP/1.1 408 ")


async def _serve(snapshot: Snapshot) -> ProxyServer:
    server = ProxyServer(
        ServeSettings(listen=Address("127.0.0.1", 0), metrics_listen=None), snapshot
    )
    await server.start()
    return server


async def test_no_route_is_404_and_no_endpoint_is_503(upstreams: StartUpstreams) -> None:
    (up,) = await upstreams(1)
    empty = build_cluster("default-empty-80", [], Affinity())
    full = build_cluster("default-app-80", [up.endpoint], Affinity())
    routes = (
        Route("app.test", "/", PathType.PREFIX, full, True, "/"),
        Route("empty.test", "/", PathType.PREFIX, empty, True, "/"),
    )
    server = await _serve(Snapshot(routes))
    try:
        async with aiohttp.ClientSession() as session:
            for host, status in (("app.test", 200), ("empty.test", 503), ("other.test", 404)):
                async with session.get(url(server), headers={"Host": host}) as response:
                    assert response.status == status, host
                    if status != 200:
                        assert response.headers["Content-Type"].startswith("text/plain")
                        assert "Set-Cookie" not in response.headers
    finally:
        await server.stop(grace=0.1)


async def test_the_proxys_own_answers_to_head_have_no_body(upstreams: StartUpstreams) -> None:
    (up,) = await upstreams(1)
    full = build_cluster("default-app-80", [up.endpoint], Affinity())
    server = await _serve(Snapshot((Route("app.test", "/", PathType.PREFIX, full, True, "/"),)))
    try:
        answer = await raw_request(server, b"HEAD / HTTP/1.1\r\nHost: other.test\r\n\r\n")
    finally:
        await server.stop(grace=0.1)
    # The head a GET would get, and nothing after it: a client that keeps the connection would
    # read a body here as the start of its next answer.
    assert answer.startswith(b"HTTP/1.1 404 ")
    assert b"Content-Length: 14\r\n" in answer
    assert answer.endswith(b"\r\n\r\n")


async def test_health_readiness_and_metrics_endpoints(
    upstreams: StartUpstreams, proxy: StartProxy
) -> None:
    (up,) = await upstreams(1)
    server = await proxy([up.endpoint], Affinity())
    admin = f"http://{server.metrics_address}"
    async with aiohttp.ClientSession() as session:
        async with session.get(url(server)) as response:
            assert response.status == 200
        for path in ("/healthz", "/readyz"):
            async with session.get(admin + path) as response:
                assert response.status == 200, path
        async with session.get(admin + "/metrics") as response:
            text = await response.text()
    assert 'sticky_proxy_affinity_decisions_total{outcome="new"} 1.0' in text
    assert 'sticky_proxy_affinity_decisions_total{outcome="sticky"} 0.0' in text
    assert re.search(
        r'sticky_proxy_requests_total\{[^}]*method="GET"[^}]*status="200"\} 1\.0', text
    )


async def test_not_ready_until_a_snapshot_arrives() -> None:
    """Requests wait for the first snapshot instead (tests/integration/test_first_table.py)."""
    server = ProxyServer(
        ServeSettings(listen=Address("127.0.0.1", 0), metrics_listen=Address("127.0.0.1", 0))
    )
    await server.start()
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://{server.metrics_address}/readyz") as response:
                assert response.status == 503
            with pytest.raises(TimeoutError):  # no answer at all, not even a 503
                await asyncio.wait_for(session.get(url(server)), 0.3)
    finally:
        await server.stop(grace=0.1)


async def test_endpoint_without_listener_gets_502_quickly(proxy: StartProxy) -> None:
    server = await proxy([Endpoint("127.0.0.1", 1)], Affinity())
    async with aiohttp.ClientSession() as session, session.get(url(server)) as response:
        assert response.status == 502


async def test_shutdown_finishes_requests_in_flight(
    upstreams: StartUpstreams, proxy: StartProxy
) -> None:
    (up,) = await upstreams(1)
    up.slow_seconds = 0.5
    server = await proxy([up.endpoint], None)
    async with aiohttp.ClientSession() as session:
        in_flight = asyncio.ensure_future(session.get(url(server, "/slow")))
        while up.requests == 0:
            await asyncio.sleep(0.01)
        stopping = asyncio.ensure_future(server.stop(grace=5))
        response = await in_flight
        assert response.status == 200 and await response.text() == up.name
        assert response.headers["Connection"] == "close"
        await stopping
    with pytest.raises(OSError):
        await connect(server)


async def test_websocket_upgrade_is_proxied_with_the_same_affinity(
    upstreams: StartUpstreams, proxy: StartProxy
) -> None:
    ups = await upstreams(3)
    server = await proxy([u.endpoint for u in ups], Affinity())
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(url(server, "/ws")) as ws:
            (set_cookie,) = ws._response.headers.getall("Set-Cookie")
            await ws.send_str("hello")
            first = (await ws.receive_str()).split(":")[0]
            await ws.send_str("x" * 100_000)
            assert await ws.receive_str() == f"{first}:" + "x" * 100_000
            await ws.send_str("bye")
            closing = await ws.receive()
            assert closing.type == aiohttp.WSMsgType.CLOSE and closing.data == 4001
        cookie = set_cookie.split(";")[0]
        for _ in range(5):  # the cookie from the 101 pins later upgrades and plain requests
            async with session.ws_connect(url(server, "/ws"), headers={"Cookie": cookie}) as ws:
                assert "Set-Cookie" not in ws._response.headers
                await ws.send_str("again")
                assert await ws.receive_str() == f"{first}:again"
            async with session.get(url(server), headers={"Cookie": cookie}) as response:
                assert (await response.json())["name"] == first


async def test_connections_to_endpoints_that_left_the_table_are_closed(
    upstreams: StartUpstreams, proxy: StartProxy
) -> None:
    ups = await upstreams(2)
    server = await proxy([u.endpoint for u in ups], None)
    async with aiohttp.ClientSession() as session:
        for _ in range(20):  # both endpoints now have an idle pooled connection
            async with session.get(url(server)) as response:
                assert response.status == 200
        assert all(u.transports for u in ups)
        (gone_transport,) = ups[1].transports
        server.publisher.publish(static_snapshot([ups[0].endpoint], None, UpstreamPolicy()))
        async with session.get(url(server)) as response:
            assert (await response.json())["name"] == ups[0].name
        await asyncio.sleep(0.1)
        assert gone_transport.is_closing()  # type: ignore[attr-defined]
        assert not next(iter(ups[0].transports)).is_closing()  # type: ignore[attr-defined]


async def test_a_thousand_concurrent_keep_alive_clients(
    upstreams: StartUpstreams, proxy: StartProxy
) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < 6000:
        pytest.skip(f"needs 6000 file descriptors, the hard limit here is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 6000), hard))
    ups = await upstreams(2)
    server = await proxy([u.endpoint for u in ups], Affinity())
    assert server.address is not None
    host, port = server.address.host, server.address.port

    async def client() -> list[bytes]:
        reader, writer = await asyncio.open_connection(host, port)
        heads = []
        try:
            for _ in range(2):  # two requests on one connection: keep-alive holds
                writer.write(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
                heads.append(await reader.readuntil(b"\r\n\r\n"))
                length = int(re.search(rb"Content-Length: (\d+)", heads[-1])[1])  # type: ignore[index]
                await reader.readexactly(length)
        finally:
            writer.close()
        return heads

    async with asyncio.timeout(60):
        results = await asyncio.gather(*(client() for _ in range(1000)))
    assert all(head.startswith(b"HTTP/1.1 200 ") for heads in results for head in heads)
    assert sum(u.requests for u in ups) == 2000


async def test_an_upstream_killed_mid_response_cuts_only_its_own_answers(
    upstreams: StartUpstreams, proxy: StartProxy
) -> None:
    doomed, healthy = await upstreams(2)
    server_doomed = await proxy([doomed.endpoint], None)
    server_healthy = await proxy([healthy.endpoint], None)
    async with aiohttp.ClientSession() as session:
        async with session.get(url(server_doomed, "/stream")) as response:
            assert await response.content.readexactly(6) == b"first;"
            await doomed.stop()  # the upstream dies with the answer half sent
            with pytest.raises(aiohttp.ClientPayloadError):
                await response.content.read()
        for _ in range(5):
            async with session.get(url(server_healthy)) as response:
                assert response.status == 200


async def test_shutdown_lets_websockets_talk_until_the_grace_ends(
    upstreams: StartUpstreams, proxy: StartProxy
) -> None:
    (up,) = await upstreams(1)
    server = await proxy([up.endpoint], Affinity())
    async with aiohttp.ClientSession() as session, session.ws_connect(url(server, "/ws")) as ws:
        loop = asyncio.get_running_loop()
        started = loop.time()
        stopping = asyncio.ensure_future(server.stop(grace=1.0))
        await asyncio.sleep(0.3)
        await ws.send_str("still here")  # within the grace the tunnel keeps working
        assert (await ws.receive_str()).endswith(":still here")
        closing = await asyncio.wait_for(ws.receive(), 5)  # then the proxy ends it
        assert closing.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
        await stopping
        assert 0.9 <= loop.time() - started < 3

"""Requests and upstream answers a trustworthy proxy must handle (issue 5;
docs/behaviour.md, "Error statuses")."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from proxy.core.model import Affinity
from tests.integration.conftest import StartProxy, StartUpstreams
from tests.integration.harness import connect, raw_request, start_raw_upstream, url


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET http://evil.example/ HTTP/1.1\r\nHost: t\r\n\r\n",
        b"CONNECT evil.example:443 HTTP/1.1\r\nHost: evil.example:443\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: user@evil\r\n\r\n",
        b"GET / HTTP/1.1\nHost: t\n\n",
        b"GET / HTTP/1.1\r\nHost: t\r\nX-A: a\x00b\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: t\r\nX-A : b\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: -1\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 1,2\r\n\r\nab",
        b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: +3\r\n\r\nabc",
    ],
    ids=["absolute-form", "connect", "host-slash", "host-space", "host-userinfo", "bare-lf",
         "nul-in-header", "space-before-colon", "te-xchunked", "te-chunked-identity",
         "bad-chunk-size", "negative-length", "list-length", "plus-length"],
)  # fmt: skip
async def test_smuggling_and_malformed_heads_are_400_and_never_reach_an_upstream(
    upstreams: StartUpstreams, proxy: StartProxy, request_bytes: bytes
) -> None:
    (up,) = await upstreams(1)
    server = await proxy([up.endpoint], None)
    response = await raw_request(server, request_bytes)
    assert response.startswith(b"HTTP/1.1 400 "), response[:120]
    assert b"Connection: close" in response
    assert up.requests == 0


async def test_a_bad_request_behind_a_good_one_is_answered_after_it(
    upstreams: StartUpstreams, proxy: StartProxy
) -> None:
    (up,) = await upstreams(1)
    server = await proxy([up.endpoint], None)
    response = await raw_request(
        server, b"GET /ok HTTP/1.1\r\nHost: t\r\n\r\nGET http://x/ HTTP/1.1\r\nHost: t\r\n\r\n"
    )
    first, _, rest = response.partition(b"}")
    assert first.startswith(b"HTTP/1.1 200 ") and b'"/ok"' in first
    assert rest.startswith(b"HTTP/1.1 400 ") and up.requests == 1


async def test_an_upstream_body_that_ends_at_close_is_relayed_whole(proxy: StartProxy) -> None:
    raw = await start_raw_upstream(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nall of it")
    try:
        server = await proxy([raw.endpoint], None)
        async with aiohttp.ClientSession() as session, session.get(url(server)) as response:
            assert response.status == 200
            assert response.headers["Transfer-Encoding"] == "chunked"
            assert await response.text() == "all of it"
            # and the downstream connection stays usable
        async with aiohttp.ClientSession() as session, session.get(url(server)) as response:
            assert await response.text() == "all of it"
    finally:
        await raw.stop()


@pytest.mark.parametrize(
    "answer",
    [b"NOT HTTP AT ALL\r\n\r\n", b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", b""],
    ids=["garbage", "truncated-body", "closed-without-answer"],
)
async def test_a_broken_upstream_answer_is_502_or_a_cut_response(
    proxy: StartProxy, answer: bytes
) -> None:
    raw = await start_raw_upstream(answer)
    try:
        server = await proxy([raw.endpoint], None)
        request = b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
        response = await raw_request(server, request, timeout=3)
        if answer.startswith(b"HTTP/1.1 200"):
            # the head was relayed before the body broke: the client sees a short body and a close
            head, _, body = response.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200 ") and body == b"short"
        else:
            assert response.startswith(b"HTTP/1.1 502 "), response[:100]
    finally:
        await raw.stop()


async def test_expect_100_continue_reaches_the_client(
    upstreams: StartUpstreams, proxy: StartProxy
) -> None:
    (up,) = await upstreams(1)
    server = await proxy([up.endpoint], None)
    reader, writer = await connect(server)
    writer.write(
        b"POST /up HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"
    )
    interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert interim.startswith(b"HTTP/1.1 100 ")
    writer.write(b"hello")
    final = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert final.startswith(b"HTTP/1.1 200 ")
    writer.close()


async def test_bytes_sent_right_after_an_upgrade_head_wait_for_the_101(
    upstreams: StartUpstreams, proxy: StartProxy
) -> None:
    (up,) = await upstreams(1)
    server = await proxy([up.endpoint], Affinity())
    async with aiohttp.ClientSession() as session, session.ws_connect(url(server, "/ws")) as ws:
        await ws.send_str("ping")
        assert (await ws.receive_str()).endswith(":ping")
    # a refused upgrade (no such WebSocket path) is answered and the connection closed
    refused = await raw_request(
        server,
        b"GET /plain HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
        b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
        b"\x81\x05early",
    )
    assert refused.startswith(b"HTTP/1.1 200 ") and b"Connection: close" in refused


async def test_a_request_body_that_stalls_is_408(
    upstreams: StartUpstreams, proxy: StartProxy
) -> None:
    (up,) = await upstreams(1)
    server = await proxy([up.endpoint], None, client_body_timeout=0.3)
    response = await raw_request(
        server, b"POST /sink HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nabc", timeout=5
    )
    assert response.startswith(b"HTTP/1.1 408 ")


async def test_connections_over_the_cap_get_503(
    upstreams: StartUpstreams, proxy: StartProxy
) -> None:
    (up,) = await upstreams(1)
    server = await proxy([up.endpoint], None, max_connections=2)
    held = [await connect(server) for _ in range(2)]
    await asyncio.sleep(0.05)
    turned_away = await raw_request(server, b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
    assert turned_away.startswith(b"HTTP/1.1 503 ")
    for _, writer in held:
        writer.close()
    await asyncio.sleep(0.05)
    served = await raw_request(server, b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    assert served.startswith(b"HTTP/1.1 200 ")


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 204 No Content\r\nX-A: 1\r\n\r\n",
        b'HTTP/1.1 304 Not Modified\r\nETag: "x"\r\nContent-Length: 42\r\n\r\n',
    ],
    ids=["204", "304"],
)
async def test_bodyless_answers_keep_the_connection_usable(
    proxy: StartProxy, answer: bytes
) -> None:
    raw = await start_raw_upstream(answer)
    try:
        server = await proxy([raw.endpoint], None)
        response = await raw_request(
            server,
            b"GET /a HTTP/1.1\r\nHost: t\r\n\r\n"
            b"GET /b HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        )
        status = answer[9:12]
        # two answers, no body bytes between them, no chunked framing invented
        assert response.count(b"HTTP/1.1 " + status) == 2, response
        assert b"Transfer-Encoding" not in response
        assert response.endswith(b"\r\n\r\n")
    finally:
        await raw.stop()


async def test_trailers_are_dropped_cleanly_both_ways(proxy: StartProxy) -> None:
    raw = await start_raw_upstream(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n"
        b"5\r\nhello\r\n0\r\nX-Sum: abc\r\n\r\n",
        close=False,
    )
    try:
        server = await proxy([raw.endpoint], None)
        response = await raw_request(
            server,
            b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nTrailer: X-Req\r\n"
            b"Connection: close\r\n\r\n3\r\nabc\r\n0\r\nX-Req: 1\r\n\r\n",
        )
        head, _, body = response.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 ") and b"Trailer" not in head
        assert body == b"5\r\nhello\r\n0\r\n\r\n"  # re-chunked, the trailer gone
        (sent,) = raw.received
        assert b"\r\nTrailer:" not in sent  # the body is re-chunked with no trailer section
    finally:
        await raw.stop()


@pytest.mark.parametrize(
    "target", [b"/../etc/passwd", b"/a/%2e%2e/%2E%2E/etc", b"/a/..%2f..%2f"], ids=repr
)
async def test_a_path_climbing_above_the_root_is_400_and_never_reaches_an_upstream(
    upstreams: StartUpstreams, proxy: StartProxy, target: bytes
) -> None:
    """As nginx's URI parser: no pod sees a path outside the tree, however it is encoded."""
    (up,) = await upstreams(1)
    server = await proxy([up.endpoint], None)
    response = await raw_request(server, b"GET %s HTTP/1.1\r\nHost: t\r\n\r\n" % target)
    assert response.startswith(b"HTTP/1.1 400 "), response[:120]
    assert b"Connection: close" in response  # as nginx after a 400
    assert up.requests == 0
    inside = await raw_request(
        server, b"GET /a/b/../c HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    )
    assert inside.startswith(b"HTTP/1.1 200 ") and up.requests == 1  # resolved inside: served

"""What reaches an upstream is exactly the request the client framed, or nothing: the hostile
inputs of the hardening trials (issue 13), each against a real proxy and a strict upstream."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest

from tests.integration.conftest import StartProxy, StartUpstreams
from tests.integration.harness import (
    RecordingUpstream,
    connect,
    raw_request,
    start_recording_upstream,
)

UPGRADE = b"Connection: Upgrade\r\nUpgrade: websocket\r\n"


@pytest.fixture
async def recorder() -> AsyncIterator[RecordingUpstream]:
    upstream = await start_recording_upstream()
    yield upstream
    await upstream.stop()


async def test_an_upgrade_body_answered_without_a_101_leaves_the_next_request_intact(
    recorder: RecordingUpstream, proxy: StartProxy
) -> None:
    """The trials' desync: the body of a refused Upgrade was held back, the connection pooled,
    and the next client's request head read as that body."""
    server = await proxy([recorder.endpoint], None)
    body = b"X-A: GET /x HTTP/1.1\r\nX-B: 12\r\n"  # 31 bytes that parse as a head
    attacker = await raw_request(
        server,
        b"POST /up HTTP/1.1\r\nHost: t\r\n" + UPGRADE + b"Content-Length: %d\r\n\r\n" % len(body)
        + body + b"early bytes of the new protocol",
    )  # fmt: skip
    assert attacker.startswith(b"HTTP/1.1 200 ") and b"Connection: close" in attacker
    victim = await raw_request(
        server, b"GET /victim HTTP/1.1\r\nHost: t\r\nCookie: secret=1\r\nConnection: close\r\n\r\n"
    )
    assert victim.startswith(b"HTTP/1.1 200 ")
    up, next_one = recorder.requests
    assert up.request_line == b"POST /up HTTP/1.1" and up.body == body
    assert next_one.request_line == b"GET /victim HTTP/1.1" and next_one.body == b""
    assert (dict(next_one.headers)[b"cookie"], next_one.connection) == (b"secret=1", 0)


async def test_an_upgrade_body_arriving_later_is_sent_before_the_tunnel_starts(
    recorder: RecordingUpstream, proxy: StartProxy
) -> None:
    server = await proxy([recorder.endpoint], None)
    reader, writer = await connect(server)
    writer.write(b"POST /switch HTTP/1.1\r\nHost: t\r\n" + UPGRADE + b"Content-Length: 10\r\n\r\n")
    writer.write(b"01234")
    await writer.drain()
    await asyncio.sleep(0.05)  # the rest of the body in a later read
    writer.write(b"56789frame")
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert head.startswith(b"HTTP/1.1 101 ")
    assert await asyncio.wait_for(reader.readexactly(5), 5) == b"frame"  # echoed
    writer.close()
    (switch,) = recorder.requests
    assert switch.body == b"0123456789" and recorder.tunnelled == b"frame"


async def test_a_refused_upgrade_reaches_a_client_that_sends_its_new_protocol_anyway(
    recorder: RecordingUpstream, proxy: StartProxy
) -> None:
    server = await proxy([recorder.endpoint], None)
    reader, writer = await connect(server)
    writer.write(b"GET /up HTTP/1.1\r\nHost: t\r\n" + UPGRADE + b"\r\n")
    await asyncio.sleep(0.1)  # answered 200 (not 101) and closed by now
    try:
        for _ in range(3):  # the client assumed it was switched: frames of the new protocol
            writer.write(b"\x81\x05hello" * 1000)
            await writer.drain()
            await asyncio.sleep(0.05)
        answer = await asyncio.wait_for(reader.read(), 5)
    finally:
        writer.close()
    assert answer.startswith(b"HTTP/1.1 200 ") and b"Connection: close" in answer


async def test_an_upgrade_with_a_chunked_body_is_refused(
    recorder: RecordingUpstream, proxy: StartProxy
) -> None:
    server = await proxy([recorder.endpoint], None)
    response = await raw_request(
        server,
        b"POST /up HTTP/1.1\r\nHost: t\r\n" + UPGRADE + b"Transfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n0\r\n\r\n",
    )
    assert response.startswith(b"HTTP/1.1 400 ") and recorder.requests == []


@pytest.mark.parametrize("listed", [b"Host", b"host, Content-Length", b"HOST, x-keep"])
async def test_connection_cannot_make_host_or_framing_hop_by_hop(
    recorder: RecordingUpstream, proxy: StartProxy, listed: bytes
) -> None:
    server = await proxy([recorder.endpoint], None)
    response = await raw_request(
        server,
        b"POST / HTTP/1.1\r\nHost: example.com\r\nConnection: close, %s\r\nX-Keep: 1\r\n"
        b"Content-Length: 3\r\n\r\nabc" % listed,
    )
    assert response.startswith(b"HTTP/1.1 200 ")
    (sent,) = recorder.requests
    fields = dict(sent.headers)
    assert fields[b"host"] == b"example.com"
    assert (b"x-keep" in fields) is (b"x-keep" not in listed.lower())  # others can still be listed
    assert fields[b"content-length"] == b"3" and sent.body == b"abc"


async def test_header_names_with_underscores_are_dropped(
    recorder: RecordingUpstream, proxy: StartProxy
) -> None:
    server = await proxy([recorder.endpoint], None)
    response = await raw_request(
        server,
        b"POST / HTTP/1.1\r\nHost: t\r\nTransfer_Encoding: chunked\r\nX_Custom: 1\r\n"
        b"X-Dashed: 2\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc",
    )
    assert response.startswith(b"HTTP/1.1 200 ")
    (sent,) = recorder.requests
    names = [name for name, _ in sent.headers]
    assert b"x-dashed" in names and not [name for name in names if b"_" in name]
    assert sent.body == b"abc"


async def test_underscores_in_headers_are_forwarded_when_enabled(
    upstreams: StartUpstreams, proxy: StartProxy
) -> None:
    (up,) = await upstreams(1)
    server = await proxy([up.endpoint], None, underscores_in_headers=True)
    response = await raw_request(
        server, b"GET / HTTP/1.1\r\nHost: t\r\nX_Custom: 1\r\nConnection: close\r\n\r\n"
    )
    echoed = json.loads(response.partition(b"\r\n\r\n")[2])
    assert ["X_Custom", "1"] in echoed["headers"]


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: deflate, chunked\r\n\r\n0\r\n\r\n",
         501),
        (b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked"
         b"\r\n\r\n0\r\n\r\n", 501),
        (b"GET / HTTP/2.0\r\nHost: t\r\n\r\n", 505),
        (b"SOURCE / ICE/1.0\r\nHost: t\r\n\r\n", 400),
        (b"GET / RTSP/1.0\r\nHost: t\r\n\r\n", 400),
        (b"OPTIONS * RTSP/1.0\r\nHost: t\r\n\r\n", 400),
        (b"DESCRIBE / RTSP/1.0\r\nHost: t\r\n\r\n", 400),
        (b"PLAY / RTSP/2.0\r\nHost: t\r\n\r\n", 505),
        (b"GET /\r\n\r\n", 400),
        (b"GET / HTTP/0.9\r\nHost: t\r\n\r\n", 400),
        (b"POST / HTTP/1.0\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    ],
    ids=["deflate-chunked", "gzip-then-chunked", "http2", "ice", "rtsp-get", "rtsp-options",
         "rtsp-describe", "rtsp2", "http09", "http09-explicit", "http10-chunked"],
)  # fmt: skip
async def test_foreign_request_lines_and_codings_never_reach_an_upstream(
    recorder: RecordingUpstream, proxy: StartProxy, request_bytes: bytes, status: int
) -> None:
    server = await proxy([recorder.endpoint], None)
    response = await raw_request(server, request_bytes)
    assert response.startswith(b"HTTP/1.1 %d " % status), response[:80]
    assert b"Connection: close" in response
    assert recorder.requests == []


async def test_an_rtsp_request_line_split_over_reads_is_refused(
    recorder: RecordingUpstream, proxy: StartProxy
) -> None:
    server = await proxy([recorder.endpoint], None)
    reader, writer = await connect(server)
    for part in (b"GET / HTTP/1.1\r\nHost: t\r\n\r\nGET / RT", b"SP/1.0\r\nHos", b"t: t\r\n\r\n"):
        writer.write(part)
        await writer.drain()
        await asyncio.sleep(0.02)
    response = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    first, second = response.split(b"HTTP/1.1 ")[1:]
    assert first.startswith(b"200 ") and second.startswith(b"400 ")
    assert len(recorder.requests) == 1


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET / HTTP/1.0\r\nHost: t\r\nX-Note: RTSP/1.0\r\n\r\n",
        b"SOURCE /stream HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        b"OPTIONS * HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    ],
    ids=["http10-mentioning-rtsp", "source-over-http", "options-star"],
)
async def test_http_request_lines_llhttp_shares_with_other_protocols_still_pass(
    recorder: RecordingUpstream, proxy: StartProxy, request_bytes: bytes
) -> None:
    server = await proxy([recorder.endpoint], None)
    response = await raw_request(server, request_bytes)
    assert response.startswith(b"HTTP/1.1 200 "), response[:80]
    (sent,) = recorder.requests
    assert sent.request_line.endswith(b" HTTP/1.1")


async def test_a_refusal_reaches_a_client_that_keeps_sending(
    recorder: RecordingUpstream, proxy: StartProxy
) -> None:
    """A 100 KB head in 1 KB writes: the 431 must arrive, not a reset that destroys it."""
    server = await proxy([recorder.endpoint], None)
    reader, writer = await connect(server)

    async def send() -> None:
        writer.write(b"GET / HTTP/1.1\r\nHost: t\r\n")
        for index in range(100):
            writer.write(b"X-Filler-%03d: %s\r\n" % (index, b"f" * 1000))
            await writer.drain()
            await asyncio.sleep(0.001)

    try:
        await send()  # all of it, then read, as a simple client does
        answer = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:80]
    assert recorder.requests == []


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GET http://x/ HTTP/1.1\r\nHost: t\r\n\r\n", 400),
        (b"GET / HTTP/2.0\r\nHost: t\r\n\r\n", 505),
        (b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400),
    ],
    ids=["bad-head", "bad-version", "bad-chunk"],
)
async def test_a_refusal_followed_by_more_bytes_is_not_reset(
    recorder: RecordingUpstream, proxy: StartProxy, request_bytes: bytes, status: int
) -> None:
    server = await proxy([recorder.endpoint], None)
    response = await raw_request(server, request_bytes + b"y" * 200_000)
    assert response.startswith(b"HTTP/1.1 %d " % status), response[:80]

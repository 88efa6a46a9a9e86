"""Stopping the proxy loses no request that reached it: idle keep-alive connections take the one
their client may already have sent, answered with Connection: close."""

from __future__ import annotations

import asyncio

from proxy.app.runtime import ProxyServer
from tests.integration.conftest import StartProxy, StartUpstreams
from tests.integration.harness import Upstream, connect

REQUEST = b"GET /again HTTP/1.1\r\nHost: t\r\n\r\n"

Client = tuple[asyncio.StreamReader, asyncio.StreamWriter]


async def _answer(reader: asyncio.StreamReader) -> bytes:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
    return head + await asyncio.wait_for(reader.readexactly(length), 5)


async def _idle_client(
    upstreams: StartUpstreams, proxy: StartProxy
) -> tuple[Upstream, ProxyServer, Client]:
    """A proxy, and a client whose keep-alive connection has been answered once and is idle."""
    (up,) = await upstreams(1)
    server = await proxy([up.endpoint], None)
    reader, writer = await connect(server)
    writer.write(REQUEST)
    assert (await _answer(reader)).startswith(b"HTTP/1.1 200 ")
    return up, server, (reader, writer)


async def test_a_request_sent_on_an_idle_connection_as_shutdown_begins_is_answered(
    upstreams: StartUpstreams, proxy: StartProxy
) -> None:
    up, server, (reader, writer) = await _idle_client(upstreams, proxy)
    stopping = asyncio.ensure_future(server.stop(grace=5))
    await asyncio.sleep(0.01)
    assert server.ctx is not None and server.ctx.closing  # shutdown has begun
    writer.write(REQUEST)  # the client did not know yet
    answer = await _answer(reader)
    assert answer.startswith(b"HTTP/1.1 200 ") and b"Connection: close" in answer
    assert await asyncio.wait_for(reader.read(), 5) == b""  # then it closes
    writer.close()
    await asyncio.wait_for(stopping, 5)
    assert up.requests == 2


async def test_idle_connections_close_soon_after_shutdown_begins(
    upstreams: StartUpstreams, proxy: StartProxy
) -> None:
    _, server, (reader, writer) = await _idle_client(upstreams, proxy)
    loop = asyncio.get_running_loop()
    began = loop.time()
    stopping = asyncio.ensure_future(server.stop(grace=30))
    assert await asyncio.wait_for(reader.read(), 5) == b""
    waited = loop.time() - began
    await asyncio.wait_for(stopping, 5)  # nothing left to wait for: long before the grace
    writer.close()
    assert 0.5 < waited < 3, waited

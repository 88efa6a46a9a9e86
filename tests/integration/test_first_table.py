"""Start-up: the listeners are bound at once, but take connections only once the first routing
table is in place, so a client that comes early waits in the kernel's queue instead of getting
a 503; the metrics listener answers from the start."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator

import aiohttp
import pytest

from proxy.app.runtime import ProxyServer
from proxy.app.settings import ServeSettings
from proxy.control.sources.static import static_snapshot
from proxy.core.model import Affinity, UpstreamPolicy
from proxy.core.values import Address
from tests.certs import tls_certificate
from tests.integration.conftest import StartUpstreams
from tests.integration.harness import GatedSource

REQUEST = b"GET / HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n"
EARLY = 0.3  # how long the test's client waits before the table arrives


@pytest.fixture
async def started() -> AsyncIterator[list[ProxyServer]]:
    servers: list[ProxyServer] = []
    yield servers
    for server in servers:
        await server.stop(grace=0.2)


async def readyz(server: ProxyServer) -> int:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://{server.metrics_address}/readyz") as response,
    ):
        return response.status


async def answer_once_released(
    server: ProxyServer,
    source: GatedSource,
    address: Address,
    tls: ssl.SSLContext | None = None,
) -> bytes:
    """Connect and send a request before the first table; release it; the whole answer."""
    name = "a.test" if tls is not None else None
    connecting = asyncio.ensure_future(
        asyncio.open_connection(address.host, address.port, ssl=tls, server_hostname=name)
    )
    # Plain TCP connects in the kernel's queue; a TLS handshake needs the proxy, so it waits.
    done, _ = await asyncio.wait([connecting], timeout=EARLY)
    if tls is None:
        assert done, "the listening socket did not queue the connection"
    assert await readyz(server) == 503  # the admin listener answers while routes load
    if done:
        reader, writer = connecting.result()
        writer.write(REQUEST)
        await asyncio.sleep(EARLY)  # the request is sent well before the table arrives
    source.gate.set()
    if not done:
        reader, writer = await asyncio.wait_for(connecting, 5)
        writer.write(REQUEST)
    try:
        return await asyncio.wait_for(reader.read(), 5)
    finally:
        writer.close()


async def test_a_client_that_comes_before_the_first_table_gets_its_answer_not_a_503(
    upstreams: StartUpstreams, started: list[ProxyServer]
) -> None:
    (up,) = await upstreams(1)
    source = GatedSource(static_snapshot([up.endpoint], Affinity(), UpstreamPolicy()))
    settings = ServeSettings(listen=Address("127.0.0.1", 0), metrics_listen=Address("127.0.0.1", 0))
    server = ProxyServer(settings)
    started.append(server)
    await server.start(source)
    assert server.address is not None
    answer = await answer_once_released(server, source, server.address)
    assert answer.startswith(b"HTTP/1.1 200 "), answer[:200]
    assert up.requests == 1
    assert await readyz(server) == 200


async def test_tls_too_waits_for_the_first_table(
    upstreams: StartUpstreams, started: list[ProxyServer]
) -> None:
    (up,) = await upstreams(1)
    certificate = tls_certificate("--tls-cert", names=("a.test",))
    source = GatedSource(static_snapshot([up.endpoint], Affinity(), UpstreamPolicy()))
    settings = ServeSettings(
        listen=Address("127.0.0.1", 0),
        metrics_listen=Address("127.0.0.1", 0),
        tls_listen=Address("127.0.0.1", 0),
        tls_default=certificate,
    )
    server = ProxyServer(settings)
    started.append(server)
    await server.start(source)
    assert server.tls_address is not None
    trust = ssl.create_default_context(cadata=certificate.chain.decode())
    answer = await answer_once_released(server, source, server.tls_address, trust)
    assert answer.startswith(b"HTTP/1.1 200 "), answer[:200]
    assert up.requests == 1

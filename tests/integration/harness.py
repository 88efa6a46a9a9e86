"""Real servers on 127.0.0.1 port 0 for the tests: upstream apps that say who they are."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from aiohttp import web

from proxy.core.model import Endpoint
from proxy.runtime import ProxyServer


@dataclass
class Upstream:
    """An upstream app answering JSON {"name", "method", "path", "headers"}; stoppable mid-test."""

    name: str
    runner: web.AppRunner
    port: int
    requests: int = 0
    set_cookies: list[str] = field(default_factory=list)

    @property
    def endpoint(self) -> Endpoint:
        return Endpoint("127.0.0.1", self.port)

    async def stop(self) -> None:
        await self.runner.cleanup()


async def start_upstream(name: str, port: int = 0) -> Upstream:
    upstream: Upstream

    async def echo(request: web.Request) -> web.StreamResponse:
        upstream.requests += 1
        body = await request.read()
        response = web.json_response(
            {
                "name": name,
                "method": request.method,
                "path_qs": request.raw_path,
                "headers": [[k, v] for k, v in request.raw_headers_decoded()]
                if hasattr(request, "raw_headers_decoded")
                else [[k.decode(), v.decode()] for k, v in request.raw_headers],
                "body_size": len(body),
            }
        )
        for cookie in upstream.set_cookies:
            response.headers.add("Set-Cookie", cookie)
        return response

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_route("*", "/{tail:.*}", echo)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    assert isinstance(site._server, asyncio.Server)
    bound = site._server.sockets[0].getsockname()[1]
    upstream = Upstream(name, runner, bound)
    return upstream


def url(server: ProxyServer, path: str = "/") -> str:
    assert server.address is not None
    return f"http://{server.address}{path}"


async def raw_request(server: ProxyServer, data: bytes, timeout: float = 5.0) -> bytes:
    """Send raw bytes, read until the proxy closes the connection (or `timeout`)."""
    assert server.address is not None
    reader, writer = await asyncio.open_connection(server.address.host, server.address.port)
    writer.write(data)
    await writer.drain()
    chunks: list[bytes] = []
    try:
        async with asyncio.timeout(timeout):
            while chunk := await reader.read(65536):
                chunks.append(chunk)
    finally:
        writer.close()
    return b"".join(chunks)

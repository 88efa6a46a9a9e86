"""The Gateway API conformance suite's echo backend, as far as its HTTPRoute tests use it
(tests/gateway/conformance/base.yaml, `echo_server`): a real HTTP server on loopback that answers
every request with JSON naming its namespace and pod and what it received.

- `?delay=<duration>` ("1s", "500ms") sleeps that long before answering;
- `X-Echo-Set-Header: Name:value,Name2:value2` adds those headers to the answer;
- `/ws` is a WebSocket that sends every frame back.
"""

from __future__ import annotations

import asyncio
import re
import socket
from dataclasses import dataclass

from aiohttp import WSMsgType, web

_DURATION_PART = re.compile(r"([0-9.]+)(ms|s|m|h)")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


@dataclass
class Echo:
    namespace: str
    service: str
    pod: str
    port: int
    runner: web.AppRunner

    async def stop(self) -> None:
        await self.runner.cleanup()


def _seconds(text: str) -> float:
    return sum(float(n) * _UNIT[unit] for n, unit in _DURATION_PART.findall(text))


async def start_echo(namespace: str, service: str) -> Echo:
    # The suite's pod names are <deployment>-<replicaset hash>-<suffix>; its weight test strips
    # the last two parts to find the Service.
    pod = f"{service}-6d8f7c9b5-q2w7r"

    async def echo(request: web.Request) -> web.StreamResponse:
        if request.path == "/ws" and request.headers.get("Upgrade", "").lower() == "websocket":
            return await websocket(request)
        delay = request.query.get("delay")
        if delay:
            await asyncio.sleep(_seconds(delay))
        headers: dict[str, list[str]] = {}
        for name, value in request.headers.items():
            # Go's canonical spelling, as the suite's echo server reports them
            canonical = "-".join(part.capitalize() for part in name.split("-"))
            headers.setdefault(canonical, []).append(value)
        response = web.json_response(
            {
                "path": request.raw_path,
                "host": request.host,
                "method": request.method,
                "headers": headers,
                "namespace": namespace,
                "pod": pod,
            }
        )
        for pair in filter(None, request.headers.get("X-Echo-Set-Header", "").split(",")):
            name, _, value = pair.partition(":")
            response.headers.add(name.strip(), value.strip())
        return response

    async def websocket(request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for message in ws:
            if message.type == WSMsgType.TEXT:
                await ws.send_str(message.data)
            elif message.type == WSMsgType.BINARY:
                await ws.send_bytes(message.data)
        return ws

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", echo)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    sock = socket.create_server(("127.0.0.1", 0))
    await web.SockSite(runner, sock).start()
    return Echo(namespace, service, pod, sock.getsockname()[1], runner)

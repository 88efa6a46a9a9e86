"""The fallback backend when nginx is not installed: one uvloop process answering fixed
keep-alive HTTP/1.1 responses on several ports, as fast as Python allows.

A bare Protocol with httptools, no aiohttp: the backend must cost far less than the proxy it
feeds, or the benchmark measures the backend. `python -m bench.responder PORT [PORT ...]`
answers `{"uuid": "<one per port>"}` on every path and 1 MiB on /1mb, and prints one line once
all ports listen.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import signal
import uuid
from typing import cast

import httptools
import uvloop

from bench.configs import ONE_MB, ONE_MB_PATH


def _response(body: bytes, content_type: str) -> bytes:
    head = (
        f"HTTP/1.1 200 OK\r\nServer: bench-responder\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


class Responder(asyncio.Protocol):
    """Answers each parsed request with a prebuilt response; pipelined requests in order."""

    def __init__(self, small: bytes, large: bytes) -> None:
        self.small = small
        self.large = large
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.url = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport, though they implement it.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            if self.transport is not None:
                self.transport.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
                self.transport.close()

    # httptools callbacks
    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_message_complete(self) -> None:
        transport = self.transport
        if transport is None:
            return
        path = self.url.partition(b"?")[0]
        self.url = b""
        transport.write(self.large if path == ONE_MB_PATH.encode() else self.small)
        # Read here: after feed_data returns, httptools has already reset it.
        if not self.parser.should_keep_alive():
            transport.close()


async def serve(ports: list[int]) -> None:
    loop = asyncio.get_running_loop()
    large = _response(b"x" * ONE_MB, "application/octet-stream")
    servers = []
    for port in ports:
        small = _response(json.dumps({"uuid": str(uuid.uuid4())}).encode(), "application/json")
        servers.append(
            await loop.create_server(
                functools.partial(Responder, small, large), "127.0.0.1", port, backlog=4096
            )
        )
    print(f"listening on {' '.join(map(str, ports))}", flush=True)
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    for server in servers:
        server.close()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.responder", allow_abbrev=False)
    parser.add_argument("ports", type=int, nargs="+")
    uvloop.run(serve(parser.parse_args().ports))


if __name__ == "__main__":
    main()

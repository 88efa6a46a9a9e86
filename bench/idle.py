"""2,000 idle keep-alive clients: each sends one request, reads the answer, then stays open."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

OPEN_CONCURRENCY = 100  # connections being opened at once: no accept-queue overflow
OPEN_TIMEOUT_S = 10.0


@dataclass
class IdleClient:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter

    def is_open(self) -> bool:
        return not self.reader.at_eof() and not self.writer.is_closing()


async def read_response(reader: asyncio.StreamReader) -> int:
    """Read one response with a Content-Length body; its status."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    await reader.readexactly(length)
    return int(head.split(b" ", 2)[1])


async def _one(port: int, request: bytes, gate: asyncio.Semaphore) -> IdleClient:
    async with gate:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(request)
        await read_response(reader)
        return IdleClient(reader, writer)


async def open_idle(port: int, count: int, request: bytes) -> list[IdleClient]:
    """`count` connections that each completed one request; raises if any could not."""
    gate = asyncio.Semaphore(OPEN_CONCURRENCY)
    tasks = [asyncio.ensure_future(_one(port, request, gate)) for _ in range(count)]
    try:
        return list(await asyncio.wait_for(asyncio.gather(*tasks), OPEN_TIMEOUT_S))
    except BaseException:
        for task in tasks:
            task.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        close_all([r for r in results if isinstance(r, IdleClient)])
        raise


def close_all(clients: list[IdleClient]) -> None:
    for client in clients:
        with contextlib.suppress(OSError):
            client.writer.close()


def request_bytes(port: int, headers: tuple[tuple[str, str], ...]) -> bytes:
    lines = ["GET / HTTP/1.1", f"Host: 127.0.0.1:{port}", *(f"{k}: {v}" for k, v in headers)]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()

"""Bodies stream with backpressure: 200 MB each way through `sticky-proxy serve`, with the proxy's
memory flat even while the far side does not read."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.e2e.serve_process import serve_process
from tests.integration.harness import Upstream, start_upstream

SIZE = 200 * 1024 * 1024
ALLOWED_GROWTH = 40 * 1024 * 1024  # far below the 200 MB a buffering proxy would hold


def rss(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"VmRSS:\s+(\d+) kB", status)
    assert match is not None
    return int(match[1]) * 1024


@pytest.fixture
async def served() -> AsyncIterator[tuple[int, int, Upstream]]:
    """(proxy pid, proxy port, upstream)"""
    upstream = await start_upstream("big")
    try:
        async with serve_process(
            "--backend", f"http://127.0.0.1:{upstream.port}", "--proxy-body-size", "0"
        ) as process:
            yield process.pid, int(process.proxy.rsplit(":", 1)[1]), upstream
    finally:
        await upstream.stop()


async def test_a_download_the_client_does_not_read_is_not_buffered(
    served: tuple[int, int, Upstream],
) -> None:
    pid, port, _ = served
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /big?size=%d HTTP/1.1\r\nHost: t\r\n\r\n" % SIZE)
    await reader.readuntil(b"\r\n\r\n")
    before = rss(pid)
    await asyncio.sleep(1.0)  # the upstream pushes, nobody reads
    stalled = rss(pid)
    received = 0
    async with asyncio.timeout(60):
        while received < SIZE:
            received += len(await reader.read(1 << 20))
    writer.close()
    assert received == SIZE
    assert stalled - before < ALLOWED_GROWTH, (before, stalled)
    assert rss(pid) - before < ALLOWED_GROWTH


async def test_an_upload_the_upstream_does_not_read_is_not_buffered(
    served: tuple[int, int, Upstream],
) -> None:
    pid, port, _ = served
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"POST /sink?delay=1 HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % SIZE)
    before = rss(pid)
    block = b"u" * (1 << 20)
    peak = before
    async with asyncio.timeout(60):
        for _ in range(SIZE // len(block)):
            writer.write(block)
            await writer.drain()  # blocks while the proxy stops reading from us
            peak = max(peak, rss(pid))
        answer = await reader.read(4096)
    writer.close()
    assert answer.startswith(b"HTTP/1.1 200 ") and b'"body_size": %d' % SIZE in answer
    assert peak - before < ALLOWED_GROWTH, (before, peak)

"""SIGTERM to `sticky-proxy serve` as Kubernetes sends it in a rolling restart: nothing in flight
is lost, /readyz turns 503 at once, the process exits 0."""

from __future__ import annotations

import asyncio
import signal

import aiohttp

from tests.e2e.serve_process import serve_process
from tests.integration.harness import start_upstream


async def test_sigterm_lets_100_requests_in_flight_finish() -> None:
    upstream = await start_upstream("slow")
    upstream.slow_seconds = 1.0
    try:
        async with (
            serve_process(
                "--backend", f"http://127.0.0.1:{upstream.port}", "--shutdown-grace", "10"
            ) as served,
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session,
        ):  # fmt: skip

            async def get() -> tuple[int, str]:
                async with session.get(f"{served.proxy}/slow") as response:
                    return response.status, await response.text()

            in_flight = [asyncio.ensure_future(get()) for _ in range(100)]
            async with asyncio.timeout(10):
                while upstream.requests < 100:
                    await asyncio.sleep(0.01)
            served.process.send_signal(signal.SIGTERM)
            await asyncio.sleep(0.2)
            async with session.get(f"{served.admin}/readyz") as response:
                assert response.status == 503  # out of the Service's endpoints at once
            answers = await asyncio.gather(*in_flight)
            assert answers == [(200, "slow")] * 100
            assert await asyncio.wait_for(served.process.wait(), 15) == 0
            assert served.process.stderr is not None
            assert b"Traceback" not in await served.process.stderr.read()
    finally:
        await upstream.stop()

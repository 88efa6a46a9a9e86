"""SIGTERM to `sticky-proxy serve` as Kubernetes sends it in a rolling restart: nothing in flight
is lost, /readyz turns 503 at once, the process exits 0."""

from __future__ import annotations

import asyncio
import re
import signal
import sys
from pathlib import Path

import aiohttp

from tests.integration.harness import start_upstream

REPO = Path(__file__).resolve().parents[2]


async def test_sigterm_lets_100_requests_in_flight_finish() -> None:
    upstream = await start_upstream("slow")
    upstream.slow_seconds = 1.0
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "proxy", "serve", "--backend", f"http://127.0.0.1:{upstream.port}",
        "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0", "--shutdown-grace", "10",
        cwd=REPO, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert process.stderr is not None
    try:
        async with asyncio.timeout(15):
            while not (found := re.search(rb"on http://([\d.:]+), metrics on http://([\d.:]+)",
                                          await process.stderr.readline())):  # fmt: skip
                pass
        proxy, admin = (f"http://{address.decode()}" for address in found.groups())
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:

            async def get() -> tuple[int, str]:
                async with session.get(f"{proxy}/slow") as response:
                    return response.status, await response.text()

            in_flight = [asyncio.ensure_future(get()) for _ in range(100)]
            async with asyncio.timeout(10):
                while upstream.requests < 100:
                    await asyncio.sleep(0.01)
            process.send_signal(signal.SIGTERM)
            await asyncio.sleep(0.2)
            async with session.get(f"{admin}/readyz") as response:
                assert response.status == 503  # out of the Service's endpoints at once
            answers = await asyncio.gather(*in_flight)
        assert answers == [(200, "slow")] * 100
        assert await asyncio.wait_for(process.wait(), 15) == 0
        stderr = (await process.stderr.read()).decode()
        assert "Traceback" not in stderr
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        await upstream.stop()

"""`python -m proxy serve` as a subprocess, for end-to-end tests that need the real process."""

from __future__ import annotations

import asyncio
import re
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
_LISTENING = re.compile(rb"proxy listening on http://([\d.:\[\]]+), metrics on http://(\S+)")


@dataclass
class ServeProcess:
    process: asyncio.subprocess.Process
    proxy: str  # http://host:port
    admin: str  # http://host:port of the metrics listener

    @property
    def pid(self) -> int:
        return self.process.pid


@asynccontextmanager
async def serve_process(*flags: str) -> AsyncIterator[ServeProcess]:
    """Start `serve` on free loopback ports with `flags`; wait for it to listen; kill it after."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "proxy", "serve", "--listen", "127.0.0.1:0",
        "--metrics-listen", "127.0.0.1:0", "--tls-listen", "off", *flags,
        cwd=REPO, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert process.stderr is not None
    try:
        async with asyncio.timeout(15):
            while not (found := _LISTENING.search(await process.stderr.readline())):
                if process.returncode is not None:
                    raise AssertionError("serve exited before listening")
        proxy, admin = (f"http://{address.decode()}" for address in found.groups())
        yield ServeProcess(process, proxy, admin)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()

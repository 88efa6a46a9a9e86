"""Headless Chromium driven over the DevTools protocol (aiohttp websockets), for page tests."""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--remote-debugging-port=0",
)


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


class Page:
    """One tab: `evaluate` runs JavaScript in it (promises awaited) and returns the value."""

    def __init__(self, socket: aiohttp.ClientWebSocketResponse) -> None:
        self._socket = socket
        self._ids = itertools.count(1)

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        message_id = next(self._ids)
        await self._socket.send_json({"id": message_id, "method": method, "params": params})
        async for message in self._socket:
            reply: dict[str, Any] = json.loads(message.data)
            if reply.get("id") == message_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                result: dict[str, Any] = reply["result"]
                return result
        raise RuntimeError("the browser closed the DevTools connection")

    async def evaluate(self, expression: str) -> Any:
        result = await self.call(
            "Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True
        )
        if "exceptionDetails" in result:
            raise RuntimeError(f"page script failed: {result['exceptionDetails']}")
        return result["result"].get("value")


@asynccontextmanager
async def open_page(executable: str, url: str, profile: Path) -> AsyncIterator[Page]:
    """Start Chromium with a throwaway profile, open `url` in a new tab, close it all after."""
    log = profile / "chromium.log"  # a file, not a pipe: nothing blocks once we stop reading
    with log.open("wb") as stderr:
        process = await asyncio.create_subprocess_exec(
            executable, *FLAGS, f"--user-data-dir={profile}", "about:blank",
            stdout=asyncio.subprocess.DEVNULL, stderr=stderr,
        )  # fmt: skip
    try:
        devtools = await _devtools_address(log, process)
        async with aiohttp.ClientSession() as session:
            async with session.put(f"http://{devtools}/json/new?{url}") as response:
                target = await response.json(content_type=None)
            async with session.ws_connect(target["webSocketDebuggerUrl"], max_msg_size=0) as ws:
                yield Page(ws)
    finally:
        if process.returncode is None:
            process.kill()
        await process.wait()


async def _devtools_address(log: Path, process: asyncio.subprocess.Process) -> str:
    """host:port of DevTools, from the line Chromium prints once it listens."""
    async with asyncio.timeout(30):
        while not (found := re.search(r"ws://([^/\s]+)/devtools/browser", log.read_text())):
            if process.returncode is not None:
                raise RuntimeError(f"Chromium exited early: {log.read_text()[-2000:]}")
            await asyncio.sleep(0.05)
    return found.group(1)

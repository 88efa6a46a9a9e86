"""A real Prometheus (Debian's package) scraping proxies on loopback, queried over its HTTP API.

The tests that use it ask Prometheus the PromQL the dashboard and the alert rules in
k8s/monitoring/ ask, so a renamed metric or label, or a counter that resets, fails there and
not only in a cluster.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import yaml

SCRAPE_SECONDS = 0.25  # short, so a test waits a fraction of a second for its numbers


def prometheus_binary() -> str | None:
    return shutil.which("prometheus")


def promtool_binary() -> str | None:
    return shutil.which("promtool")


@dataclass(frozen=True)
class Series:
    labels: dict[str, str]
    value: float


class Prometheus:
    def __init__(self, url: str, targets: Sequence[str]) -> None:
        self.url = url
        self.targets = targets

    async def query(self, expr: str, at: float | None = None) -> list[Series]:
        """An instant query's vector, now or at Unix time `at`; a scalar comes back as one
        series without labels."""
        params = {"query": expr, **({"time": repr(at)} if at is not None else {})}
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{self.url}/api/v1/query", params=params) as response,
        ):
            body: dict[str, Any] = await response.json()
        if body["status"] != "success":
            raise AssertionError(f"{expr}: {body.get('errorType')}: {body.get('error')}")
        data = body["data"]
        if data["resultType"] == "scalar":
            return [Series({}, float(data["result"][1]))]
        return [Series(item["metric"], float(item["value"][1])) for item in data["result"]]

    async def over_time(
        self, expr: str, by: str, start: float, end: float
    ) -> dict[str, list[float]]:
        """A range query's series, one point per scrape interval from `start` to `end`, as
        {value of label `by`: the values}."""
        params = {"query": expr, "start": repr(start), "end": repr(end), "step": SCRAPE_SECONDS}
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{self.url}/api/v1/query_range", params=params) as response,
        ):
            body: dict[str, Any] = await response.json()
        if body["status"] != "success":
            raise AssertionError(f"{expr}: {body.get('errorType')}: {body.get('error')}")
        return {
            item["metric"].get(by, ""): [float(value) for _, value in item["values"]]
            for item in body["data"]["result"]
        }

    async def values(self, expr: str, by: str, at: float | None = None) -> dict[str, float]:
        """The query's series as {value of label `by`: value}."""
        return {s.labels.get(by, ""): s.value for s in await self.query(expr, at)}

    async def scraped(self) -> None:
        """Wait until every target has been scraped after this call began: what was counted
        before it is in Prometheus then."""
        since = time.time()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            scrapes = await self.query("timestamp(up)")
            if len(scrapes) == len(self.targets) and all(
                series.value > since for series in scrapes
            ):
                if all(series.value == 1 for series in await self.query("up")):
                    return
                raise AssertionError(f"a target is down: {await self.query('up')}")
            await asyncio.sleep(SCRAPE_SECONDS / 2)
        raise AssertionError(f"no scrape of {self.targets} within 15 s")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@asynccontextmanager
async def prometheus(
    targets: Sequence[str], directory: Path, rule_files: Sequence[Path] = ()
) -> AsyncIterator[Prometheus]:
    """Prometheus scraping `targets` (host:port of metrics listeners) every 250 ms, with
    `rule_files` loaded, its data in `directory`; stopped on the way out."""
    binary = prometheus_binary()
    assert binary is not None
    interval = f"{int(SCRAPE_SECONDS * 1000)}ms"
    config = {
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "rule_files": [str(path) for path in rule_files],
        "scrape_configs": [
            {"job_name": "sticky-proxy", "static_configs": [{"targets": list(targets)}]}
        ],
    }
    config_file = directory / "prometheus.yml"
    config_file.write_text(yaml.safe_dump(config))
    port = _free_port()
    log = (directory / "prometheus.log").open("wb")
    process = await asyncio.create_subprocess_exec(
        binary,
        f"--config.file={config_file}",
        f"--storage.tsdb.path={directory / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--log.level=warn",
        stdout=log,
        stderr=log,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        await _ready(url, process, directory / "prometheus.log")
        yield Prometheus(url, targets)
    finally:
        if process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), 10)
            except TimeoutError:
                process.kill()
                await process.wait()
        log.close()


async def _ready(url: str, process: asyncio.subprocess.Process, log: Path) -> None:
    deadline = time.monotonic() + 20
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            if process.returncode is not None:
                raise AssertionError(f"prometheus exited: {log.read_text()[-2000:]}")
            try:
                async with session.get(f"{url}/-/ready") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientConnectionError:
                pass
            await asyncio.sleep(0.05)
    raise AssertionError(f"prometheus not ready within 20 s: {log.read_text()[-2000:]}")

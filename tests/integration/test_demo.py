"""`sticky-proxy demo` orchestration with real backend processes and a stand-in for the runtime."""

from __future__ import annotations

import asyncio
import io
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from proxy.app import demo
from proxy.app.demo import COOKIE_JAR, run_demo
from proxy.app.settings import ServeSettings
from proxy.control.sources.source import Source
from proxy.control.sources.static import StaticSource
from proxy.core.cookies import CookieSettings
from proxy.core.model import Affinity
from proxy.core.values import Address

Ready = Callable[[Address], None] | None
SETTINGS = ServeSettings(listen=Address("127.0.0.1", 0), metrics_listen=Address("0.0.0.0", 10254))


@pytest.fixture
def spawned(monkeypatch: pytest.MonkeyPatch) -> list[asyncio.subprocess.Process]:
    """Every process the demo starts, to check on them from the test."""
    processes: list[asyncio.subprocess.Process] = []
    spawn = asyncio.create_subprocess_exec

    async def recording(*args: Any, **kwargs: Any) -> asyncio.subprocess.Process:
        process = await spawn(*args, **kwargs)
        processes.append(process)
        return process

    monkeypatch.setattr(asyncio, "create_subprocess_exec", recording)
    return processes


async def uuid_at(session: aiohttp.ClientSession, url: str) -> str:
    async with session.get(url) as response:
        body: dict[str, str] = await response.json()
        return body["uuid"]


async def test_serves_the_backends_announces_them_and_stops_them(
    spawned: list[asyncio.subprocess.Process],
) -> None:
    out = io.StringIO()
    served: list[tuple[ServeSettings, set[str]]] = []

    async def serve(settings: ServeSettings, source: Source, ready: Ready) -> None:
        assert ready is not None
        ready(Address("0.0.0.0", 18080))
        async with aiohttp.ClientSession() as session:
            assert isinstance(source, StaticSource)
            endpoints = source.snapshot.routes[0].cluster.endpoints
            uuids = {await uuid_at(session, f"http://{e.node}/") for e in endpoints}
        served.append((settings, uuids))

    assert await run_demo(SETTINGS, 2, serve, out) == 0

    [(settings, uuids)] = served
    assert len(uuids) == 2  # two distinct backend processes
    assert len(settings.backends) == 2
    assert settings.affinity == Affinity()
    assert all(process.returncode is not None for process in spawned)
    text = out.getvalue()
    assert "2 backends behind http://127.0.0.1:18080/" in text  # wildcard shown as loopback
    assert all(f"backend  {url}" in text for url in settings.backends)
    assert "http://127.0.0.1:10254/metrics" in text
    assert "status   http://127.0.0.1:10254/  " in text  # the status page
    assert f"curl -c {COOKIE_JAR} -b {COOKIE_JAR} http://127.0.0.1:18080/\n" in text


async def test_curl_line_targets_the_cookie_path() -> None:
    out = io.StringIO()

    async def serve(settings: ServeSettings, source: Source, ready: Ready) -> None:
        assert ready is not None
        ready(Address("::1", 8080))

    settings = ServeSettings(affinity=Affinity(cookie=CookieSettings(path="/app")))
    assert await run_demo(settings, 1, serve, out) == 0
    assert f"-b {COOKIE_JAR} http://[::1]:8080/app\n" in out.getvalue()


async def test_a_backend_dying_stops_the_proxy_with_exit_1(
    spawned: list[asyncio.subprocess.Process], capsys: pytest.CaptureFixture[str]
) -> None:
    proxy_cancelled = asyncio.Event()

    async def serve(settings: ServeSettings, source: Source, ready: Ready) -> None:
        spawned[0].kill()
        try:
            await asyncio.Event().wait()
        finally:
            proxy_cancelled.set()

    assert await run_demo(SETTINGS, 2, serve, io.StringIO()) == 1
    assert proxy_cancelled.is_set()
    assert spawned[1].returncode is not None  # the survivor was stopped too
    assert capsys.readouterr().err == (
        f"sticky-proxy: error: demo backend (pid {spawned[0].pid}) exited with code -9\n"
    )


async def never_serve(settings: ServeSettings, source: Source, ready: Ready) -> None:
    raise AssertionError("the proxy must not start without its backends")


async def test_a_backend_failing_to_start_is_exit_1(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "executable", "/bin/false")
    assert await run_demo(SETTINGS, 2, never_serve, io.StringIO()) == 1
    assert "failed to start: no output" in capsys.readouterr().err


async def test_a_silent_backend_times_out(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    spawned: list[asyncio.subprocess.Process],
    capsys: pytest.CaptureFixture[str],
) -> None:
    silent = tmp_path / "silent"
    silent.write_text("#!/bin/sh\nexec sleep 30\n")
    silent.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(silent))
    monkeypatch.setattr(demo, "BACKEND_START_TIMEOUT", 0.3)
    assert await run_demo(SETTINGS, 1, never_serve, io.StringIO()) == 1
    assert "did not start within 0.3 s" in capsys.readouterr().err
    assert spawned[0].returncode is not None

"""`sticky-proxy demo`: demo backends as child processes, and the proxy in front of them.

The children run in their own session so a terminal's Ctrl-C reaches only the demo, which then
stops them itself: otherwise they would die with the proxy still running and look like a failure.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from contextlib import suppress
from dataclasses import replace
from typing import Any, TextIO, TypeVar

from proxy.app.settings import ServeSettings
from proxy.control.sources.source import Source
from proxy.control.sources.static import StaticSource, static_backends, static_snapshot
from proxy.core.model import Affinity
from proxy.core.values import Address
from proxy.system.children import exit_with_parent

BACKEND_START_TIMEOUT = 10.0
BACKEND_STOP_TIMEOUT = 5.0
# A demo has no long requests worth waiting for, and a browser's idle keep-alive should not hold
# Ctrl-C for the serve default of 30 s.
DEMO_SHUTDOWN_GRACE = 2.0
COOKIE_JAR = "/tmp/sticky-proxy-demo.cookies"
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)

Ready = Callable[[Address], None]
Serve = Callable[[ServeSettings, Source, Ready | None], Coroutine[Any, Any, None]]
Process = asyncio.subprocess.Process
T = TypeVar("T")


class DemoError(Exception):
    """A demo backend failed to start or died; the message is one line for the user."""


async def run_demo(
    settings: ServeSettings, replicas: int, serve: Serve, out: TextIO = sys.stdout
) -> int:
    """Start `replicas` backends and serve them until SIGINT/SIGTERM; the process exit code."""
    backends: list[Process] = []
    try:
        urls = await _unless_interrupted(_start_backends(replicas, backends))
        if urls is None:
            return 0
        settings = replace(settings, backends=tuple(urls), shutdown_grace=DEMO_SHUTDOWN_GRACE)
        snapshot = static_snapshot(static_backends(urls), settings.affinity, settings.upstream)
        ready = _announcer(settings, urls, out)
        await _serve_while_backends_live(serve(settings, StaticSource(snapshot), ready), backends)
    except DemoError as error:
        print(f"sticky-proxy: error: {error}", file=sys.stderr)
        return 1
    finally:
        await _stop_backends(backends)
    return 0


async def _start_backends(count: int, started: list[Process]) -> list[str]:
    """Spawn all backends at once (appended to `started` for cleanup), then read their URLs."""
    for _ in range(count):
        spawning = asyncio.ensure_future(
            asyncio.create_subprocess_exec(
                *(sys.executable, "-m", "backend", "--host", "127.0.0.1", "--port", "0"),
                stdout=asyncio.subprocess.PIPE,
                start_new_session=True,
                preexec_fn=exit_with_parent if sys.platform == "linux" else None,
            )
        )
        try:
            await asyncio.shield(spawning)
        finally:
            # An interrupt can land after the fork: keep the child either way, so it is stopped.
            started.append(await spawning)
    return [await _announced_url(process) for process in started]


async def _announced_url(process: Process) -> str:
    assert process.stdout is not None  # spawned with stdout=PIPE
    try:
        line = await asyncio.wait_for(process.stdout.readline(), BACKEND_START_TIMEOUT)
    except TimeoutError:
        raise DemoError(
            f"demo backend (pid {process.pid}) did not start within {BACKEND_START_TIMEOUT:g} s"
        ) from None
    text = line.decode(errors="replace").strip()
    if not text.startswith("listening on "):
        # Its stderr is ours, so whatever it complained about is already on the terminal.
        raise DemoError(f"demo backend (pid {process.pid}) failed to start: {text or 'no output'}")
    return text.removeprefix("listening on ")


async def _unless_interrupted(work: Coroutine[Any, Any, T]) -> T | None:
    """`work`'s result, or None when SIGINT/SIGTERM comes first.

    Covers the time before the proxy runs; from then on the runtime owns those signals.
    """
    loop = asyncio.get_running_loop()
    task = asyncio.ensure_future(work)
    for signum in STOP_SIGNALS:
        loop.add_signal_handler(signum, task.cancel)
    try:
        return await task
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if current is not None and current.cancelling():
            raise  # we were cancelled from outside, not interrupted by a signal
        return None
    finally:
        for signum in STOP_SIGNALS:
            loop.remove_signal_handler(signum)


async def _serve_while_backends_live(serving: Awaitable[None], backends: Sequence[Process]) -> None:
    """Await the proxy; if a backend exits first, stop the proxy and raise DemoError."""
    proxy = asyncio.ensure_future(serving)
    exits = {asyncio.ensure_future(process.wait()): process for process in backends}
    try:
        done, _ = await asyncio.wait([proxy, *exits], return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (proxy, *exits):
            task.cancel()  # a no-op for the one that finished
    if proxy in done:
        proxy.result()  # re-raise whatever stopped the proxy, if anything
        return
    await asyncio.wait([proxy])  # its graceful stop, after the cancel above
    dead = next(process for task, process in exits.items() if task in done)
    raise DemoError(f"demo backend (pid {dead.pid}) exited with code {dead.returncode}")


async def _stop_backends(processes: Sequence[Process]) -> None:
    for process in processes:
        with suppress(ProcessLookupError):  # already gone
            process.terminate()
    for process in processes:
        try:
            await asyncio.wait_for(process.wait(), BACKEND_STOP_TIMEOUT)
        except TimeoutError:
            with suppress(ProcessLookupError):
                process.kill()
            await process.wait()


def _announcer(settings: ServeSettings, backend_urls: Sequence[str], out: TextIO) -> Ready:
    """The `ready` callback: where everything is, and a curl line to see stickiness."""

    def ready(address: Address) -> None:
        proxy_url = f"http://{_reachable(address)}"
        try_url = proxy_url + _cookie_path(settings.affinity)
        lines = [
            f"sticky-proxy demo: {len(backend_urls)} backends behind {proxy_url}/",
            *(f"  backend  {url}" for url in backend_urls),
            _metrics_line(settings.metrics_listen),
            "Try it, then again: the same uuid while the jar keeps the cookie"
            if settings.affinity
            else "Affinity is off: each request may reach a different backend",
            f"  curl -c {COOKIE_JAR} -b {COOKIE_JAR} {try_url}",
            "Ctrl-C stops the proxy and the backends.",
        ]
        print("\n".join(lines), file=out, flush=True)

    return ready


def _cookie_path(affinity: Affinity | None) -> str:
    """Where the cookie applies, so the curl line actually sends it back."""
    return (affinity.cookie.path if affinity else None) or "/"


def _metrics_line(metrics: Address | None) -> str:
    if metrics is None:
        return "  metrics  off"
    if metrics.port == 0:
        return f"  metrics  on a free port of {metrics.host}"
    base = f"http://{_reachable(metrics)}"
    return f"  status   {base}/  (metrics: {base}/metrics, health: {base}/healthz)"


def _reachable(address: Address) -> Address:
    """A wildcard bind address as a URL host a local browser can open."""
    wildcard_to_loopback = {"0.0.0.0": "127.0.0.1", "::": "::1"}
    return replace(address, host=wildcard_to_loopback.get(address.host, address.host))

"""`serve --workers N`: N proxy processes on the same ports, and one /metrics that sums them.

The parent reserves each listening port (a socket bound with SO_REUSEPORT that never listens, so
port 0 resolves once and no other program takes the port), then starts N workers that bind the
same ports with SO_REUSEPORT; the kernel spreads connections over them. Each worker is a whole
`serve` (its own source and snapshot: routing is deterministic, so they agree on every cookie).

Metrics: a fresh PROMETHEUS_MULTIPROC_DIR per run (in --state-dir, else a temporary directory,
else /dev/shm), in every worker's environment from its start, so prometheus-client keeps each
worker's values in files there and whichever worker answers a scrape returns the sum. When a
worker exits, its live gauges and session sketch are removed (`mark_process_dead`), its counters
stay in the sum; the directory goes when the parent exits, so a restart starts from clean files.
All workers get one PYTHONHASHSEED: session sketches made with the same hash merge into one
distinct count.

A worker that dies is replaced, as a Deployment replaces a pod; its connections were its own,
the others keep serving. Two cases stop everything instead: a worker that exits with code 2 (a
bad manifest or flag: a new one would fail the same way), and more than RESTART_LIMIT restarts
within RESTART_WINDOW seconds (a crash loop is better reported than hidden).
"""

from __future__ import annotations

import dataclasses
import io
import logging
import os
import pickle
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import replace
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, TypeVar

from prometheus_client.multiprocess import mark_process_dead

from proxy.core.values import Address
from proxy.observability.metrics import MULTIPROC_DIR
from proxy.observability.session_share import forget_worker
from proxy.system.children import exit_with_parent

if TYPE_CHECKING:
    from proxy.app.settings import ServeCommand

log = logging.getLogger("sticky_proxy.workers")
T = TypeVar("T")

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
RESTART_LIMIT = 5
RESTART_WINDOW = 60.0
BAD_INPUT = 2  # the exit code of `serve` for bad flags or manifests
# Where the workers' shared files go when no temporary directory is writable: Docker mounts
# /dev/shm writable (a tmpfs, 64 MB unless --shm-size) even with --read-only and no --tmpfs.
# Memory suits these files anyway: they are mmapped, rewritten every second and worthless once
# the proxy exits.
LAST_RESORT = "/dev/shm"


def run_workers(command: ServeCommand) -> int:
    """Run `command.settings.workers` workers until SIGINT/SIGTERM; the exit code."""
    settings = command.settings
    # An on-demand TLS port stays free until a worker has a certificate to serve on it; the
    # workers then bind it themselves (SO_REUSEPORT), each with its first certificate.
    reserved_tls = None if settings.tls_on_demand else settings.tls_listen
    with ExitStack() as stack:
        listen, metrics, tls = (
            stack.enter_context(_reserved(address)) if address is not None else None
            for address in (settings.listen, settings.metrics_listen, reserved_tls)
        )
        assert listen is not None
        directory = stack.enter_context(_state_directory(settings.state_dir))
        log.info("workers share their files in %s", directory)
        tls = tls or settings.tls_listen
        # Without --session-key-file, one random key for all workers: a session token signed by
        # one must hold in the others.
        key = settings.session_key or secrets.token_bytes(32)
        shared = replace(settings, listen=listen, metrics_listen=metrics, tls_listen=tls,
                         workers=1, reuse_port=True, session_key=key)  # fmt: skip
        environment = {
            **os.environ,
            MULTIPROC_DIR: directory,
            "PYTHONHASHSEED": str(1 + secrets.randbelow(2**32 - 1)),
        }
        payload = _pickled(replace(command, settings=shared))
        return _supervise(payload, settings.workers, environment, Path(directory))


def _pickled(command: ServeCommand) -> bytes:
    buffer = io.BytesIO()
    _Pickler(buffer).dump(command)
    return buffer.getvalue()


class _Pickler(pickle.Pickler):
    """Frozen dataclasses are pickled as their init fields: compiled by mypyc, they lose the
    support that dataclass(slots=True) adds, and unpickling by setting attributes fails."""

    def reducer_override(self, obj: object) -> Any:
        if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
            init = [field.name for field in dataclasses.fields(obj) if field.init]
            return _rebuilt, (type(obj), tuple(getattr(obj, name) for name in init))
        return NotImplemented


def _rebuilt(cls: type[T], values: tuple[object, ...]) -> T:
    return cls(*values)


def _supervise(command: bytes, count: int, environment: dict[str, str], directory: Path) -> int:
    workers: dict[int, subprocess.Popen[bytes]] = {}
    stopping = False

    def stop(signum: int | None = None, frame: FrameType | None = None) -> None:
        nonlocal stopping
        stopping = True
        for pid in list(workers):
            _terminate(pid)

    def start() -> None:
        process = subprocess.Popen(
            [sys.executable, "-m", "proxy.app.worker"],
            stdin=subprocess.PIPE,
            env=environment,
            # (no threads run in the parent, so preexec_fn is safe here)
            preexec_fn=exit_with_parent if sys.platform == "linux" else None,  # noqa: PLW1509
        )
        workers[process.pid] = process
        assert process.stdin is not None
        process.stdin.write(command)
        process.stdin.close()
        if stopping:  # a signal came while starting: this one has not seen it yet
            _terminate(process.pid)

    previous = {signum: signal.signal(signum, stop) for signum in STOP_SIGNALS}
    exit_code = 0
    restarts: list[float] = []
    try:
        for _ in range(count):
            start()
        while workers:
            pid, status = os.wait()
            process = workers.pop(pid)
            process.returncode = code = os.waitstatus_to_exitcode(status)
            mark_process_dead(pid, str(directory))  # type: ignore[no-untyped-call]
            forget_worker(directory, pid)
            if stopping:
                if code and not exit_code:
                    exit_code = code
                continue
            now = time.monotonic()
            restarts = [t for t in restarts if now - t < RESTART_WINDOW] + [now]
            if code == BAD_INPUT or len(restarts) > RESTART_LIMIT:
                why = "bad input" if code == BAD_INPUT else f"{len(restarts)} exits in a minute"
                log.error("worker %d exited with code %d (%s): stopping the others", pid, code, why)
                exit_code = code if code > 0 else 1
                stop()
            else:
                log.error("worker %d exited with code %d: starting another", pid, code)
                start()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return exit_code


def _terminate(pid: int) -> None:
    """SIGTERM to a worker. Not Popen.send_signal: it polls first, and a worker that has just
    exited would be reaped there, behind os.wait's back (which then fails: no child processes).
    Until os.wait reaps it, an exited worker's pid stays its own, so the signal cannot stray."""
    os.kill(pid, signal.SIGTERM)


def _state_directory(chosen: Path | None) -> tempfile.TemporaryDirectory[str]:
    """A new directory for the files the workers share, removed at exit: in `chosen`
    (--state-dir), else in the first temporary directory that takes one, else in LAST_RESORT.
    OSError with one line when there is none."""
    places = [str(chosen)] if chosen is not None else [*_temporary_directories(), LAST_RESORT]
    for place in places:
        try:
            return tempfile.TemporaryDirectory(prefix="sticky-proxy-", dir=place)
        except OSError:
            continue
    raise OSError(
        f"--workers: no writable directory for the files the workers share "
        f"(tried {', '.join(places)}); give one with --state-dir PATH"
    )


def _temporary_directories() -> list[str]:
    """Where Python's tempfile looks, less its last resort, the working directory: state
    files have no business among the user's own."""
    named = [os.environ[name] for name in ("TMPDIR", "TEMP", "TMP") if os.environ.get(name)]
    return [*named, "/tmp", "/var/tmp", "/usr/tmp"]


@contextmanager
def _reserved(address: Address) -> Iterator[Address]:
    """Hold `address`'s port for the workers; port 0 becomes the port they all bind."""
    family = socket.AF_INET6 if ":" in address.host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((address.host, address.port))
        yield replace(address, port=sock.getsockname()[1])

"""Child processes the benchmark starts: start pinned (and capped), wait until they listen, stop
by pid, and read their memory and CPU time from /proc."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

STOP_TIMEOUT = 5.0
_PR_SET_PDEATHSIG = 1  # linux/prctl.h
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
_PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024


class BenchError(Exception):
    """Something the benchmark needs is missing or broke; the message is one line for the user."""


def _die_with_parent() -> None:
    # If the benchmark itself is killed (SIGKILL, a crash), its servers must not outlive it and
    # keep ports and CPU busy on a shared machine. The setting survives exec (sh → taskset → nginx).
    ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def last_log_line(self) -> str:
        try:
            lines = self.log.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return lines[-1] if lines else ""


@dataclass
class Children:
    """Every process the benchmark started, so that one `stop_all()` in a finally stops them."""

    log_dir: Path
    started: list[Child] = field(default_factory=list)

    def start(self, name: str, argv: Sequence[str], cwd: Path | None = None) -> Child:
        log = self.log_dir / f"{name}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=cwd,
                # Own session: a terminal's Ctrl-C reaches only the benchmark, which then stops
                # its children in order instead of having them die under a running measurement.
                start_new_session=True,
                preexec_fn=_die_with_parent if sys.platform == "linux" else None,  # noqa: PLW1509
            )
        child = Child(name, process, log)
        self.started.append(child)
        return child

    def stop_all(self) -> None:
        for child in reversed(self.started):
            stop(child)
        self.started.clear()


def pinned(cpus: str | None, argv: Sequence[str]) -> list[str]:
    """`argv` run on the cores of taskset list `cpus` (None: wherever the scheduler likes)."""
    return ["taskset", "-c", cpus, *argv] if cpus else list(argv)


def stop(child: Child) -> None:
    """SIGTERM by pid, then SIGKILL if it does not exit in time."""
    if child.process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        child.process.send_signal(signal.SIGTERM)
    try:
        child.process.wait(STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            child.process.kill()
        child.process.wait(STOP_TIMEOUT)


def free_port() -> int:
    """A port nothing listens on now; the child binds it a moment later (a small race, on
    loopback, that port 0 cannot avoid for programs such as nginx that cannot report it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_listening(child: Child, port: int, timeout: float = 15.0) -> None:
    """Return once `port` accepts connections; BenchError if the child dies or takes too long."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if child.process.poll() is not None:
            raise BenchError(
                f"{child.name} exited with status {child.process.returncode}: "
                f"{child.last_log_line() or 'no output'} (log: {child.log})"
            )
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.05)
    raise BenchError(f"{child.name} did not listen on 127.0.0.1:{port} within {timeout:.0f} s")


def process_tree(pid: int) -> list[int]:
    """`pid` and all its descendants (nginx's master and worker, for example)."""
    children_of: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            parent = _ppid(int(entry))
            if parent is not None:
                children_of.setdefault(parent, []).append(int(entry))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(children_of.get(current, ()))
    return tree


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name may contain spaces and parentheses: fields start after the last ')'.
    return text[text.rindex(")") + 2 :].split()


def _ppid(pid: int) -> int | None:
    fields = _stat_fields(pid)
    return int(fields[1]) if fields else None


def rss_kb(pids: Sequence[int]) -> int:
    """Resident memory of these processes together, in KiB (from /proc/<pid>/statm)."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            total += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * _PAGE_KB
    return total


def cpu_seconds(pids: Sequence[int]) -> tuple[float, float]:
    """(user, system) CPU time these processes have used so far."""
    user = system = 0
    for pid in pids:
        fields = _stat_fields(pid)
        if fields:
            user += int(fields[11])  # utime: field 14 of /proc/<pid>/stat
            system += int(fields[12])  # stime: field 15
    return user / _CLOCK_TICKS, system / _CLOCK_TICKS

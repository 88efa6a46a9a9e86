"""Child processes that die with their parent (demo backends, `--workers` workers)."""

from __future__ import annotations

import ctypes
import signal

_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def exit_with_parent() -> None:
    """Runs in a child (a backend, a worker) between fork and exec: the kernel will SIGTERM it
    when its parent dies, even by SIGKILL, so no orphan keeps a port or the terminal's pipes
    open."""
    ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)

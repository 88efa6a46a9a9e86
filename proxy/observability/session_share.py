"""Session sketches shared between workers through the metrics directory.

prometheus-client's files hold numbers, and distinct-session estimates do not add up across
workers (a session whose requests reach two workers would count twice). So each worker writes its
sketches (`proxy.observability.active_sessions`) to a file of its own once a second, and whichever
worker answers a scrape merges them all. One process alone (no directory) shares nothing.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from proxy.observability.active_sessions import estimate, merge

Key = tuple[str, str]  # (cluster, endpoint label)
_PREFIX = "sessions_"


class SessionShare:
    def __init__(self, directory: str | None) -> None:
        self._directory = Path(directory) if directory is not None else None
        self._pid = os.getpid()
        self._written = ""

    @property
    def enabled(self) -> bool:
        """Whether there are workers to share with (else `publish` has nothing to do)."""
        return self._directory is not None

    def publish(self, sketches: dict[Key, bytes]) -> None:
        if self._directory is None:
            return
        rows = [[cluster, endpoint, registers.hex()] for (cluster, endpoint), registers in
                sketches.items()]  # fmt: skip
        text = json.dumps(rows)
        if text == self._written:
            return
        path = _file(self._directory, self._pid)
        partial = path.with_suffix(".tmp")
        partial.write_text(text)
        partial.replace(path)  # readers see the old file or the new one, never half of one

    def estimates(self, own: dict[Key, bytes]) -> dict[Key, int]:
        """Distinct sessions per endpoint over this process and every live worker."""
        merged: dict[Key, list[bytes]] = {key: [registers] for key, registers in own.items()}
        if self._directory is not None:
            for path in self._directory.glob(_PREFIX + "*.json"):
                if path != _file(self._directory, self._pid):
                    for cluster, endpoint, registers in _read(path):
                        merged.setdefault((cluster, endpoint), []).append(bytes.fromhex(registers))
        return {key: estimate(merge(sketches)) for key, sketches in merged.items()}

    def withdraw(self) -> None:
        if self._directory is not None:
            forget_worker(self._directory, self._pid)


def forget_worker(directory: Path, pid: int) -> None:
    """A worker has exited: its sessions stop counting (its counters stay, as they should)."""
    _file(directory, pid).unlink(missing_ok=True)


def _file(directory: Path, pid: int) -> Path:
    return directory / f"{_PREFIX}{pid}.json"


def _read(path: Path) -> list[list[str]]:
    try:
        rows: list[list[str]] = json.loads(path.read_text())
    except (OSError, ValueError):
        return []  # removed as its worker exited, between the listing and the read
    return rows

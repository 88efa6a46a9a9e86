"""Facts about the machine and the tools, printed with the results: numbers without them mean
little. Also how busy each core was, which tells whether others' work (or the load generator)
limited a run."""

from __future__ import annotations

import contextlib
import os
import platform
import sys
from collections.abc import Collection
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def package_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def facts() -> dict[str, object]:
    return {
        "cpu": cpu_model(),
        "cores_online": os.cpu_count(),
        "cores_usable": sorted(os.sched_getaffinity(0)),
        "kernel": platform.release(),
        "python": sys.version.split()[0],
        "uvloop": package_version("uvloop"),
        "httptools": package_version("httptools"),
        "loadavg_at_start": load_average(),
    }


def load_average() -> str:
    """1, 5 and 15 minute load averages: above 1-2 here means others were busy on this machine."""
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


@dataclass(frozen=True, slots=True)
class CpuTimes:
    """Per-core (busy, total) jiffies from /proc/stat."""

    cores: dict[int, tuple[int, int]]

    @classmethod
    def now(cls) -> CpuTimes:
        cores = {}
        for line in Path("/proc/stat").read_text().splitlines():
            name, *values = line.split()
            if name.startswith("cpu") and name != "cpu":
                ticks = [int(v) for v in values]
                idle = ticks[3] + ticks[4]  # idle + iowait
                cores[int(name[3:])] = (sum(ticks[:8]) - idle, sum(ticks[:8]))
        return cls(cores)

    def busy_since(self, earlier: CpuTimes) -> dict[int, float]:
        """Percent busy of each core between `earlier` and now (self)."""
        busy = {}
        for core, (used, total) in self.cores.items():
            used0, total0 = earlier.cores.get(core, (0, 0))
            busy[core] = round(100 * (used - used0) / max(1, total - total0), 1)
        return busy


TIME_WAIT_S = 60  # Linux's fixed TCP_TIMEWAIT_LEN
_TIME_WAIT_STATE = "06"  # include/net/tcp_states.h, as /proc/net/tcp prints it
_USER_HZ = 100  # /proc/net/tcp gives timers in clock ticks


def new_time_wait(ports: Collection[int], within_s: float) -> int:
    """Sockets to or from `ports` that entered TIME_WAIT in the last `within_s` seconds.

    Each is an upstream connection someone closed: a pool that keeps its connections makes none.
    Linux keeps TIME_WAIT for 60 s and /proc/net/tcp shows the time left, so "left >= 60 s -
    within_s" means "closed during the run", whatever earlier runs left behind.
    """
    min_left = (TIME_WAIT_S - within_s) * _USER_HZ
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if fields[3] != _TIME_WAIT_STATE:
                    continue
                local, remote = (int(f.rsplit(":", 1)[1], 16) for f in fields[1:3])
                left = int(fields[5].split(":")[1], 16)
                if (local in ports or remote in ports) and left >= min_left:
                    count += 1
    return count


def parse_cpus(text: str) -> set[int]:
    """taskset's list syntax: "1", "0,2", "0-3"."""
    cores: set[int] = set()
    for part in text.split(","):
        first, _, last = part.strip().partition("-")
        if not first.isdigit() or (last and not last.isdigit()):
            raise ValueError(f"{text!r} is not a CPU list such as 1, 0,2 or 0-3")
        cores.update(range(int(first), int(last or first) + 1))
    return cores

"""An optional CPU cap for the proxies (`--cpu-quota 0.5` = half a core), applied the best way
this machine allows, and said out loud when it cannot be.

In order: a cgroup v2 child with `cpu.max`; a cgroup v1 `cpu` child with `cpu.cfs_quota_us`
(hybrid hierarchies, containers); `systemd-run --scope -p CPUQuota=` when systemd runs the
machine. Each way is probed by actually creating a group, not guessed from what is mounted.
Every proxy gets its own group, so each is capped on its own, as the targets in issue 7 ask.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

# The quota is enforced per period: with the kernel's default 100 ms a capped proxy runs 50 ms,
# then sits throttled for 50 ms, and every p99 becomes that pause. 10 ms keeps the pauses short.
PERIOD_US = 10_000
# $0 is the group's cgroup.procs, "$@" the command: the shell joins the group, then becomes the
# command (exec keeps the pid), so every process it forks is born inside the group.
_JOIN_AND_EXEC = 'echo $$ > "$0" && exec "$@"'


@dataclass
class CpuCap:
    """How the cap is applied (`method`), or why it is not (`method == "none"`, `detail`)."""

    quota: float | None
    method: str  # cgroup2 | cgroup1 | systemd-run | none
    detail: str
    _root: Path | None = None
    _groups: list[Path] = field(default_factory=list)

    @property
    def applied(self) -> bool:
        return self.method != "none"

    def wrap(self, name: str, argv: Sequence[str]) -> list[str]:
        """`argv`, run so that it and its children are capped (unchanged when not capping)."""
        if self.quota is None or self.method == "none":
            return list(argv)
        if self.method == "systemd-run":
            percent = round(self.quota * 100)
            return [
                "systemd-run",
                "--scope",
                "--quiet",
                "-p",
                f"CPUQuota={percent}%",
                "-p",
                f"CPUQuotaPeriodSec={PERIOD_US // 1000}ms",
                "--",
                *argv,
            ]
        group = self._new_group(name)
        return ["sh", "-c", _JOIN_AND_EXEC, str(group / "cgroup.procs"), *argv]

    def throttled(self, name: str) -> int | None:
        """How many periods the group `name` was throttled so far (None: not a cgroup cap)."""
        if self._root is None:
            return None
        with contextlib.suppress(OSError, ValueError):
            for line in (self._root / _group_name(name) / "cpu.stat").read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "nr_throttled":
                    return int(value)
        return None

    def members(self, name: str) -> set[int]:
        if self._root is None:
            return set()
        with contextlib.suppress(OSError):
            text = (self._root / _group_name(name) / "cgroup.procs").read_text()
            return {int(pid) for pid in text.split()}
        return set()

    def _new_group(self, name: str) -> Path:
        assert self._root is not None and self.quota is not None
        group = self._root / _group_name(name)
        group.mkdir(exist_ok=True)
        _write_quota(self.method, group, self.quota)
        self._groups.append(group)
        return group

    def cleanup(self) -> None:
        """Remove the groups (call after their processes exited: a busy group cannot go)."""
        for group in self._groups:
            with contextlib.suppress(OSError):
                _remove_group(group)
        self._groups.clear()


def _group_name(name: str) -> str:
    return f"sticky-bench-{os.getpid()}-{name}"


def _write_quota(method: str, group: Path, quota: float) -> None:
    quota_us = max(1000, round(quota * PERIOD_US))  # the kernel's minimum is 1 ms
    if method == "cgroup2":
        (group / "cpu.max").write_text(f"{quota_us} {PERIOD_US}\n")
    else:
        (group / "cpu.cfs_period_us").write_text(f"{PERIOD_US}\n")
        (group / "cpu.cfs_quota_us").write_text(f"{quota_us}\n")


def plan_cap(quota: float | None) -> CpuCap:
    if quota is None:
        return CpuCap(None, "none", "no cap asked (--cpu-quota)")
    reasons = []
    for method, root in (("cgroup2", _cgroup2_root()), ("cgroup1", _cgroup1_cpu_root())):
        if root is None:
            reasons.append(f"{method}: no usable hierarchy")
            continue
        problem = _probe(method, root, quota)
        if problem is None:
            return CpuCap(quota, method, f"{root} ({_quota_text(method)})", _root=root)
        reasons.append(f"{method}: {problem}")
    if shutil.which("systemd-run") and Path("/run/systemd/system").is_dir():
        return CpuCap(quota, "systemd-run", "systemd-run --scope -p CPUQuota")
    reasons.append("systemd-run: systemd is not the init system")
    return CpuCap(quota, "none", "cap NOT applied: " + "; ".join(reasons))


def _quota_text(method: str) -> str:
    return "cpu.max" if method == "cgroup2" else "cpu.cfs_quota_us"


def _probe(method: str, root: Path, quota: float) -> str | None:
    """None when a capped group can be made under `root`, else what stopped it."""
    probe = root / _group_name("probe")
    try:
        probe.mkdir(exist_ok=True)
        try:
            _write_quota(method, probe, quota)
            # Joining can fail where creating did not (cgroup v2's no-internal-process rule).
            joined = subprocess.run(
                ["sh", "-c", _JOIN_AND_EXEC, str(probe / "cgroup.procs"), "true"],
                capture_output=True,
                text=True,
                check=False,
            )
            if joined.returncode != 0:
                return f"cannot join a group: {joined.stderr.strip() or joined.returncode}"
        finally:
            _remove_group(probe)
    except OSError as error:
        return f"{error.strerror or error} ({probe})"
    return None


def _remove_group(group: Path) -> None:
    # A group whose last process just exited can stay busy for a moment.
    for _ in range(50):
        try:
            group.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError:
            time.sleep(0.02)


def _own_cgroup(controller: str | None) -> str | None:
    """This process's cgroup path for a v1 `controller`, or in the v2 hierarchy (None)."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _, controllers, path = line.split(":", 2)
            if controller is None and controllers == "":
                return path
            if controller is not None and controller in controllers.split(","):
                return path
    return None


def _mounts(fstype: str) -> list[tuple[Path, set[str]]]:
    found = []
    with contextlib.suppress(OSError):
        for line in Path("/proc/mounts").read_text().splitlines():
            parts = line.split()
            if len(parts) >= 4 and parts[2] == fstype:
                found.append((Path(parts[1]), set(parts[3].split(","))))
    return found


def _cgroup2_root() -> Path | None:
    own = _own_cgroup(None)
    for mount, _ in _mounts("cgroup2"):
        root = mount / (own or "/").lstrip("/")
        controllers = root / "cgroup.subtree_control"
        # The cpu controller must be enabled for children of our group, else cpu.max is absent.
        with contextlib.suppress(OSError):
            if "cpu" in controllers.read_text().split():
                return root
    return None


def _cgroup1_cpu_root() -> Path | None:
    own = _own_cgroup("cpu")
    for mount, options in _mounts("cgroup"):
        if "cpu" in options:
            root = mount / (own or "/").lstrip("/")
            if root.is_dir():
                return root
    return None

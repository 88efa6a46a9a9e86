"""Load generation: wrk when installed, else the built-in generator (bench/loadgen.py).

Both print one `BENCH-RESULT {json}` line with the same fields, so one parser reads either. wrk
gets a Lua script that sets the headers once (no per-request Lua, which would cost wrk more than
some proxies cost) and reports exact percentiles from its `done()` hook.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from bench.procs import BenchError, pinned

RESULT_MARK = "BENCH-RESULT "
# Beyond this a request counts as timed out (wrk's --timeout; the built-in generator's too).
REQUEST_TIMEOUT_S = 5
# wrk and the generator stop on their own after the duration; this only bounds a hung one.
OVERRUN_S = 30

BUILTIN_LOAD_NAME = "built-in (python -m bench.loadgen)"

Headers = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class LoadSpec:
    url: str  # http://127.0.0.1:PORT/path
    headers: Headers
    connections: int
    duration_s: int


@dataclass(frozen=True, slots=True)
class LoadResult:
    requests: int
    duration_s: float
    bytes: int
    latency_ms: dict[str, float]  # p50 p90 p99 p99.9 mean max
    # connect/read/write/timeout: socket errors; status: responses wrk counts as failed (>= 400;
    # the built-in generator counts every non-2xx)
    errors: dict[str, int]

    @property
    def rps(self) -> float:
        return self.requests / self.duration_s if self.duration_s > 0 else 0.0

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())


_WRK_DONE = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '%s{"requests": %d, "duration_us": %d, "bytes": %d, "connect": %d, "read": %d, '
    .. '"write": %d, "status": %d, "timeout": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d, '
    .. '"p999_us": %d, "mean_us": %f, "max_us": %d}\\n',
    "RESULT_MARK", summary.requests, summary.duration, summary.bytes, e.connect, e.read,
    e.write, e.status, e.timeout, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency:percentile(99.9), latency.mean, latency.max))
end
""".replace("RESULT_MARK", RESULT_MARK)


def lua_string(text: str) -> str:
    if any(ord(char) < 32 or ord(char) > 126 for char in text):
        raise ValueError(f"header text must be printable ASCII: {text!r}")
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def wrk_script(headers: Headers) -> str:
    lines = [f"wrk.headers[{lua_string(name)}] = {lua_string(value)}" for name, value in headers]
    return "\n".join(lines) + "\n" + _WRK_DONE


@dataclass(frozen=True, slots=True)
class Wrk:
    cpus: str | None
    script_dir: Path
    name: str = "wrk"

    def argv(self, spec: LoadSpec, script: Path) -> list[str]:
        return pinned(
            self.cpus,
            [
                "wrk",
                "-t1",  # one thread on one pinned core: the proxies get the other core
                f"-c{spec.connections}",
                f"-d{spec.duration_s}s",
                f"--timeout={REQUEST_TIMEOUT_S}s",
                "--latency",
                "-s",
                str(script),
                spec.url,
            ],
        )

    def run(self, spec: LoadSpec) -> LoadResult:
        digest = hashlib.sha1(repr(spec.headers).encode()).hexdigest()[:12]
        script = self.script_dir / f"wrk-{digest}.lua"
        if not script.exists():
            script.write_text(wrk_script(spec.headers))
        return _run_generator(self.argv(spec, script), spec)


@dataclass(frozen=True, slots=True)
class BuiltinLoad:
    cpus: str | None
    repo: Path
    name: str = BUILTIN_LOAD_NAME

    def run(self, spec: LoadSpec) -> LoadResult:
        argv = [
            sys.executable,
            "-m",
            "bench.loadgen",
            "--url",
            spec.url,
            "--connections",
            str(spec.connections),
            "--duration",
            str(spec.duration_s),
        ]
        for name, value in spec.headers:
            argv += ["--header", f"{name}: {value}"]
        return _run_generator(pinned(self.cpus, argv), spec, cwd=self.repo)


LoadGenerator = Wrk | BuiltinLoad


def choose_load(kind: str, cpus: str | None, script_dir: Path, repo: Path) -> LoadGenerator:
    """`kind` is auto | wrk | builtin; BenchError when wrk is asked for and missing."""
    has_wrk = shutil.which("wrk") is not None
    if kind == "wrk" and not has_wrk:
        raise BenchError("--load wrk: wrk is not installed (apt-get install -y wrk)")
    if kind == "builtin" or not has_wrk:
        return BuiltinLoad(cpus, repo)
    return Wrk(cpus, script_dir)


def _run_generator(argv: list[str], spec: LoadSpec, cwd: Path | None = None) -> LoadResult:
    try:
        done = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=spec.duration_s + OVERRUN_S,
            cwd=cwd,
            check=False,
        )
    except subprocess.TimeoutExpired as error:
        raise BenchError(f"{argv[0]} ran past {spec.duration_s + OVERRUN_S} s") from error
    for line in done.stdout.splitlines():
        if line.startswith(RESULT_MARK):
            return parse_result(line.removeprefix(RESULT_MARK))
    tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
    raise BenchError(f"load generator failed (exit {done.returncode}): {tail[0]}")


def parse_result(text: str) -> LoadResult:
    raw = json.loads(text)
    return LoadResult(
        requests=int(raw["requests"]),
        duration_s=raw["duration_us"] / 1e6,
        bytes=int(raw["bytes"]),
        latency_ms={
            "p50": raw["p50_us"] / 1000,
            "p90": raw["p90_us"] / 1000,
            "p99": raw["p99_us"] / 1000,
            "p99.9": raw["p999_us"] / 1000,
            "mean": raw["mean_us"] / 1000,
            "max": raw["max_us"] / 1000,
        },
        errors={key: int(raw[key]) for key in ("connect", "read", "write", "timeout", "status")},
    )

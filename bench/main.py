"""The benchmark run: flags, start everything, measure interleaved, print and save the results.

See bench/README.md for how to run it and read the table.
"""

from __future__ import annotations

import argparse
import datetime
import os
import resource
import shutil
import signal
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from types import FrameType
from typing import NoReturn

from bench import builds, check, machine, measure, report
from bench.cpucap import CpuCap, plan_cap
from bench.load import BUILTIN_LOAD_NAME, LoadGenerator, Wrk, choose_load
from bench.procs import BenchError, Children, rss_kb
from bench.scenarios import SCENARIOS
from bench.targets import (
    DIRECT,
    HAPROXY,
    NGINX,
    PROXIES,
    STICKY_PROXY_BUILDS,
    STICKY_PROXY_COMPILED,
    Backends,
    ProxyPlan,
    Target,
    available_proxies,
    choose_backend_kind,
    direct_target,
    start_backends,
    start_proxy,
    tool_version,
)

PROG = "bench/run.py"
REPO = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
ALL_TARGETS = (DIRECT, *PROXIES)
MAX_DURATION_S = 300  # per run: every load loop is bounded in time
MAX_REPEAT = 20
# Descriptors for 2,000 idle clients plus a 500-connection run, with margin.
WANTED_FDS = 8192


@dataclass(frozen=True, slots=True)
class Options:
    duration: int
    repeat: int
    warmup: int
    connections: int
    scenarios: tuple[str, ...]
    targets: tuple[str, ...]
    backends: int
    backend_server: str
    load: str
    cookie_name: str
    load_cpus: str | None
    proxy_cpus: str | None
    backend_cpus: str | None
    cpu_quota: float | None
    results_dir: Path
    proxy_source: Path


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{PROG}: error: {message.removeprefix('argument ')}\n")


def _bounded_int(low: int, high: int) -> Callable[[str], int]:
    def convert(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is outside {low}-{high}")
        return value

    return convert


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text} is not above 0")
    return value


def _choices(allowed: Sequence[str]) -> Callable[[str], tuple[str, ...]]:
    def convert(text: str) -> tuple[str, ...]:
        if text == "all":
            return tuple(allowed)
        names = tuple(name.strip() for name in text.split(",") if name.strip())
        unknown = [name for name in names if name not in allowed]
        if unknown or not names:
            raise argparse.ArgumentTypeError(
                f"{', '.join(unknown) or 'nothing'} unknown; choose from {', '.join(allowed)}, all"
            )
        return tuple(dict.fromkeys(names))

    return convert


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description="sticky-proxy, interpreted and compiled, side by side with a direct backend, "
        "nginx and HAProxy.",
        allow_abbrev=False,
    )
    add = parser.add_argument
    add(
        "--duration",
        type=_bounded_int(1, MAX_DURATION_S),
        default=5,
        metavar="S",
        help="seconds per run (default: 5)",
    )
    add(
        "--repeat",
        type=_bounded_int(1, MAX_REPEAT),
        default=3,
        metavar="N",
        help="runs of every target per scenario, interleaved (default: 3)",
    )
    add(
        "--warmup",
        type=_bounded_int(0, 60),
        default=1,
        metavar="S",
        help="unrecorded seconds per target before each scenario (default: 1)",
    )
    add(
        "--connections",
        type=_bounded_int(1, 1000),
        default=50,
        metavar="N",
        help="connections of the scenarios that do not fix their own (default: 50)",
    )
    add(
        "--scenarios",
        type=_choices(tuple(SCENARIOS)),
        default=tuple(SCENARIOS),
        metavar="LIST",
        help=f"comma-separated, or all: {', '.join(SCENARIOS)} (default: all)",
    )
    add(
        "--targets",
        type=_choices(ALL_TARGETS),
        default=None,
        metavar="LIST",
        help=f"comma-separated: {', '.join(ALL_TARGETS)} (default: all that are installed)",
    )
    add(
        "--backends",
        type=_bounded_int(2, 4),
        default=3,
        metavar="N",
        help="backend ports behind the proxies (default: 3)",
    )
    add(
        "--backend-server",
        choices=("auto", "nginx", "builtin"),
        default="auto",
        help="fixed-response backends: nginx, or the built-in uvloop responder (default: auto)",
    )
    add(
        "--load",
        choices=("auto", "wrk", "builtin"),
        default="auto",
        help="load generator: wrk, or the built-in asyncio one (default: auto)",
    )
    add(
        "--cookie-name",
        default="INGRESSCOOKIE",
        metavar="NAME",
        help="the affinity cookie's name, for every proxy (default: INGRESSCOOKIE)",
    )
    add(
        "--load-cpus",
        default=None,
        metavar="CPUS",
        help="taskset list for the load generator, or none (default: 0)",
    )
    add(
        "--proxy-cpus",
        default=None,
        metavar="CPUS",
        help="taskset list for the proxies, or none (default: 1)",
    )
    add(
        "--backend-cpus",
        default=None,
        metavar="CPUS",
        help="taskset list for the backends, or none (default: the proxies' cores)",
    )
    add(
        "--cpu-quota",
        type=_positive_float,
        default=None,
        metavar="CORES",
        help="cap each proxy at this many cores, e.g. 0.5 (default: no cap)",
    )
    add(
        "--results-dir",
        type=Path,
        default=RESULTS,
        metavar="DIR",
        help="where the JSON of every run goes (default: bench/results)",
    )
    add(
        "--proxy-source",
        type=Path,
        default=REPO,
        metavar="DIR",
        help="the checkout whose proxy/ is measured, e.g. a `git worktree` of another "
        "revision; each build runs from a copy of it (default: this one)",
    )
    return parser


def parse_options(argv: Sequence[str] | None = None) -> Options:
    parser = build_parser()
    args = parser.parse_args(argv)
    usable = sorted(os.sched_getaffinity(0))
    load_cpus = _cpu_flag(parser, "--load-cpus", args.load_cpus, usable, default_index=0)
    proxy_cpus = _cpu_flag(parser, "--proxy-cpus", args.proxy_cpus, usable, default_index=1)
    backend_cpus = (
        proxy_cpus
        if args.backend_cpus is None
        else _cpu_flag(parser, "--backend-cpus", args.backend_cpus, usable, default_index=1)
    )
    if args.cpu_quota is not None:
        limit = len(machine.parse_cpus(proxy_cpus)) if proxy_cpus else len(usable)
        if args.cpu_quota > limit:
            parser.error(f"--cpu-quota: {args.cpu_quota} is more than the {limit} proxy core(s)")
    if not args.cookie_name.isascii() or not args.cookie_name.replace("_", "").isalnum():
        parser.error(f"--cookie-name: {args.cookie_name!r} must be letters, digits and _")
    return Options(
        duration=args.duration,
        repeat=args.repeat,
        warmup=args.warmup,
        connections=args.connections,
        scenarios=args.scenarios,
        targets=args.targets or (DIRECT, *available_proxies()),
        backends=args.backends,
        backend_server=args.backend_server,
        load=args.load,
        cookie_name=args.cookie_name,
        load_cpus=load_cpus,
        proxy_cpus=proxy_cpus,
        backend_cpus=backend_cpus,
        cpu_quota=args.cpu_quota,
        results_dir=args.results_dir,
        proxy_source=_proxy_source(parser, args.proxy_source, args.targets),
    )


def _proxy_source(
    parser: argparse.ArgumentParser, path: Path, targets: tuple[str, ...] | None
) -> Path:
    if not (path / "proxy" / "__main__.py").is_file():
        parser.error(f"--proxy-source: {path} has no proxy/__main__.py")
    if (targets is None or STICKY_PROXY_COMPILED in targets) and not (path / "setup.py").is_file():
        parser.error(
            f"--proxy-source: {path} has no setup.py to compile it with; leave "
            f"{STICKY_PROXY_COMPILED} out of --targets"
        )
    return path.resolve()


def _cpu_flag(
    parser: argparse.ArgumentParser,
    flag: str,
    text: str | None,
    usable: list[int],
    default_index: int,
) -> str | None:
    """A validated taskset list; None means "do not pin" (asked, or a one-core machine)."""
    if text is None:
        # The brief's layout: load on core 0, proxies on core 1 (else the first usable ones).
        if len(usable) < 2:
            return None
        wanted = default_index if default_index in usable else usable[default_index]
        return str(wanted)
    if text == "none":
        return None
    try:
        cores = machine.parse_cpus(text)
    except ValueError as error:
        parser.error(f"{flag}: {error}")
    outside = sorted(cores - set(usable))
    if outside:
        parser.error(f"{flag}: core(s) {outside} not usable here (usable: {usable})")
    return text


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_options(argv)
    signal.signal(signal.SIGTERM, _interrupt)  # so `finally` stops everything on SIGTERM too
    try:
        return run(options)
    except BenchError as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted; everything it started is stopped", file=sys.stderr)
        return 130


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _require_tools(options: Options) -> None:
    needed = {"taskset": bool(options.load_cpus or options.proxy_cpus or options.backend_cpus)}
    needed["nginx"] = NGINX in options.targets or options.backend_server == "nginx"
    needed["haproxy"] = HAPROXY in options.targets
    for tool, wanted in needed.items():
        if wanted and shutil.which(tool) is None:
            hint = (
                "pass --load-cpus none --proxy-cpus none"
                if tool == "taskset"
                else (
                    f"apt-get install -y {'nginx-light' if tool == 'nginx' else tool}, or leave it "
                    "out of --targets"
                )
            )
            raise BenchError(f"{tool} is not installed ({hint})")


def _raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = WANTED_FDS if hard == resource.RLIM_INFINITY else min(WANTED_FDS, hard)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


def run(options: Options) -> int:
    _require_tools(options)
    _raise_fd_limit()
    started = datetime.datetime.now(datetime.UTC)
    facts = machine.facts()  # before compiling, whose load would be taken for others' work
    cap = plan_cap(options.cpu_quota)
    with tempfile.TemporaryDirectory(prefix="sticky-bench-") as tmp_name:
        tmp = Path(tmp_name)
        # nginx workers run as an unprivileged user when started by root: they must be able to
        # reach the 1 MiB file in here (nothing secret lives in this directory).
        tmp.chmod(0o755)
        load = choose_load(options.load, options.load_cpus, tmp, REPO)
        children = Children(tmp)
        try:
            backends, targets = _start_targets(options, children, tmp, cap)
            setup = _setup_facts(options, cap, load, backends, targets, facts=facts)
            _print_setup(setup)
            plan = measure.Plan(
                scenarios=[SCENARIOS[name] for name in options.scenarios],
                repeat=options.repeat,
                duration_s=options.duration,
                warmup_s=options.warmup,
                connections=options.connections,
                cookie_name=options.cookie_name,
                uuids=tuple(backends.uuids),
            )
            tools = measure.Tools(load, cap, frozenset(backends.ports))
            runs, problems = measure.measure_all(plan, targets, tools)
        finally:
            children.stop_all()
            cap.cleanup()
    return _finish(options, started, setup, runs, problems)


def _start_targets(
    options: Options, children: Children, tmp: Path, cap: CpuCap
) -> tuple[Backends, list[Target]]:
    wanted_builds = [
        build for name, build in STICKY_PROXY_BUILDS.items() if name in options.targets
    ]
    trees = builds.prepare(options.proxy_source, tmp, wanted_builds)
    kind = choose_backend_kind(options.backend_server)
    backends = start_backends(
        children, kind=kind, count=options.backends, tmp=tmp, cpus=options.backend_cpus, repo=REPO
    )
    plan = ProxyPlan(tmp, trees, backends, options.cookie_name, options.proxy_cpus, cap)
    targets = [direct_target(backends)] if DIRECT in options.targets else []
    for name in PROXIES:
        if name in options.targets:
            targets.append(start_proxy(children, name, plan))
    for target in targets:
        if target.is_proxy:
            target.cookie = check.affinity_cookie(target.port, options.cookie_name, target.name)
            if target.cookie is None:
                raise BenchError(f"{target.name} sets no {options.cookie_name} cookie")
            _check_capped(target, cap)
        target.base_rss_kb = rss_kb(target.pids())
    # The direct backend ignores cookies; it gets one anyway so every request has the same size.
    proxy_cookies = [t.cookie for t in targets if t.name in STICKY_PROXY_BUILDS and t.cookie]
    for target in targets:
        if not target.is_proxy:
            target.cookie = proxy_cookies[0] if proxy_cookies else "direct"
    return backends, targets


def _check_capped(target: Target, cap: CpuCap) -> None:
    """Every process of a capped proxy must be in its group, or the cap is a claim."""
    members = cap.members(target.name)
    if cap.applied and cap.method != "systemd-run" and not set(target.pids()) <= members:
        raise BenchError(f"{target.name}: pids {target.pids()} not all in its cgroup {members}")


def _setup_facts(
    options: Options,
    cap: CpuCap,
    load: LoadGenerator,
    backends: Backends,
    targets: list[Target],
    *,
    facts: dict[str, object],
) -> dict[str, object]:
    load_version = "wrk " + _wrk_version() if isinstance(load, Wrk) else load.name
    return {
        "machine": facts,
        "pinning": {
            "load": options.load_cpus or "not pinned",
            "proxies": options.proxy_cpus or "not pinned",
            "backends": options.backend_cpus or "not pinned",
        },
        "cpu_cap": {"quota_cores": cap.quota, "method": cap.method, "detail": cap.detail},
        "load_generator": load_version,
        "backends": {"kind": backends.kind, "ports": backends.ports, "version": backends.version},
        "targets": {
            t.name: {
                "version": t.version,
                "port": t.port,
                "base_rss_kb": t.base_rss_kb,
                "capped": t.capped,
                "cookie": t.cookie,
            }
            for t in targets
        },
        "options": {k: str(v) for k, v in asdict(options).items()},
    }


def _wrk_version() -> str:
    return tool_version(["wrk", "-v"]).split()[1]


def _print_setup(setup: dict[str, object]) -> None:
    facts = setup["machine"]
    assert isinstance(facts, dict)
    pins = setup["pinning"]
    cap = setup["cpu_cap"]
    assert isinstance(pins, dict) and isinstance(cap, dict)
    print(
        f"machine: {facts['cpu']}, {facts['cores_online']} cores (usable {facts['cores_usable']})"
        f", Linux {facts['kernel']}, Python {facts['python']}, uvloop {facts['uvloop']}, "
        f"httptools {facts['httptools']}, load average {facts['loadavg_at_start']}"
    )
    print(
        f"pinning: load generator cpu {pins['load']}, proxies cpu {pins['proxies']}, "
        f"backends cpu {pins['backends']}"
    )
    cap_line = (
        f"{cap['quota_cores']} core per proxy via {cap['method']} ({cap['detail']})"
        if cap["method"] != "none"
        else cap["detail"]
    )
    print(f"cpu cap: {cap_line}")
    print(f"load generator: {setup['load_generator']}")
    if setup["load_generator"] == BUILTIN_LOAD_NAME:
        print(
            "  note: the built-in generator is Python and may be the limit for the fastest\n"
            "  targets; a load core near 100 % busy in the table says it was (install wrk)"
        )
    backends = setup["backends"]
    targets = setup["targets"]
    assert isinstance(backends, dict) and isinstance(targets, dict)
    print(f"backends: {backends['version']} ({backends['kind']}), ports {backends['ports']}")
    for name, info in targets.items():
        print(f"  {name}: {info['version']}, base RSS {info['base_rss_kb'] / 1024:.1f} MB")
    sys.stdout.flush()


def _finish(
    options: Options,
    started: datetime.datetime,
    setup: dict[str, object],
    runs: list[report.Run],
    problems: dict[tuple[str, str], list[str]],
) -> int:
    rows = report.summarise(runs, problems)
    cores = sorted(machine.CpuTimes.now().cores)
    table = report.markdown_table(rows, cores)
    goals = report.targets_summary(rows, options.connections)
    proxies = [name for name in options.targets if name in PROXIES]
    goals_table = report.targets_table(goals, proxies)
    print()
    for name in options.scenarios:
        print(f"{name}: {SCENARIOS[name].what}")
    print("\n" + table + "\n")
    print("targets summary (÷ nginx in this run; the bar applies to the compiled build):\n")
    print(goals_table + "\n")
    path = options.results_dir / f"{started.strftime('%Y%m%dT%H%M%SZ')}.json"
    document = {
        "started": started.isoformat(),
        **setup,
        "loadavg_at_end": machine.load_average(),
        "problems": {f"{s} {t}": found for (s, t), found in problems.items()},
        "runs": [run.to_json() for run in runs],
        "summary": [asdict(row) for row in rows],
        "targets_summary": [asdict(goal) for goal in goals],
        "table": table,
        "targets_table": goals_table,
    }
    report.write_json(path, document)
    print(f"load average at end: {machine.load_average()}; every run: {path}")
    return 1 if problems else 0

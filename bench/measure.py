"""Measuring: per scenario, check every target's answers, warm each up, then run them
interleaved (A B C A B C ...) so that drift on a shared machine hits every target alike."""

from __future__ import annotations

import asyncio
import contextlib
import resource
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace

from bench import check, idle, machine
from bench.cpucap import CpuCap
from bench.load import LoadGenerator, LoadSpec
from bench.procs import BenchError, cpu_seconds, rss_kb
from bench.report import Run
from bench.scenarios import Scenario
from bench.targets import Target

Problems = dict[tuple[str, str], list[str]]


@dataclass(frozen=True, slots=True)
class Plan:
    scenarios: Sequence[Scenario]
    repeat: int
    duration_s: int
    warmup_s: int
    connections: int  # for scenarios that do not fix their own
    cookie_name: str
    uuids: tuple[str, ...]  # the backends' identities, to check bodies against


@dataclass(frozen=True, slots=True)
class Tools:
    load: LoadGenerator
    cap: CpuCap
    backend_ports: frozenset[int]  # to count upstream connections closed during a run


@dataclass(frozen=True, slots=True)
class Job:
    scenario: Scenario
    target: Target
    spec: LoadSpec
    rep: int


def measure_all(plan: Plan, targets: Sequence[Target], tools: Tools) -> tuple[list[Run], Problems]:
    per_scenario = len(targets) * (plan.repeat * plan.duration_s + plan.warmup_s)
    total = len(plan.scenarios) * len(targets) * plan.repeat
    minutes = len(plan.scenarios) * per_scenario / 60
    print(f"{total} runs of {plan.duration_s} s; about {minutes:.0f} min with warm-ups\n")
    runs: list[Run] = []
    problems: Problems = {}
    for scenario in plan.scenarios:
        specs = {target.name: spec_for(plan, scenario, target) for target in targets}
        for target in targets:
            found = _probe(plan, scenario, target, specs[target.name])
            if found:
                problems[(scenario.name, target.name)] = found
                print(f"  CHECK FAILED {scenario.name} {target.name}: {'; '.join(found)}")
            if plan.warmup_s:
                tools.load.run(replace(specs[target.name], duration_s=plan.warmup_s))
        for rep in range(plan.repeat):
            for target in targets:
                run = measure(Job(scenario, target, specs[target.name], rep), tools)
                _still_running(target)
                runs.append(run)
                _print_run(len(runs), total, run)
    return runs, problems


def _still_running(target: Target) -> None:
    child = target.child
    if child.process.poll() is not None:
        raise BenchError(
            f"{target.name} exited with status {child.process.returncode} during the run: "
            f"{child.last_log_line() or 'no output'}"
        )


def spec_for(plan: Plan, scenario: Scenario, target: Target) -> LoadSpec:
    base = f"http://127.0.0.1:{target.port}"
    headers = scenario.headers(plan.cookie_name, target.cookie, f"{base}/app/dashboard")
    connections = scenario.connections or plan.connections
    return LoadSpec(base + scenario.path, headers, connections, plan.duration_s)


def _probe(plan: Plan, scenario: Scenario, target: Target, spec: LoadSpec) -> list[str]:
    affinity = None if not target.is_proxy else ("sticky" if scenario.sends_cookie else "new")
    return check.probe(
        port=target.port,
        path=scenario.path,
        headers=spec.headers,
        uuids=plan.uuids,
        cookie_name=plan.cookie_name,
        affinity=affinity,
    )


def measure(job: Job, tools: Tools) -> Run:
    if job.scenario.idle_connections:
        return asyncio.run(_measure_with_idle(job, tools))
    return _measure_load(job, tools)


@dataclass
class Usage:
    target_cpu_s: float = 0.0
    target_user_s: float = 0.0
    load_cpu_s: float = 0.0
    cores_busy: dict[int, float] | None = None
    throttled_periods: int | None = None


def _cpu_of_children() -> float:
    """CPU used by reaped children: the load generator runs, once each has exited."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


@contextlib.contextmanager
def _usage(target: Target, cap: CpuCap) -> Iterator[Usage]:
    """CPU of the target, of the load generator and of every core, over the `with` block."""
    user, system = cpu_seconds(target.pids())
    cores = machine.CpuTimes.now()
    load_cpu = _cpu_of_children()
    throttled = cap.throttled(target.name)
    usage = Usage()
    yield usage
    user_after, system_after = cpu_seconds(target.pids())
    usage.target_user_s = user_after - user
    usage.target_cpu_s = usage.target_user_s + system_after - system
    usage.load_cpu_s = _cpu_of_children() - load_cpu
    usage.cores_busy = machine.CpuTimes.now().busy_since(cores)
    now_throttled = cap.throttled(target.name)
    if now_throttled is not None and throttled is not None:
        usage.throttled_periods = now_throttled - throttled


def _measure_load(job: Job, tools: Tools) -> Run:
    started = time.monotonic()
    with _usage(job.target, tools.cap) as usage:
        result = tools.load.run(job.spec)
    closed = machine.new_time_wait(tools.backend_ports, time.monotonic() - started)
    return Run(
        scenario=job.scenario.name,
        target=job.target.name,
        rep=job.rep,
        load=result,
        target_cpu_s=usage.target_cpu_s,
        target_user_s=usage.target_user_s,
        load_cpu_s=usage.load_cpu_s,
        rss_kb=rss_kb(job.target.pids()),
        cores_busy=usage.cores_busy or {},
        throttled_periods=usage.throttled_periods,
        # Direct: wrk's own connections to the backend, not an upstream pool's.
        upstream_closes=closed if job.target.is_proxy else None,
    )


async def _measure_with_idle(job: Job, tools: Tools) -> Run:
    """A normal run while `idle_connections` clients, each after one request, stay open."""
    count = job.scenario.idle_connections
    port = job.target.port
    before = rss_kb(job.target.pids())
    clients = await idle.open_idle(port, count, idle.request_bytes(port, job.spec.headers))
    try:
        with_idle = rss_kb(job.target.pids())
        # In a thread, so this loop keeps running and sees a client closed by the target.
        run = await asyncio.to_thread(_measure_load, job, tools)
        await asyncio.sleep(0.1)
        still_open = sum(client.is_open() for client in clients)
    finally:
        idle.close_all(clients)
    run.extra = {
        "idle_clients": count,
        "idle_still_open": still_open,
        "rss_before_kb": before,
        "rss_idle_kb": with_idle,
        "kb_per_idle_client": (with_idle - before) / count,
    }
    return run


def _print_run(index: int, total: int, run: Run) -> None:
    result = run.load
    errors = f", {result.error_count} errors {result.errors}" if result.error_count else ""
    print(
        f"[{index:>3}/{total}] {run.scenario:<12} {run.target:<21} rep {run.rep + 1}: "
        f"{result.rps:>9,.0f} req/s  p50 {result.latency_ms['p50']:.2f} ms  "
        f"p99 {result.latency_ms['p99']:.2f} ms  {run.cpu_us_per_request:.1f} µs CPU/req"
        f"{errors}",
        flush=True,
    )

"""A pod dies while Kubernetes still lists it: failed requests with outlier ejection off and on
(docs/behaviour.md, "Outlier ejection").

    python bench/ejection_trial.py                           # off, then on (2 failures, 10 s)
    python bench/ejection_trial.py --eject 0,1,2,3 --workers 2 --change-on-failure

Starts `--pods` responders (bench/responder.py, one process each, so one can be killed alone)
and the proxy on them with `--backend` (a static list: the dead pod stays in the table, as it
does in an EndpointSlice until Kubernetes notices). `--sessions` clients each take a cookie, then
send `--rate` requests a second for `--duration` seconds; after `--kill-after` seconds the pod
with the most sessions is killed (SIGKILL). Counted: every answer that is not 200, and the
sessions of the dead pod that were served elsewhere. Loopback only, bounded, and every process
it started is stopped by pid when it ends.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

if __package__ in (None, ""):  # run as a script: the repository root is not on sys.path yet
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiohttp

from bench.procs import Child, Children, free_port, stop, wait_listening

REPO = Path(__file__).resolve().parent.parent
COOKIE = "INGRESSCOOKIE"


@dataclass
class Trial:
    """What one run of the load saw."""

    eject: int
    victim_sessions: int = 0
    statuses: Counter[int] = field(default_factory=Counter)  # 0: no answer at all
    failed_after_kill: int = 0
    victim_failed: int = 0  # failed requests of the dead pod's sessions
    moved: int = 0  # the dead pod's sessions that were answered by another pod
    last_failure: float | None = None  # seconds after the kill
    new_cookies: int = 0  # after the first request of each session
    metrics: dict[str, float] = field(default_factory=dict)


async def uuid_of(session: aiohttp.ClientSession, port: int) -> str:
    async with session.get(f"http://127.0.0.1:{port}/") as response:
        uuid: str = (await response.json())["uuid"]
        return uuid


async def run_load(
    proxy_port: int, pods: dict[str, Child], args: argparse.Namespace, eject: int
) -> Trial:
    """`pods` by the uuid each answers with; the one with most sessions is killed."""
    trial = Trial(eject)
    target = f"http://127.0.0.1:{proxy_port}/"
    connector = aiohttp.TCPConnector(limit=0)
    jar = aiohttp.DummyCookieJar()
    async with aiohttp.ClientSession(connector=connector, cookie_jar=jar) as client:
        cookies: list[str] = []
        homes: list[str] = []
        for _ in range(args.sessions):
            async with client.get(target) as response:
                cookie = response.cookies[COOKIE].value
                homes.append((await response.json())["uuid"])
                cookies.append(cookie)
        victim = Counter(homes).most_common(1)[0][0]
        trial.victim_sessions = homes.count(victim)
        kill = pods[victim]
        start = time.monotonic()
        killed_at: list[float] = []

        async def killer() -> None:
            await asyncio.sleep(args.kill_after)
            kill.process.send_signal(signal.SIGKILL)
            killed_at.append(time.monotonic())

        async def one_session(index: int) -> None:
            cookie, home = cookies[index], homes[index]
            interval = 1.0 / args.rate
            due = start + index * interval / args.sessions  # spread the sessions' ticks
            moved = False
            while due < start + args.duration:
                await asyncio.sleep(max(0.0, due - time.monotonic()))
                due += interval
                status, server = 0, None
                try:
                    async with client.get(target, headers={"Cookie": f"{COOKIE}={cookie}"}) as r:
                        status = r.status
                        if status == 200:
                            server = (await r.json())["uuid"]
                        else:
                            await r.read()
                        if COOKIE in r.cookies:
                            trial.new_cookies += 1
                            cookie = r.cookies[COOKIE].value
                except (aiohttp.ClientError, TimeoutError):
                    status = 0
                trial.statuses[status] += 1
                if status != 200 and killed_at:
                    trial.failed_after_kill += 1
                    trial.last_failure = time.monotonic() - killed_at[0]
                if home == victim:
                    trial.victim_failed += status != 200
                    moved = moved or (server is not None and server != victim)
            trial.moved += moved

        await asyncio.gather(killer(), *(one_session(i) for i in range(args.sessions)))
    return trial


async def scrape(port: int) -> dict[str, float]:
    """The ejection series and upstream errors, summed over their labels."""
    wanted = (
        "sticky_proxy_endpoint_ejections_total",
        "sticky_proxy_endpoint_ejected",
        "sticky_proxy_upstream_errors_total",
    )
    totals: dict[str, float] = {}
    async with (
        aiohttp.ClientSession() as client,
        client.get(f"http://127.0.0.1:{port}/metrics") as response,
    ):
        for line in (await response.text()).splitlines():
            name = line.split("{", 1)[0].split(" ", 1)[0]
            if name in wanted:
                totals[name] = totals.get(name, 0.0) + float(line.rsplit(" ", 1)[1])
    return totals


def start_pod(children: Children, name: str, port: int) -> Child:
    child = children.start(name, [sys.executable, "-m", "bench.responder", str(port)], cwd=REPO)
    wait_listening(child, port)
    return child


async def one_trial(
    children: Children, ports: list[int], args: argparse.Namespace, eject: int
) -> Trial:
    pods = [start_pod(children, f"pod{i}-eject{eject}", port) for i, port in enumerate(ports)]
    async with aiohttp.ClientSession() as client:
        by_uuid = {await uuid_of(client, port): pod for port, pod in zip(ports, pods, strict=True)}
    proxy_port, metrics_port = free_port(), free_port()
    argv = [sys.executable, "-m", "proxy", "serve", "--log-level", "warning"]
    argv += ["--listen", f"127.0.0.1:{proxy_port}", "--metrics-listen", f"127.0.0.1:{metrics_port}"]
    argv += ["--workers", str(args.workers), "--backend"]
    argv += [f"http://127.0.0.1:{port}" for port in ports]
    argv += ["--eject-after-failures", str(eject), "--eject-seconds", str(args.eject_seconds)]
    argv += ["--session-cookie-change-on-failure", str(args.change_on_failure).lower()]
    proxy = children.start(f"proxy-eject{eject}", argv, cwd=REPO)
    try:
        wait_listening(proxy, proxy_port)
        wait_listening(proxy, metrics_port)
        trial = await run_load(proxy_port, by_uuid, args, eject)
        trial.metrics = await scrape(metrics_port)
        return trial
    finally:
        stop(proxy)
        for pod in pods:
            stop(pod)


def report(trials: Sequence[Trial], args: argparse.Namespace) -> str:
    total = args.sessions * args.rate * args.duration
    lines = [
        f"{args.pods} pods, {args.sessions} sessions x {args.rate} req/s for {args.duration:g} s "
        f"(~{total:.0f} requests), pod with most sessions SIGKILLed at {args.kill_after:g} s, "
        f"{args.workers} worker(s), eject-seconds {args.eject_seconds:g}, change-on-failure "
        f"{'on' if args.change_on_failure else 'off'}",
        "",
        "| eject-after-failures | requests | 200 | 502 | 504 | no answer | failed after kill "
        "| dead pod's sessions | their failures | moved | last failure after kill "
        "| upstream errors | ejections |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for t in trials:
        last = f"{t.last_failure:.2f} s" if t.last_failure is not None else "-"
        lines.append(
            f"| {t.eject or 'off'} | {sum(t.statuses.values())} | {t.statuses[200]} "
            f"| {t.statuses[502]} | {t.statuses[504]} | {t.statuses[0]} | {t.failed_after_kill} "
            f"| {t.victim_sessions} | {t.victim_failed} | {t.moved} | {last} "
            f"| {t.metrics.get('sticky_proxy_upstream_errors_total', 0):.0f} "
            f"| {t.metrics.get('sticky_proxy_endpoint_ejections_total', 0):.0f} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="bench/ejection_trial.py", allow_abbrev=False)
    parser.add_argument("--pods", type=int, default=4)
    parser.add_argument("--sessions", type=int, default=25)
    parser.add_argument("--rate", type=float, default=10.0, help="requests a second per session")
    parser.add_argument("--duration", type=float, default=15.0)
    parser.add_argument("--kill-after", type=float, default=3.0)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--eject", default="0,2", help="eject-after-failures values to run")
    parser.add_argument("--eject-seconds", type=float, default=10.0)
    parser.add_argument("--change-on-failure", action="store_true")
    args = parser.parse_args(argv)
    if not (2 <= args.pods <= 8 and 1 <= args.sessions <= 200 and 0 < args.rate <= 50):
        parser.error("bounded: 2-8 pods, 1-200 sessions, at most 50 requests a second each")
    if not (0 < args.kill_after < args.duration <= 60):
        parser.error("--kill-after must fall within --duration, at most 60 s")
    with tempfile.TemporaryDirectory(prefix="ejection-trial-") as logs:
        children = Children(Path(logs))
        try:
            ports = [free_port() for _ in range(args.pods)]
            trials = [
                asyncio.run(one_trial(children, ports, args, int(eject)))
                for eject in args.eject.split(",")
            ]
        finally:
            children.stop_all()
    print(report(trials, args))


if __name__ == "__main__":
    main()

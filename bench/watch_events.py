"""Kubernetes watch throughput (issue 7): how many EndpointSlice changes a second the proxy's
Kubernetes source takes in, and whether requests through the proxy stall meanwhile.

    python bench/watch_events.py [--events 20000] [--services 100] [--endpoints 10]

Three processes on loopback: the test suite's fake API server (`tests/kube_fake`: the real wire
protocol, over TLS, with client certificates) holding N Services (Ingress, Service and an
EndpointSlice of M endpoints each), `sticky-proxy serve --kubernetes` against it, and a
backend. A client sends requests through the proxy all along. Then the fake changes
EndpointSlices as fast as it can, and its last change makes the `marker` Service routable:
once the proxy routes the marker, it has taken in every change before it (one watch stream,
in order). Prints a markdown table; asserts nothing. Needs openssl (for the fake's certificates).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: the repository root is not on sys.path yet
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.idle import read_response
from bench.procs import Children, cpu_seconds, free_port, pinned, wait_listening

ROOT = Path(__file__).resolve().parent.parent
MARKER = "marker"
PROBE_CONNECTIONS = 4
Obj = dict[str, Any]


def service_objects(name: str, addresses: list[str], port: int, ready: bool = True) -> list[Obj]:
    """An Ingress for `<name>.bench`, its Service, and an EndpointSlice of `addresses`."""
    backend = {"service": {"name": name, "port": {"number": 80}}}
    path = {"path": "/", "pathType": "Prefix", "backend": backend}
    return [
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "Ingress",
            "metadata": {"name": name},
            "spec": {"rules": [{"host": f"{name}.bench", "http": {"paths": [path]}}]},
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name},
            "spec": {"ports": [{"name": "http", "port": 80, "targetPort": port}]},
        },
        endpoint_slice(name, addresses, port, ready),
    ]


def endpoint_slice(name: str, addresses: list[str], port: int, ready: bool = True) -> Obj:
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"name": f"{name}-a", "labels": {"kubernetes.io/service-name": name}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": [a], "conditions": {"ready": ready}} for a in addresses],
        "ports": [{"name": "http", "port": port}],
    }


def addresses(service: int, endpoints: int, generation: int = 0) -> list[str]:
    """Service `service`'s pod IPs; each generation moves one pod to a new address."""
    found = [f"10.{service // 250}.{service % 250}.{j + 1}" for j in range(endpoints)]
    found[generation % endpoints] = f"10.200.{generation // 250 % 250}.{generation % 250 + 1}"
    return found


async def serve_fake(
    directory: Path, services: int, endpoints: int, events: int, port: int
) -> None:
    """The fake API server's process: build the world, wait for `go`, change, mark `done`."""
    from tests.kube_fake.kubeconfig import kubeconfig, write  # noqa: PLC0415 - fake side only
    from tests.kube_fake.server import FakeApiServer  # noqa: PLC0415
    from tests.kube_fake.tls import make_pki  # noqa: PLC0415

    pki = make_pki(directory)
    fake = FakeApiServer(pki)
    url = await fake.start()
    for i in range(services):
        for obj in service_objects(f"svc{i}", addresses(i, endpoints), 8080):
            fake.apply(obj)
    for obj in service_objects("live", ["127.0.0.1"], port):
        fake.apply(obj)
    for obj in service_objects(MARKER, ["127.0.0.1"], port, ready=False):
        fake.apply(obj)
    user = {"client-certificate": str(pki.cert("admin")), "client-key": str(pki.key("admin"))}
    write(
        directory / "kubeconfig",
        kubeconfig(url, user, cluster={"certificate-authority": str(pki.ca)}),
    )
    (directory / "ready").touch()
    while not (directory / "go").exists():
        await asyncio.sleep(0.01)
    start = time.perf_counter()
    for event in range(events):
        service = event % services
        fake.apply(endpoint_slice(f"svc{service}", addresses(service, endpoints, event + 1), 8080))
        if event % 20 == 19:
            await asyncio.sleep(0)  # let the watch streams write what is queued
    fake.apply(endpoint_slice(MARKER, ["127.0.0.1"], port))
    (directory / "done").write_text(f"{time.perf_counter() - start}")
    await asyncio.Event().wait()  # until stopped


class Probe:
    """Keep-alive GETs through the proxy on a few connections, one at a time each: the latency
    a request sees while the source works."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.latencies: list[float] = []
        self.errors = 0
        self.running = True

    async def run(self) -> None:
        await asyncio.gather(*(self._connection() for _ in range(PROBE_CONNECTIONS)))

    async def _connection(self) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        request = b"GET / HTTP/1.1\r\nHost: live.bench\r\n\r\n"
        try:
            while self.running:
                start = time.perf_counter()
                writer.write(request)
                status = await read_response(reader)
                self.latencies.append(time.perf_counter() - start)
                self.errors += status != 200
        finally:
            writer.close()

    def take(self) -> list[float]:
        taken, self.latencies = self.latencies, []
        return taken


async def routed(port: int, host: str) -> bool:
    with contextlib.suppress(OSError, asyncio.IncompleteReadError, ValueError):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(f"GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        status = await read_response(reader)
        writer.close()
        return status == 200
    return False


async def metric(port: int, name: str) -> float:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /metrics HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
    text = (await reader.read()).decode()
    writer.close()
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name))


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else float("nan")


def latency_row(what: str, values: list[float]) -> tuple[str, str]:
    if not values:
        return what, "no requests"
    ms = [v * 1000 for v in values]
    return what, (
        f"{len(ms):,} requests: p50 {statistics.median(ms):.2f} ms, "
        f"p99 {percentile(ms, 0.99):.2f} ms, max {max(ms):.1f} ms"
    )


async def measure(
    args: argparse.Namespace, directory: Path, children: Children
) -> list[tuple[str, str]]:
    proxy_port, metrics_port = free_port(), free_port()
    proxy = children.start(
        "sticky-proxy",
        pinned(args.proxy_cpus, [sys.executable, "-m", "proxy", "serve", "--kubernetes",
               "--kubeconfig", str(directory / "kubeconfig"), "--listen", f"127.0.0.1:{proxy_port}",
               "--metrics-listen", f"127.0.0.1:{metrics_port}", "--tls-listen", "off",
               "--log-level", "warning"]),
        cwd=ROOT,
    )  # fmt: skip
    wait_listening(proxy, proxy_port)
    deadline = time.monotonic() + 30
    while not await routed(proxy_port, "live.bench"):
        if time.monotonic() > deadline:
            raise SystemExit(f"the proxy never routed live.bench (log: {proxy.log})")
        await asyncio.sleep(0.05)
    probe = Probe(proxy_port)
    probing = asyncio.ensure_future(probe.run())
    await asyncio.sleep(args.baseline)
    before = probe.take()
    reloads = await metric(metrics_port, 'sticky_proxy_config_reloads_total{result="success"}')
    cpu = sum(cpu_seconds([proxy.pid]))
    start = time.perf_counter()
    (directory / "go").touch()
    while not await routed(proxy_port, f"{MARKER}.bench"):
        if time.perf_counter() - start > args.timeout:
            raise SystemExit(f"the marker was not routed within {args.timeout:.0f} s")
        await asyncio.sleep(0.005)
    took = time.perf_counter() - start
    cpu = sum(cpu_seconds([proxy.pid])) - cpu
    during = probe.take()
    probe.running = False
    await probing
    await asyncio.sleep(1.1)  # the proxy moves its counters into the metrics once a second
    reloads = (
        await metric(metrics_port, 'sticky_proxy_config_reloads_total{result="success"}') - reloads
    )
    sent = float((directory / "done").read_text())
    events = args.events + 1
    return [
        (f"world: {args.services} Services of {args.endpoints} endpoints; changes sent",
         f"{events:,} EndpointSlice updates"),
        ("the fake sent them in", f"{sent:.2f} s ({events / sent:,.0f} events/s)"),
        ("the proxy routed the last one after", f"{took:.2f} s ({events / took:,.0f} events/s)"),
        ("the proxy's CPU meanwhile", f"{cpu:.2f} s ({cpu / events * 1e6:.0f} µs per event)"),
        ("routing tables built from them", f"{reloads:.0f}"),
        latency_row("requests through the proxy before", before),
        latency_row("requests through the proxy meanwhile", during),
        ("failed requests", f"{probe.errors}"),
    ]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=20_000, help="EndpointSlice updates")
    parser.add_argument("--services", type=int, default=100)
    parser.add_argument("--endpoints", type=int, default=10, help="per service")
    parser.add_argument("--baseline", type=float, default=2.0, help="seconds of requests first")
    parser.add_argument("--timeout", type=float, default=120.0, help="for the last change, in s")
    parser.add_argument("--proxy-cpus", default="1", help="taskset list for the proxy, or none")
    parser.add_argument("--fake-cpus", default="0", help="taskset list for the fake, or none")
    parser.add_argument("--fake", type=Path, help=argparse.SUPPRESS)  # the fake's own process
    parser.add_argument("--backend-port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    for name in ("proxy_cpus", "fake_cpus"):
        if getattr(args, name) == "none":
            setattr(args, name, None)
    if args.fake is not None:
        asyncio.run(
            serve_fake(args.fake, args.services, args.endpoints, args.events, args.backend_port)
        )
        return
    with tempfile.TemporaryDirectory(prefix="sticky-watch-bench-") as temp:
        directory = Path(temp)
        children = Children(directory)
        try:
            backend_port = free_port()
            backend = children.start(
                "backend",
                pinned(
                    args.fake_cpus, [sys.executable, "-m", "bench.responder", str(backend_port)]
                ),
                cwd=ROOT,
            )
            wait_listening(backend, backend_port)
            fake = children.start(
                "fake-api",
                pinned(args.fake_cpus, [sys.executable, str(Path(__file__).resolve()),
                       "--fake", str(directory), "--services", str(args.services),
                       "--endpoints", str(args.endpoints), "--events", str(args.events),
                       "--backend-port", str(backend_port)]),
                cwd=ROOT,
            )  # fmt: skip
            deadline = time.monotonic() + 30
            while not (directory / "ready").exists():
                if fake.process.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"the fake API server did not start: {fake.last_log_line()}")
                time.sleep(0.05)
            rows = asyncio.run(measure(args, directory, children))
        finally:
            children.stop_all()
    print("| measurement | result |\n|---|---|")
    for what, result in rows:
        print(f"| {what} | {result} |")


if __name__ == "__main__":
    main()

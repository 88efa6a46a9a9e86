"""A rate-limit flood from 100,000 distinct client addresses: the proxy's memory stays bounded
(docs/behaviour.md, "Rate and connection limits").

`python -m bench.rate_limit_flood [--clients N] [--rounds R]` starts bench.responder and a proxy
(one worker, in a child process) on loopback, serving an Ingress with `limit-rps: 1` and
`--use-forwarded-headers` trusting 127.0.0.1; then each round sends one request from each of N
new addresses (distinct X-Forwarded-For values) over a few keep-alive connections, and prints
the proxy's RSS and the clients its limit tables hold before and after. A last burst from one
address shows the limit refusing. Bounded: N x R requests, loopback only; the children are
stopped by pid at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import uvloop
import yaml

from bench.idle import read_response
from bench.procs import rss_kb

CONNECTIONS = 16  # keep-alive connections the requests are spread over
HOST = "flood.test"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _manifest(path: Path, backend_port: int) -> None:
    objects = [
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "Ingress",
            "metadata": {
                "name": "flood",
                "namespace": "default",
                "annotations": {"nginx.ingress.kubernetes.io/limit-rps": "1"},
            },
            "spec": {
                "ingressClassName": "sticky",
                "rules": [
                    {
                        "host": HOST,
                        "http": {
                            "paths": [
                                {
                                    "path": "/",
                                    "pathType": "Prefix",
                                    "backend": {"service": {"name": "web", "port": {"number": 80}}},
                                }
                            ]
                        },
                    }
                ],
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"ports": [{"name": "http", "port": 80, "targetPort": backend_port}]},
        },
        {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": "web",
                "namespace": "default",
                "labels": {"kubernetes.io/service-name": "web"},
            },
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": backend_port}],
            "endpoints": [{"addresses": ["127.0.0.1"], "conditions": {"ready": True}}],
        },
    ]
    path.write_text(yaml.safe_dump_all(objects))


# --- the proxy's side: a child process that reports its tables on SIGUSR1 ----------------------


async def _serve(manifest: Path, port: int) -> None:
    from proxy.app.runtime import ProxyServer  # noqa: PLC0415 - only the child needs the proxy
    from proxy.app.settings import ServeSettings  # noqa: PLC0415
    from proxy.control.sources.manifests import ManifestSource  # noqa: PLC0415
    from proxy.control.translate import TranslateOptions  # noqa: PLC0415
    from proxy.core.access import RealIp, parse_ranges  # noqa: PLC0415
    from proxy.core.values import Address  # noqa: PLC0415

    settings = ServeSettings(
        listen=Address("127.0.0.1", port),
        metrics_listen=None,
        real_ip=RealIp(b"x-forwarded-for", parse_ranges("127.0.0.1/32")),
    )
    server = ProxyServer(settings)
    await server.start(ManifestSource((manifest,), TranslateOptions()))
    loop = asyncio.get_running_loop()

    def report() -> None:
        tracked = server.ctx.limiter.tracked() if server.ctx is not None else -1
        print(json.dumps({"tracked": tracked, "ready": server.ready()}), flush=True)

    loop.add_signal_handler(signal.SIGUSR1, report)
    while not server.ready():  # the manifest's first table
        await asyncio.sleep(0.01)
    report()  # (the first line: the parent may signal from now on)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await server.stop(grace=0.1)


# --- the flood ---------------------------------------------------------------------------------


def _address(round_number: int, n: int) -> str:
    return f"{10 + round_number}.{(n >> 16) & 255}.{(n >> 8) & 255}.{n & 255}"


async def _send(port: int, addresses: list[str]) -> dict[int, int]:
    """One request per address, over one keep-alive connection; statuses counted."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    counts: dict[int, int] = {}
    for address in addresses:
        writer.write(
            f"GET / HTTP/1.1\r\nHost: {HOST}\r\nX-Forwarded-For: {address}\r\n\r\n".encode()
        )
        status = await read_response(reader)
        counts[status] = counts.get(status, 0) + 1
    writer.close()
    return counts


async def _flood(port: int, addresses: list[str]) -> dict[int, int]:
    shares = [addresses[i::CONNECTIONS] for i in range(CONNECTIONS)]
    totals: dict[int, int] = {}
    for counts in await asyncio.gather(*(_send(port, share) for share in shares)):
        for status, count in counts.items():
            totals[status] = totals.get(status, 0) + count
    return totals


def _report(proxy: subprocess.Popen[bytes]) -> dict[str, int]:
    assert proxy.stdout is not None
    os.kill(proxy.pid, signal.SIGUSR1)
    line = json.loads(proxy.stdout.readline())
    return {"rss_kb": rss_kb([proxy.pid]), "tracked": line["tracked"]}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.rate_limit_flood", allow_abbrev=False)
    parser.add_argument("--clients", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--serve", nargs=2, metavar=("MANIFEST", "PORT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        uvloop.run(_serve(Path(args.serve[0]), int(args.serve[1])))
        return
    backend_port, proxy_port = _free_port(), _free_port()
    responder = subprocess.Popen(
        [sys.executable, "-m", "bench.responder", str(backend_port)], stdout=subprocess.PIPE
    )
    with tempfile.TemporaryDirectory() as tmp:
        manifest = Path(tmp) / "flood.yaml"
        _manifest(manifest, backend_port)
        proxy = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bench.rate_limit_flood",
                "--serve",
                str(manifest),
                str(proxy_port),
            ],
            stdout=subprocess.PIPE,
        )
        try:
            assert responder.stdout is not None
            responder.stdout.readline()  # "listening on ..."
            assert proxy.stdout is not None
            proxy.stdout.readline()
            print(f"start: {_report(proxy)}")
            for round_number in range(args.rounds):
                addresses = [_address(round_number, n) for n in range(args.clients)]
                statuses = uvloop.run(_flood(proxy_port, addresses))
                print(f"after {args.clients} new clients: {_report(proxy)}, statuses {statuses}")
            burst = uvloop.run(_flood(proxy_port, ["192.0.2.1"] * CONNECTIONS))
            print(f"{CONNECTIONS} requests at once from one client: statuses {burst}")
        finally:
            for child in (proxy, responder):
                child.send_signal(signal.SIGTERM)
                child.wait(10)


if __name__ == "__main__":
    main()

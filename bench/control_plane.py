"""Control-plane scale (issue 7): how long routing tables take to build, and whether requests
stall meanwhile.

    python bench/control_plane.py [--services 1000] [--endpoints 50] [--ring 1000]

Measures, for a world of N Ingresses and Services with M endpoints each (N x M endpoints):
the first translation (rings are built lazily), what a first request to a cold cluster pays, the
warm-up of every ring in a thread as the publisher runs it, a rebuild after one endpoint changed
while the previous snapshot is alive (as the publisher holds it), the ring of one K-endpoint
cluster, and the event loop's worst lag while a rebuild and its warm-up run in a thread the way
the sources and the publisher run them. The lag is what a request arriving at that moment would
wait. Prints a markdown table; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: the repository root is not on sys.path yet
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from proxy.app.runtime import GIL_SWITCH_INTERVAL
from proxy.control.publisher import warm_rings
from proxy.control.translate import TranslateOptions, translate
from proxy.core.affinity import build_cluster
from proxy.core.model import Affinity, Endpoint
from proxy.core.routing import Snapshot
from proxy.system.heap import freeze_live_objects

Obj = dict[str, Any]


def world(services: int, endpoints: int, moved: int = 0) -> list[Obj]:
    """Ingress, Service and EndpointSlice per service; `moved` shifts one endpoint's address."""
    objects: list[Obj] = []
    for i in range(services):
        name = f"svc{i}"
        objects.append(
            {
                "apiVersion": "networking.k8s.io/v1",
                "kind": "Ingress",
                "metadata": {
                    "name": name,
                    "annotations": {"nginx.ingress.kubernetes.io/affinity": "cookie"},
                },
                "spec": {
                    "rules": [
                        {
                            "host": f"{name}.example.com",
                            "http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": {
                                "service": {"name": name, "port": {"number": 80}}}}]},
                        }
                    ]
                },
            }
        )  # fmt: skip
        objects.append(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": name},
                "spec": {"ports": [{"name": "http", "port": 80, "targetPort": 8080}]},
            }
        )
        addresses = [f"10.{i // 250}.{i % 250}.{j}" for j in range(endpoints)]
        if i == 0 and moved:
            addresses[0] = f"10.255.255.{moved}"
        objects.append(
            {
                "apiVersion": "discovery.k8s.io/v1",
                "kind": "EndpointSlice",
                "metadata": {
                    "name": f"{name}-a",
                    "labels": {"kubernetes.io/service-name": name},
                },
                "addressType": "IPv4",
                "endpoints": [{"addresses": [a], "conditions": {"ready": True}} for a in addresses],
                "ports": [{"name": "http", "port": 8080}],
            }
        )
    return objects


def timed(work: Any, *args: Any) -> tuple[float, Any]:
    start = time.perf_counter()
    result = work(*args)
    return time.perf_counter() - start, result


async def worst_loop_lag(work: Any, *args: Any) -> tuple[float, float]:
    """(seconds the work took in a thread, the event loop's worst lag meanwhile in ms)."""
    loop = asyncio.get_running_loop()
    worst = 0.0
    done = False

    async def tick() -> None:
        nonlocal worst
        while not done:
            before = loop.time()
            await asyncio.sleep(0.001)
            worst = max(worst, loop.time() - before - 0.001)

    ticker = asyncio.ensure_future(tick())
    await asyncio.sleep(0.05)
    start = time.perf_counter()
    await asyncio.to_thread(work, *args)
    took = time.perf_counter() - start
    done = True
    await ticker
    return took, worst * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--endpoints", type=int, default=50, help="per service")
    parser.add_argument("--ring", type=int, default=1000, help="endpoints of the one big cluster")
    args = parser.parse_args()
    sys.setswitchinterval(GIL_SWITCH_INTERVAL)  # as the proxy runs
    options = TranslateOptions()
    total = args.services * args.endpoints
    rows: list[tuple[str, str]] = []

    first, live = timed(translate, world(args.services, args.endpoints), options)
    freeze_live_objects()  # as the publisher does once a table is in
    rows.append(
        (
            f"first build: {args.services} Ingresses/Services, {total:,} endpoints (rings lazy)",
            f"{first:.2f} s",
        )
    )
    cold = live.clusters[0].balancer
    one_ring, _ = timed(cold.choose, None, (), False, False, random.Random(1), 0.0, 1)
    rows.append(
        (f"first request to a cold {args.endpoints}-endpoint cluster (builds its ring)",
         f"{one_ring * 1000:.1f} ms")
    )  # fmt: skip
    took, lag = asyncio.run(worst_loop_lag(warm_rings, live, lambda _: True))
    rows.append(
        (f"warming every ring in a thread after the swap: {took:.2f} s; worst event-loop lag",
         f"{lag:.1f} ms")
    )  # fmt: skip
    changed, live = timed(translate, world(args.services, args.endpoints, moved=1), options)
    rows.append(("rebuild after one endpoint changed (unchanged rings reused)", f"{changed:.2f} s"))
    big = [Endpoint(f"10.9.{i // 250}.{i % 250}", 8080) for i in range(args.ring)]

    def big_ring() -> None:
        build_cluster("default-big-80", big, Affinity()).balancer.warm()

    ring, _ = timed(big_ring)
    rows.append(
        (
            f"ring of one {args.ring:,}-endpoint cluster ({args.ring * 160:,} points)",
            f"{ring:.2f} s",
        )
    )
    took, lag = asyncio.run(worst_loop_lag(big_ring))
    rows.append(
        (f"event loop's worst lag while that ring builds in a thread ({took:.2f} s)",
         f"{lag:.1f} ms")
    )  # fmt: skip

    def rebuild(objects: list[Obj]) -> Snapshot:
        snapshot = translate(objects, options)
        warm_rings(snapshot, lambda _: True)
        return snapshot

    # The objects exist before, as in the Kubernetes source's store: building and freeing a
    # million dicts in the thread is the bench's own cost (each is one C-level cascade).
    took, lag = asyncio.run(worst_loop_lag(rebuild, world(args.services, args.endpoints, 2)))
    rows.append(
        (f"event loop's worst lag during a {took:.2f} s rebuild and warm-up in a thread",
         f"{lag:.1f} ms")
    )  # fmt: skip
    assert live is not None  # the previous snapshot stays alive through the rebuilds, as served
    print("| measurement | result |\n|---|---|")
    for what, result in rows:
        print(f"| {what} | {result} |")


if __name__ == "__main__":
    main()

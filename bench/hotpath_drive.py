"""What bench/hotpath.py measures: the real DownstreamProtocol and UpstreamConnection driven
through in-memory transports (the data plane's unit tests use the same, tests/memory_transport.py).
A client request goes in, the upstream's request head comes out, a canned upstream response goes
in, the client's response comes out.

It imports the proxy from wherever sys.path finds it first: bench/hotpath.py puts the tree it
measures there before importing this module.
"""

from __future__ import annotations

import asyncio
import cProfile
import pstats
import time
from hashlib import md5
from typing import Any

import uvloop

from proxy.control.sources.static import static_snapshot
from proxy.control.translate import TranslateOptions, translate
from proxy.core.cookies import CookieSettings
from proxy.core.model import Affinity, Endpoint, UpstreamPolicy
from proxy.core.routing import Snapshot
from proxy.dataplane.context import ServerContext
from proxy.dataplane.downstream import DownstreamProtocol
from proxy.dataplane.upstream import UpstreamConnection
from proxy.observability.metrics import Metrics
from tests.memory_transport import MemoryTransport

COOKIE = b"key=1795765304.4169.20098.91221|44323fc27e2ab28b68735f281c5d85c6"
BROWSER_HEADERS = (
    b"User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    b"Chrome/120.0 Safari/537.36\r\n"
    b"Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n"
    b"Accept-Language: en-US,en;q=0.5\r\nAccept-Encoding: gzip, deflate, br\r\n"
    b"Upgrade-Insecure-Requests: 1\r\nSec-Fetch-Dest: document\r\nSec-Fetch-Mode: navigate\r\n"
    b"Sec-Fetch-Site: none\r\nCache-Control: max-age=0\r\nConnection: keep-alive\r\n"
)
REQUESTS = {
    "sticky": b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nCookie: " + COOKIE + b"\r\n\r\n",
    "new-client": b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n",
    "browser": b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nCookie: _ga=GA1.2.3; theme=dark; "
    + COOKIE
    + b"; sid=abc\r\n"
    + BROWSER_HEADERS
    + b"\r\n",
}
# Gateway API: the same two endpoints behind an HTTPRoute with sessionPersistence (cookie SID);
# the cookie names the first endpoint (docs/gateway-api.md, "Session persistence").
SESSION = md5(b"gateway-default-web-80" + b"127.0.0.1:28081").hexdigest().encode()
REQUESTS |= {
    "gateway-sticky": b"GET / HTTP/1.1\r\nHost: app.test\r\nCookie: SID=" + SESSION + b"\r\n\r\n",
    "gateway-new": b"GET / HTTP/1.1\r\nHost: app.test\r\n\r\n",
}
RESPONSE = (
    b"HTTP/1.1 200 OK\r\nServer: nginx\r\nDate: Fri, 27 Nov 2026 09:00:00 GMT\r\n"
    b"Content-Type: application/json\r\nContent-Length: 12\r\nConnection: keep-alive\r\n\r\n"
    b'{"uuid":"a"}'
)


def gateway_snapshot(endpoints: tuple[Endpoint, ...]) -> Snapshot:
    route = {
        "parentRefs": [{"name": "web"}],
        "hostnames": ["app.test"],
        "rules": [{"backendRefs": [{"name": "web", "port": 80}],
                   "sessionPersistence": {"sessionName": "SID"}}],
    }  # fmt: skip
    group = "gateway.networking.k8s.io/v1"
    objects: list[dict[str, Any]] = [
        {"apiVersion": group, "kind": "GatewayClass", "metadata": {"name": "sticky-proxy"},
         "spec": {"controllerName": "sticky-proxy.io/gateway-controller"}},
        {"apiVersion": group, "kind": "Gateway", "metadata": {"name": "web"},
         "spec": {"gatewayClassName": "sticky-proxy",
                  "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}]}},
        {"apiVersion": group, "kind": "HTTPRoute", "metadata": {"name": "web"}, "spec": route},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
         "spec": {"ports": [{"port": 80}]}},
        *(
            {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
             "metadata": {"name": f"web-{e.port}",
                          "labels": {"kubernetes.io/service-name": "web"}},
             "addressType": "IPv4", "ports": [{"port": e.port}],
             "endpoints": [{"addresses": [e.address], "conditions": {"ready": True}}]}
            for e in endpoints
        ),
    ]  # fmt: skip
    return translate(objects, TranslateOptions())


def setup(
    loop: asyncio.AbstractEventLoop, kind: str
) -> tuple[DownstreamProtocol, list[UpstreamConnection]]:
    endpoints = (Endpoint("127.0.0.1", 28081), Endpoint("127.0.0.1", 28082))
    affinity = Affinity(cookie=CookieSettings(name="key"))
    snapshot = (
        gateway_snapshot(endpoints)
        if kind.startswith("gateway")
        else static_snapshot(endpoints, affinity, UpstreamPolicy())
    )
    metrics = Metrics()
    metrics.follow(lambda: snapshot)
    ctx = ServerContext(loop, lambda: snapshot, metrics)
    upstreams = []
    for endpoint in endpoints:  # one idle keep-alive connection per endpoint
        pool = ctx.pools.get(endpoint)
        conn = UpstreamConnection(pool)
        conn.connection_made(MemoryTransport())
        pool.release(conn)
        upstreams.append(conn)
    client = DownstreamProtocol(ctx)
    client.connection_made(MemoryTransport())
    return client, upstreams


def run(kind: str, count: int, profile: bool) -> float:
    loop = uvloop.new_event_loop()
    asyncio.set_event_loop(loop)
    client, upstreams = setup(loop, kind)
    request = REQUESTS[kind]
    client_side = client.transport
    assert isinstance(client_side, MemoryTransport)
    down = client_side.written

    def one() -> None:
        client.data_received(request)
        for upstream in upstreams:
            if upstream.sink is not None:
                upstream.data_received(RESPONSE)

    for _ in range(1000):  # warm up, and check the answers are real
        one()
    answer = bytes(down[-1])
    if not answer.endswith(b'{"uuid":"a"}') or b"200 OK" not in answer:
        raise SystemExit(f"{kind}: unexpected answer {answer[:200]!r}")
    profiler = cProfile.Profile() if profile else None
    if profiler is not None:
        profiler.enable()
    start = time.process_time()
    for _ in range(count):
        one()
    elapsed = time.process_time() - start
    if profiler is not None:
        profiler.disable()
        pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
    loop.close()
    return elapsed / count * 1e6

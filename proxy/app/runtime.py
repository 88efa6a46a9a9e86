"""Assembles one proxy process: data-plane listener, admin listener, source, shutdown."""

from __future__ import annotations

import asyncio
import ctypes
import logging
import os
import resource
import signal
import sys
from collections.abc import Callable

from aiohttp import web

from proxy.app.settings import ServeSettings
from proxy.control.publisher import Publisher
from proxy.control.sources.source import Source
from proxy.core.routing import Snapshot
from proxy.core.values import Address
from proxy.dataplane.context import IDLE_DRAIN_TIME, ServerContext
from proxy.dataplane.downstream import DownstreamProtocol
from proxy.dataplane.listener import Listener, listening_socket
from proxy.dataplane.tls_contexts import TlsContexts
from proxy.observability.access_log import AccessLog
from proxy.observability.admin import admin_app
from proxy.observability.ingress_nginx import Controller
from proxy.observability.metrics import Metrics
from proxy.system import build
from proxy.system.heap import FULL_COLLECTION_INTERVAL, collect_everything

log = logging.getLogger("sticky_proxy")

SYNC_INTERVAL = 1.0  # metrics into prometheus-client (and other workers), access log to stdout
SERIES_PER_TURN = 500  # new endpoints whose series one loop turn makes: 4.4-6.4 ms measured
# Table builds, ring warm-ups and scrapes run in threads; when one holds the GIL, the event loop
# waits up to this long for it (CPython's default is 5 ms). Under 5,000 EndpointSlice changes a
# second requests' p99 went from 11.4 ms (5 ms) to 6.9-7.7 (1 ms) to 5.8-6.3 (0.2 ms); while a
# 50,000-endpoint table builds, p50 from 1.33 ms (1 ms) to 0.52 and requests served 15k -> 35k,
# for a build 20 % slower. Nothing changes while no thread runs.
GIL_SWITCH_INTERVAL = 0.0002


class ProxyServer:
    """A running proxy: `start()` binds both listeners and runs the source, `stop()` drains and
    closes them. A `snapshot` given here is published at once (a source that never changes).

    The data-plane listeners are bound and listening from `start()` on (a taken port fails at
    once), but accept only once the first table is in place: a client that comes earlier waits
    in the kernel's queue for its answer instead of getting a 503. /readyz answers meanwhile.
    """

    def __init__(
        self,
        settings: ServeSettings,
        snapshot: Snapshot | None = None,
        metrics: Metrics | None = None,  # shared with a source that counts its own (Kubernetes)
    ) -> None:
        self.settings = settings
        self.metrics = metrics or new_metrics(settings)
        self.access_log: AccessLog | None = None
        if settings.access_log != "off":
            self.access_log = AccessLog(settings.access_log)
            self.metrics.access_log = self.access_log.record
        self._sync_timer: asyncio.TimerHandle | None = None
        self._collect_timer: asyncio.TimerHandle | None = None
        self._adding_series = False  # an _add_series chain is running
        self.ctx: ServerContext | None = None
        self.address: Address | None = None
        self.metrics_address: Address | None = None
        # The source's task: done early only when the source gave up (SourceError) or returned.
        self.feeding: asyncio.Task[None] | None = None
        self._listener: Listener | None = None
        self._tls_listener: Listener | None = None
        self._tls_waits = False  # an on-demand TLS port, not bound until a certificate loads
        self.tls_address: Address | None = None
        self._admin: web.AppRunner | None = None
        self.publisher = Publisher(self.metrics.count_reload, on_new_table=self._table_in_place)
        self.metrics.follow(self.publisher.get, self.ready)
        if snapshot is not None:
            self.publisher.publish(snapshot)

    def ready(self) -> bool:
        return self.publisher.ready and self.ctx is not None and not self.ctx.closing

    async def start(self, source: Source | None = None) -> None:
        loop = asyncio.get_running_loop()
        settings = self.settings
        ctx = ServerContext(
            loop,
            self.publisher.get,
            self.metrics,
            client_header_timeout=settings.client_header_timeout,
            client_body_timeout=settings.client_body_timeout,
            max_connections=settings.max_connections,
            https_port=settings.https_port,
            underscores_in_headers=settings.underscores_in_headers,
            real_ip=settings.real_ip,
            limit_req_status=settings.limit_req_status,
            limit_conn_status=settings.limit_conn_status,
            load_balance=settings.load_balance,
        )
        self.ctx = ctx
        self._listener = Listener.bind(
            settings.listen, lambda: DownstreamProtocol(ctx), reuse_port=settings.reuse_port
        )
        self.address = self._listener.address
        if settings.tls_listen is not None and not settings.tls_on_demand:
            self._bind_tls(settings.tls_listen, ctx)
        elif settings.tls_listen is not None:
            self._tls_waits = True
            log.info("TLS listener %s: bound when the first certificate loads", settings.tls_listen)
        if settings.metrics_listen is not None:
            sock = listening_socket(settings.metrics_listen, reuse_port=settings.reuse_port)
            app = admin_app(self.metrics, self.ready, self.publisher.get)
            self._admin = web.AppRunner(app, access_log=None)
            await self._admin.setup()
            await web.SockSite(self._admin, sock).start()
            self.metrics_address = Address(*sock.getsockname()[:2])
        log.info("proxy listening on http://%s, metrics on http://%s",
                 self.address, self.metrics_address)  # fmt: skip
        if self.publisher.current is not None:
            self._table_in_place(self.publisher.current)
        self._sync_timer = loop.call_later(SYNC_INTERVAL, self._sync)
        self._collect_timer = loop.call_later(FULL_COLLECTION_INTERVAL, self._collect)
        if source is not None:
            # Listeners first: /readyz must answer 503 while a slow source gathers its first state.
            self.feeding = asyncio.ensure_future(source.run(self.publisher))

    def _bind_tls(self, address: Address, ctx: ServerContext) -> None:
        settings = self.settings
        contexts = TlsContexts(self.publisher.get, settings.tls_default, ctx.negotiated)
        self._tls_listener = Listener.bind(
            address,
            lambda: DownstreamProtocol(ctx),
            reuse_port=settings.reuse_port,
            ssl_context=contexts.listening,
            ssl_handshake_timeout=settings.client_header_timeout,
            hello_chooser=contexts,
        )
        self.tls_address = self._tls_listener.address
        log.info("TLS on https://%s", self.tls_address)

    def _table_in_place(self, snapshot: Snapshot) -> None:
        """Each table the publisher swaps in (on the loop's thread); from the first one on, the
        listeners take connections, and an on-demand TLS port is bound with the first
        certificate."""
        if self._tls_waits and snapshot.certificates:
            self._bind_tls_on_demand()
        for listener in (self._listener, self._tls_listener):
            if listener is not None:
                listener.start_accepting()

    def _bind_tls_on_demand(self) -> None:
        """Once: a port that is taken stays so for all we know; trying again at every reload
        would only repeat the error."""
        self._tls_waits = False
        address, ctx = self.settings.tls_listen, self.ctx
        if address is None or ctx is None or ctx.closing:
            return
        try:
            self._bind_tls(address, ctx)
        except OSError as error:
            reason = os.strerror(error.errno) if error.errno else str(error)
            log.error("TLS on %s not opened: %s; plain HTTP only", address, reason)

    async def stop(self, grace: float | None = None) -> None:
        """Stop accepting, let in-flight requests finish within `grace`, then close the rest."""
        ctx = self.ctx
        if ctx is None or self._listener is None:
            return
        grace = self.settings.shutdown_grace if grace is None else grace
        ctx.begin_shutdown(min(IDLE_DRAIN_TIME, grace))
        self.publisher.stop_warming()
        if self.feeding is not None:
            self.feeding.cancel()
            await asyncio.wait([self.feeding])  # how it ended is for whoever started it to read
        self._listener.close()
        if self._tls_listener is not None:
            self._tls_listener.close()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        while ctx.connections and loop.time() < deadline:
            await asyncio.sleep(0.05)
        for conn in list(ctx.connections):
            conn.close_now()
        ctx.pools.close()
        ctx.ejections.close()
        await ctx.mirrors.close()
        await ctx.auth.close()
        if self._admin is not None:
            await self._admin.cleanup()
        for timer in (self._sync_timer, self._collect_timer):
            if timer is not None:
                timer.cancel()
        self.metrics.close()
        if self.access_log is not None:
            self.access_log.flush()
        log.info("proxy stopped")

    def _sync(self) -> None:
        self.metrics.sync(SERIES_PER_TURN)
        if self.access_log is not None:
            self.access_log.flush()
        loop = asyncio.get_running_loop()
        self._sync_timer = loop.call_later(SYNC_INTERVAL, self._sync)
        if self.metrics.series_pending and not self._adding_series:
            self._adding_series = True
            loop.call_soon(self._add_series)

    def _collect(self) -> None:
        collect_everything()
        loop = asyncio.get_running_loop()
        self._collect_timer = loop.call_later(FULL_COLLECTION_INTERVAL, self._collect)

    def _add_series(self) -> None:
        """A slice of a new table's series per loop turn, requests served in between."""
        self.metrics.add_series(SERIES_PER_TURN)
        if self.metrics.series_pending:
            asyncio.get_running_loop().call_soon(self._add_series)
        else:
            self._adding_series = False


# glibc's mallopt parameters, and what they are set to (unless the environment sets them)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
KEEP_FREE_HEAP = 32 << 20
HEAP_ALLOCATIONS_UP_TO = 4 << 20


def new_metrics(settings: ServeSettings) -> Metrics:
    """The metrics of a proxy with `settings`: ingress-nginx's series too with
    --ingress-nginx-metrics (docs/behaviour.md, "ingress-nginx's metric names")."""
    if not settings.ingress_nginx_metrics:
        return Metrics()
    return Metrics(Controller.from_environment(settings.ingress_class))


def keep_freed_memory() -> None:
    """Let glibc's malloc keep freed buffers for reuse instead of handing them back at once.

    Streaming a large body allocates a fresh read buffer of a few hundred KB per read and frees
    it a moment later. With glibc's defaults each free shrank the heap and each allocation grew
    it again, and every page of it was faulted in and zeroed anew: 12 brk calls per 1 MiB
    response, and twice nginx's kernel time. Allocations up to 4 MiB now come from the heap and
    up to 32 MiB of free heap is kept: 1 MiB responses cost about 320 instead of 1,258 µs of
    system time. Not glibc (no mallopt), or MALLOC_*_ set in the environment: left alone.
    """
    if any(name.startswith("MALLOC_") for name in os.environ):
        return
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return
    mallopt(_M_TRIM_THRESHOLD, KEEP_FREE_HEAP)
    mallopt(_M_MMAP_THRESHOLD, HEAP_ALLOCATIONS_UP_TO)


def raise_file_limit() -> None:
    """Every connection costs two descriptors (client and upstream): take the hard limit, as
    nginx's worker_rlimit_nofile, instead of a distribution's 1024 default."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        wanted = 1 << 20 if hard == resource.RLIM_INFINITY else hard
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
        except (ValueError, OSError):
            log.warning("could not raise the open-file limit from %d", soft)


async def serve(
    settings: ServeSettings,
    source: Source,
    ready: Callable[[Address], None] | None = None,
    metrics: Metrics | None = None,
) -> None:
    """Run the proxy on `source`'s routes until SIGINT or SIGTERM, then shut down gracefully.

    Raises `SourceError` (after closing the listeners) when the source cannot deliver a first state.
    """
    log.info("sticky-proxy %s", build.describe())
    raise_file_limit()
    keep_freed_memory()
    sys.setswitchinterval(GIL_SWITCH_INTERVAL)
    proxy = ProxyServer(settings, metrics=metrics)
    await proxy.start(source)
    assert proxy.address is not None and proxy.feeding is not None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    stopping = asyncio.ensure_future(stop.wait())
    try:
        if ready is not None:
            ready(proxy.address)
        done, _ = await asyncio.wait([stopping, proxy.feeding], return_when=asyncio.FIRST_COMPLETED)
        if proxy.feeding in done:
            proxy.feeding.result()  # a source that gave up raises here
            await stopping  # a source that returned has published all it ever will
        log.info("shutting down: finishing requests in flight (grace %.0fs)",
                 settings.shutdown_grace)  # fmt: skip
    finally:
        stopping.cancel()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
        await proxy.stop()

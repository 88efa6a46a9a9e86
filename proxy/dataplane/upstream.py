"""Upstream side of the data plane: keep-alive HTTP/1.1 connections and their per-endpoint pools.

An `UpstreamConnection` parses responses with httptools and hands every event to the exchange it
currently serves (`ResponseSink`). Between requests it waits in its endpoint's pool; connections
are reused most-recently-used first, so under steady load the same few stay warm and the rest age
out instead of churning.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import Callable, Collection
from typing import Final, cast

import httptools
from mypy_extensions import trait

from proxy.core.errors import UpstreamError, UpstreamTimeout
from proxy.core.model import Endpoint, UpstreamTls
from proxy.core.routing import Snapshot
from proxy.dataplane.upstream_tls import ClientTls, certificate_names, client_tls, matches

# nginx's upstream keepalive_timeout: an idle pooled connection older than this is not reused,
# because the upstream may be closing it at the same moment.
IDLE_TIMEOUT: Final = 60.0
# Idle connections kept per endpoint: as many as the concurrency one popular pod sees, so steady
# load reuses them instead of closing and reopening (128, nginx's usual keepalive, closed a
# quarter of the connections at c=500 against one endpoint); bounded, so a burst cannot pin
# thousands of sockets.
MAX_IDLE_PER_ENDPOINT: Final = 1024


@trait
class ResponseSink:
    """What an upstream connection reports to the exchange it serves. A mypyc trait, not a
    typing.Protocol: compiled, a call through a trait is a native one, through a protocol a
    Python method lookup (five of them per request)."""

    __slots__ = ()

    def upstream_head(
        self, status: int, reason: bytes, headers: list[tuple[bytes, bytes]], upgrade: bool
    ) -> None: ...
    def upstream_body(self, data: bytes) -> None: ...
    def upstream_done(self, upstream: UpstreamConnection, keep_alive: bool) -> None: ...
    def upstream_failed(self, error: UpstreamError, response_started: bool) -> None: ...
    def upstream_paused(self, paused: bool) -> None: ...
    def cork(self) -> None: ...
    def uncork(self) -> None: ...


class UpstreamConnection(asyncio.Protocol):
    __slots__ = (
        "_head_request",
        "_headers",
        "_held",
        "_parser",
        "_reason",
        "_response_head",
        "_started",
        "_tunnel",
        "idle_since",
        "pool",
        "reused",
        "sink",
        "transport",
    )

    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.sink: ResponseSink | None = None
        self.reused = False
        self.idle_since = 0.0
        self._parser = httptools.HttpResponseParser(self)
        self._head_request = False
        self._reason = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._started = False  # any byte of the current response received
        self._response_head: tuple[int, list[tuple[bytes, bytes]]] | None = None
        self._tunnel = False
        self._held = False  # reading paused by pause_reading

    # -- driven by the exchange ---------------------------------------------------------------

    def start(self, sink: ResponseSink, head: bytes, head_request: bool) -> None:
        self.sink = sink
        self._head_request = head_request
        self._started = False
        self._response_head = None
        self._headers = []
        assert self.transport is not None
        self.transport.write(head)

    def send(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)

    def pause_reading(self, paused: bool) -> None:
        self._held = paused
        if self.transport is not None and not self.transport.is_closing():
            if paused:
                self.transport.pause_reading()
            else:
                self.transport.resume_reading()

    def release(self) -> None:
        """Back to the pool for the next request, read again: its last answer may have ended
        while it was held (a slow client, limit-rate), and an idle connection must notice its
        upstream closing."""
        if self._held:
            self.pause_reading(False)
        self.pool.release(self)

    def close(self) -> None:
        self.sink = None
        if self.transport is not None:
            self.transport.abort()

    # -- asyncio.Protocol ------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it
        self.transport = cast(asyncio.Transport, transport)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        sink = self.sink
        if sink is None:
            # An idle connection must stay silent; anything else means it is unusable.
            self.close()
            return
        if self._tunnel:
            sink.upstream_body(data)
            return
        self._started = True
        sink.cork()  # whatever this read produces goes downstream in one write
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade as upgrade:
            offset = upgrade.args[0]
            if offset < len(data):
                sink.upstream_body(data[offset:])
        except httptools.HttpParserError as exc:
            self._fail(UpstreamError("protocol", f"invalid response: {exc}"))
        finally:
            sink.uncork()

    def eof_received(self) -> bool | None:
        return None  # close the transport; connection_lost reports it

    def connection_lost(self, exc: Exception | None) -> None:
        self.pool.discard(self)
        if self._tunnel and self.sink is not None:
            sink, self.sink = self.sink, None
            sink.upstream_done(self, keep_alive=False)
        elif exc is None and self.sink is not None and self._ends_at_close():
            self._finish(keep_alive=False)  # httptools has no feed_eof: EOF ends this body
        elif self.sink is not None:
            reason = "reset" if exc is not None or not self._started else "protocol"
            self._fail(UpstreamError(reason, "upstream closed the connection"))

    def pause_writing(self) -> None:
        if self.sink is not None:
            self.sink.upstream_paused(True)

    def resume_writing(self) -> None:
        if self.sink is not None:
            self.sink.upstream_paused(False)

    # -- httptools callbacks -------------------------------------------------------------------

    def on_status(self, reason: bytes) -> None:
        self._reason = reason

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        sink = self.sink
        assert sink is not None
        status = self._parser.get_status_code()
        headers, self._headers = self._headers, []
        if 100 <= status < 200 and status != 101:
            sink.upstream_head(status, self._reason, headers, upgrade=False)
            return
        upgrade = status == 101
        self._response_head = (status, headers)
        sink.upstream_head(status, self._reason, headers, upgrade)
        if upgrade:
            self._tunnel = True
        elif self._head_request and self.sink is not None:  # (not handed to an error page)
            # llhttp cannot be told that a HEAD answer has no body; finish it here and give the
            # connection a fresh parser for its next response (after reading this one's version:
            # a fresh parser's is 0.0, and the connection was never reused).
            keep_alive = self._keep_alive_from(headers)
            self._parser = httptools.HttpResponseParser(self)
            self._finish(keep_alive)

    def on_body(self, body: bytes) -> None:
        if self.sink is not None:
            self.sink.upstream_body(body)

    def on_message_complete(self) -> None:
        # should_keep_alive() is only meaningful inside the parser's callbacks.
        if self.sink is not None and not self._tunnel and self._parser.get_status_code() >= 200:
            self._finish(self._parser.should_keep_alive())

    # -- internals -----------------------------------------------------------------------------

    def _ends_at_close(self) -> bool:
        """Whether the response being read has no length and no chunks (RFC 9112 §6.3 rule 8)."""
        if self._response_head is None:
            return False
        status, headers = self._response_head
        framed = (b"content-length", b"transfer-encoding")
        return status not in (204, 304) and all(name.lower() not in framed for name, _ in headers)

    def _keep_alive_from(self, headers: list[tuple[bytes, bytes]]) -> bool:
        for name, value in headers:
            if name.lower() == b"connection" and b"close" in value.lower():
                return False
        return self._parser.get_http_version() == "1.1"

    def _finish(self, keep_alive: bool) -> None:
        sink, self.sink = self.sink, None
        assert sink is not None
        sink.upstream_done(self, keep_alive)

    def _fail(self, error: UpstreamError) -> None:
        sink, self.sink = self.sink, None
        started = self._started
        self.close()
        if sink is not None:
            sink.upstream_failed(error, started)


ConnectDone = Callable[[UpstreamConnection | None, UpstreamError | None], None]
# How a pool opens a connection: (pool, timeout, done) -> the task that does it, and reports to
# `done` the connection or the error. Over TCP (`dial_tcp`) but for tests that stay in memory.
Dial = Callable[["Pool", float, ConnectDone], "asyncio.Task[None]"]


def dial_tcp(pool: Pool, timeout: float, done: ConnectDone) -> asyncio.Task[None]:
    return pool.loop.create_task(_connect_tcp(pool, timeout, done))


async def _connect_tcp(pool: Pool, timeout: float, done: ConnectDone) -> None:
    endpoint = pool.endpoint
    tls = pool.tls
    if tls is not None and tls.context is None:
        done(None, UpstreamError("connect", tls.problem))
        return
    try:
        async with asyncio.timeout(timeout):  # the TLS handshake included
            _, conn = await pool.loop.create_connection(
                lambda: UpstreamConnection(pool),
                endpoint.address,
                endpoint.port,
                ssl=None if tls is None else tls.context,
                server_hostname=None if tls is None else tls.server_hostname,
            )
    except TimeoutError:
        done(None, UpstreamTimeout("connect timed out"))
    except ssl.SSLError as exc:
        done(None, UpstreamError("connect", f"TLS handshake failed: {_ssl_reason(exc)}"))
    except OSError as exc:
        # "Connection refused": the log line around it names the endpoint
        done(None, UpstreamError("connect", exc.strerror or str(exc)))
    else:
        problem = _wrong_name(conn, tls)
        if problem:
            conn.close()
            done(None, UpstreamError("connect", problem))
        else:
            done(conn, None)


def _ssl_reason(error: ssl.SSLError) -> str:
    if isinstance(error, ssl.SSLCertVerificationError):
        return f"certificate verify failed: {error.verify_message}"
    return error.reason or str(error)


def _wrong_name(conn: UpstreamConnection, tls: ClientTls | None) -> str:
    """Why a verified certificate does not do for proxy-ssl-name; "" when it does."""
    if tls is None or tls.check_name is None or conn.transport is None:
        return ""
    names = certificate_names(conn.transport.get_extra_info("peercert") or {})
    if matches(names, tls.check_name):
        return ""
    return f"TLS certificate is for {', '.join(names) or 'no name'}, not {tls.check_name}"


class Pool:
    """Idle keep-alive connections to one endpoint, most recently used first."""

    def __init__(
        self,
        endpoint: Endpoint,
        loop: asyncio.AbstractEventLoop,
        dial: Dial = dial_tcp,
        tls: ClientTls | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.loop = loop
        self.tls = tls  # None: plain TCP
        self.closed = False  # the endpoint left the routing table
        self._dial = dial
        self._idle: list[UpstreamConnection] = []

    def take_idle(self) -> UpstreamConnection | None:
        idle = self._idle
        oldest_usable = self.loop.time() - IDLE_TIMEOUT
        while idle:
            conn = idle.pop()
            transport = conn.transport
            if transport is not None and not transport.is_closing():
                if conn.idle_since >= oldest_usable:
                    conn.reused = True
                    return conn
                conn.close()
        return None

    def connect(self, timeout: float, done: ConnectDone) -> asyncio.Task[None]:
        """Open a new connection in a task; `done` gets the connection or the error."""
        return self._dial(self, timeout, done)

    def release(self, conn: UpstreamConnection) -> None:
        if self.closed or len(self._idle) >= MAX_IDLE_PER_ENDPOINT:
            conn.close()
            return
        conn.idle_since = self.loop.time()
        self._idle.append(conn)

    def discard(self, conn: UpstreamConnection) -> None:
        with contextlib.suppress(ValueError):  # not idle: it was serving a request
            self._idle.remove(conn)

    def close(self) -> None:
        self.closed = True
        for conn in self._idle:
            conn.close()
        self._idle.clear()


class Pools:
    """Every endpoint's pool, keyed by node text (address:port) so pools survive snapshot swaps;
    TLS ones apart, per TLS setting, so plain and TLS connections (or two settings') never mix."""

    def __init__(self, loop: asyncio.AbstractEventLoop, dial: Dial = dial_tcp) -> None:
        self.loop = loop
        self._dial = dial
        self._pools: dict[str, Pool] = {}  # by node text, address:port
        # per TLS setting: its context (built once) and its pools by node text
        self._tls: dict[UpstreamTls, tuple[ClientTls, dict[str, Pool]]] = {}

    def get(self, endpoint: Endpoint, tls: UpstreamTls | None = None) -> Pool:
        if tls is not None:
            return self._tls_pool(endpoint, tls)
        key = endpoint.node
        pool = self._pools.get(key)
        if pool is None:
            pool = self._pools[key] = Pool(endpoint, self.loop, self._dial)
        return pool

    def _tls_pool(self, endpoint: Endpoint, tls: UpstreamTls) -> Pool:
        entry = self._tls.get(tls)
        if entry is None:
            entry = self._tls[tls] = (client_tls(tls), {})
        context, pools = entry
        pool = pools.get(endpoint.node)
        if pool is None:
            pool = pools[endpoint.node] = Pool(endpoint, self.loop, self._dial, context)
        return pool

    def retain(self, snapshot: Snapshot) -> None:
        """Close the pools of endpoints whose node text (address:port) is not in `snapshot` any
        more, and those of TLS settings no route has, so churn leaves nothing behind."""
        nodes = snapshot.nodes
        _retain(self._pools, nodes)
        if not self._tls:
            return
        routes = (*snapshot.routes, *((snapshot.default_route,) if snapshot.default_route else ()))
        in_use = {route.upstream.tls for route in routes}
        for tls in [tls for tls in self._tls if tls not in in_use]:
            _retain(self._tls.pop(tls)[1], ())
        for _, pools in self._tls.values():
            _retain(pools, nodes)

    def close(self) -> None:
        for pools in (self._pools, *(pools for _, pools in self._tls.values())):
            _retain(pools, ())
        self._tls.clear()


def _retain(pools: dict[str, Pool], nodes: Collection[str]) -> None:
    for key in [key for key in pools if key not in nodes]:
        pools.pop(key).close()

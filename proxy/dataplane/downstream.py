"""Downstream side of the data plane: one asyncio Protocol per client connection.

httptools parses the requests; each complete head becomes an `Exchange`. Exchanges answer strictly
in order (pipelined requests wait, their bodies buffered, with reading paused), so responses never
interleave. One timer per connection enforces the header and keep-alive timeouts: requests only
stamp times, the timer re-arms itself when it fires.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Final, cast

import httptools

from proxy.core import headers as h
from proxy.core.client_auth import ClientAuth, PeerCertificate
from proxy.core.errors import (
    BadRequest,
    HeadTooLarge,
    ProxyError,
    RequestTimeout,
    error_response,
)
from proxy.dataplane.client_auth import handshake_facts
from proxy.dataplane.context import ServerContext
from proxy.dataplane.exchange import Downstream, Exchange

# a request line or one header line, as nginx's large_client_header_buffers
MAX_LINE: Final = 8 * 1024
MAX_HEAD: Final = 32 * 1024  # a whole request head
KEEPALIVE_TIMEOUT: Final = 75.0  # nginx's keepalive_timeout
# nginx's lingering_timeout: how long an unread body is drained after an error
LINGERING_TIME: Final = 5.0


class DownstreamProtocol(asyncio.Protocol, Downstream):
    __slots__ = (
        "_active",
        "_client_cert",
        "_closed",
        "_fatal",
        "_fresh_read",
        "_head_at_start",
        "_head_raw",
        "_head_reads",
        "_head_size",
        "_head_started",
        "_headers",
        "_idle_since",
        "_in_head",
        "_incoming",
        "_last_read",
        "_lingering",
        "_out",
        "_parser",
        "_paused",
        "_queue",
        "_read",
        "_timer",
        "_timer_at",
        "_tunnel",
        "_upgrade_body",
        "_upgrading",
        "_url",
        "ctx",
        "tls",
        "transport",
        "via",
        "write_paused",
    )

    # Reasons to stop reading from the client, as bits; reading resumes when none is left. An
    # exchange holds reading for reasons of its own (exchange.WAIT_UPSTREAM...); this one is ours:
    PIPELINE: Final = 4  # requests queued behind the one being answered

    def __init__(self, ctx: ServerContext) -> None:
        self.ctx = ctx
        self.transport: asyncio.Transport | None = None
        self.via = h.Forwarding(b"", b"", b"http", b"")
        self.tls = False
        self.write_paused = False
        self._client_cert: tuple[ClientAuth | None, PeerCertificate | None] | None = None
        self._parser = httptools.HttpRequestParser(self)
        self._url = b""
        self._headers: h.Headers = []
        self._head_size = 0
        self._head_raw = 0  # bytes of a head that arrived after the read it began in
        self._head_reads: list[bytes] = []  # those reads, and the one it began in
        self._read = b""  # the latest read, while a head in it is incomplete
        self._fresh_read = False  # no message has ended in the latest read yet
        self._head_at_start = False  # the head being parsed began at the start of a read
        self._in_head = False
        self._head_started = 0.0
        self._idle_since = 0.0
        self._last_read = 0.0
        self._incoming: Exchange | None = None  # receiving its request body
        self._active: Exchange | None = None  # answering
        self._queue: deque[Exchange] = deque()
        self._fatal: ProxyError | None = None  # a bad request behind the one being answered
        self._tunnel: Exchange | None = None  # upgraded: bytes pass through both ways
        self._upgrading: Exchange | None = None  # asked to upgrade, the upstream not answered yet
        self._upgrade_body = 0  # body bytes of the Upgrade request still to come
        self._paused = 0
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0  # when `_timer` fires, in loop time
        self._closed = False
        self._lingering = False
        self._out: list[bytes] | None = None  # corked writes

    # -- asyncio.Protocol ------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it
        self.transport = cast(asyncio.Transport, transport)
        if len(self.ctx.connections) >= self.ctx.max_connections:
            # Over the cap: a clear answer beats a connection that hangs in the backlog.
            self._closed = True
            self.ctx.metrics.count_request(None, b"", 503)
            self.transport.write(error_response(503, close=True))
            self._linger()  # its request may be here already: a bare close would reset the 503
            return
        self.ctx.connections.add(self)  # uvloop's TCP transports already set TCP_NODELAY
        peer = transport.get_extra_info("peername")
        own = transport.get_extra_info("sockname")
        self.tls = transport.get_extra_info("sslcontext") is not None
        self.via = h.Forwarding(
            client_ip=str(peer[0]).encode() if peer else b"",
            port=str(own[1]).encode() if own else b"",
            proto=b"https" if self.tls else b"http",
            local=_host_port(own),
        )
        # Until the first request head completes, the header timeout applies from accept.
        self._in_head = True
        self._head_started = self._idle_since = self.ctx.loop.time()
        self._arm_timer(self.ctx.client_header_timeout)

    def data_received(self, data: bytes) -> None:
        if self._lingering:
            return  # the rest of a body we answered without reading
        if self._tunnel is not None:
            self._tunnel.tunnel_data(data)
            return
        self._last_read = self.ctx.loop.time()
        if self._upgrading is not None:
            self._upgrade_data(self._upgrading, data)
            return
        if self._fatal is not None or self._closed:
            return
        if self._in_head and self._head_size > 0:
            # httptools buffers a header until it ends, so bound the head by bytes received too
            # (loosely: the chunk that ends a head may carry body bytes).
            if not self._head_raw:
                self._head_reads = [self._read]
            self._head_reads.append(data)
            self._head_raw += len(data)
            if self._head_raw > MAX_HEAD + MAX_LINE:
                self._reject(HeadTooLarge())
                return
        self._read = data
        self._fresh_read = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade as upgrade:
            # httptools parses nothing after an Upgrade head: the body it declares, then the
            # new protocol's bytes, held until the upstream agrees.
            self._after_upgrade_head(data[upgrade.args[0] :])
        except httptools.HttpParserCallbackError as exc:
            cause = exc.__context__
            self._reject(cause if isinstance(cause, ProxyError) else BadRequest(str(exc)))
        except httptools.HttpParserError as exc:
            self._reject(BadRequest(str(exc)))
        else:
            if self._head_size and len(data) > MAX_LINE:
                # A large read left a head unfinished: what it holds so far may already be
                # over the limits, and the rest may never come.
                try:
                    _check_head_size(self._url, self._headers)
                except HeadTooLarge as error:
                    self._reject(error)
        if not self._head_size:
            self._read = b""  # its heads are complete: an idle connection holds no read buffer

    def _after_upgrade_head(self, rest: bytes) -> None:
        # (a method of its own: in data_received, `_upgrading` reads as None, narrowed before the
        # parser's callbacks set it, and compiled code checks the narrowed type)
        upgrading = self._upgrading
        if rest and upgrading is not None:
            self._upgrade_data(upgrading, rest)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self not in self.ctx.connections:
            return  # turned away over the connection cap
        self._closed = True
        self.ctx.connections.discard(self)
        for exchange in (self._active, *self._queue):
            if exchange is not None and not exchange.finished:
                exchange.abort()
                if exchange.started:
                    # nginx's 499: the client closed the connection before the answer was done
                    self.ctx.metrics.abandoned(exchange)
        if self._tunnel is not None:
            self._tunnel.tunnel_closed()
        self._active = self._incoming = self._tunnel = self._upgrading = None
        self._queue.clear()

    def pause_writing(self) -> None:
        self.write_paused = True
        exchange = self._tunnel or self._active
        if exchange is not None:
            exchange.downstream_paused(True)

    def resume_writing(self) -> None:
        self.write_paused = False
        exchange = self._tunnel or self._active
        if exchange is not None:
            exchange.downstream_paused(False)

    # -- httptools callbacks -------------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._url = b""
        self._headers = []
        self._head_size = 1
        self._head_raw = 0
        self._head_at_start = self._fresh_read
        if not self._in_head:
            self._in_head = True
            self._head_started = self.ctx.loop.time()

    def on_url(self, url: bytes) -> None:
        self._url += url  # almost always called once

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))  # sizes are checked once the head is complete

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._head_size = 0
        head_reads = self._head_reads
        if len(self._read) > MAX_LINE or self._head_raw:
            # Only a read this large, or a head spread over several reads, can hold a line or a
            # head over the limits; a small read cannot, so most requests skip the count.
            _check_head_size(self._url, self._headers)
            self._head_reads = []
        parser = self._parser
        method = parser.get_method()
        version = parser.get_http_version()
        if version != "1.1":
            head = b"".join(head_reads) if self._head_raw else self._read
            h.check_version(method, version, self._url, head)
        # A head whole in the read it starts can be sent on as it came (h.spliced_lines).
        received = self._read if self._head_at_start and not self._head_raw else b""
        request = h.scan_request(
            method, self._url, version == "1.1", self._headers, self.ctx.underscores_in_headers,
            received,
        )  # fmt: skip
        exchange = Exchange(self.ctx, self, request, parser.should_keep_alive())
        if self.ctx.real_ip is not None:  # --use-forwarded-headers
            exchange.client = self.ctx.real_ip.client(self.via.client_ip, self._headers)
        self._incoming = exchange
        if request.has_body:
            self.timer_within(self.ctx.client_body_timeout, self.ctx.loop.time())
        if request.upgrade is not None:
            self._upgrading = exchange
            self._upgrade_body = request.content_length or 0
        if self._active is None:
            self._active = exchange
            exchange.begin()
        else:
            self._queue.append(exchange)
            self._pause(self.PIPELINE)

    def on_body(self, body: bytes) -> None:
        if self._incoming is not None:
            self._incoming.body(body)

    def on_message_complete(self) -> None:
        self._fresh_read = False  # what follows in this read does not start it
        if self._upgrade_body:
            return  # (httptools ends an Upgrade request at its head) its body is still to come
        exchange, self._incoming = self._incoming, None
        if exchange is not None:
            exchange.body_done()

    def _upgrade_data(self, exchange: Exchange, data: bytes) -> None:
        """Bytes after an Upgrade head: first the body its Content-Length declares, sent as any
        body is, then the new protocol's, held until the upstream answers 101 (and dropped if it
        does not). An upstream connection is reused only if the whole body reached it."""
        left = self._upgrade_body
        if left:
            body = data[:left]
            self._upgrade_body = left - len(body)
            exchange.body(body)
            if not self._upgrade_body and self._incoming is exchange:
                self._incoming = None
                exchange.body_done()
            data = data[len(body) :]
        if data:
            exchange.tunnel_data(data)

    # -- Downstream: used by exchanges ---------------------------------------------------------

    def write(self, data: bytes) -> None:
        if self._out is not None:
            self._out.append(data)
        else:
            assert self.transport is not None
            self.transport.write(data)

    def cork(self) -> None:
        """Collect writes until `uncork`: a response head and body leave in one send."""
        if self._out is None:
            self._out = []

    def uncork(self) -> None:
        out, self._out = self._out, None
        if out and self.transport is not None and not self.transport.is_closing():
            self.transport.write(out[0] if len(out) == 1 else b"".join(out))

    def close_now(self, linger: bool = False) -> None:
        """End the connection after what is already written; `linger` when the client may still
        be sending (it is assumed whenever part of a request is unanswered)."""
        self._closed = True
        self.uncork()
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if linger or self._incoming or self._fatal or self._queue or self._head_size:
            # A body we will not read, the rest of a request we refused, requests pipelined
            # behind the last answer: closing with unread input would reset the connection,
            # and a reset can destroy the answer before the client reads it.
            self._linger()
        else:
            transport.close()

    def _linger(self) -> None:
        """Close our side only and drain the client's for a while (nginx's lingering close):
        closing with unread input would reset the connection and destroy our answer in the
        client's receive buffer."""
        transport = self.transport
        assert transport is not None
        if not transport.can_write_eof():
            transport.close()
            return
        self._lingering = True
        transport.write_eof()
        self._paused = 0
        transport.resume_reading()
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self.ctx.loop.call_later(LINGERING_TIME, transport.close)

    def hold_reading(self, reason: int, held: bool) -> None:
        if held:
            self._pause(reason)
        else:
            self._resume(reason)

    def _pause(self, reason: int) -> None:
        was = self._paused
        self._paused |= reason
        if not was and self.transport is not None and not self._closed:
            self.transport.pause_reading()

    def _resume(self, reason: int) -> None:
        if not self._paused & reason:
            return
        self._paused &= ~reason
        if not self._paused and self.transport is not None and not self._closed:
            self.transport.resume_reading()

    def client_certificate(self) -> tuple[ClientAuth | None, PeerCertificate | None]:
        facts = self._client_cert
        if facts is None:
            transport = self.transport
            facts = (None, None)
            if self.tls and transport is not None:
                facts = handshake_facts(transport, self.ctx.negotiated)
            self._client_cert = facts  # (asked once per connection, by auth-tls hosts only)
        return facts

    def start_tunnel(self, exchange: Exchange) -> None:
        """The upstream accepted an Upgrade: from now on bytes pass through both ways."""
        self._tunnel = exchange
        self._upgrading = None
        # A body not yet all here goes on as the tunnel's bytes, as they come.
        self._upgrade_body = 0
        self._incoming = None
        # Whatever held reading (a full buffer, a slow upstream, requests behind) is over: leave
        # only one flag, so that _resume() really resumes.
        self._paused = self.PIPELINE
        self._resume(self.PIPELINE)

    def exchange_finished(self, exchange: Exchange) -> None:
        if self._active is exchange:
            self._active = None
        if self._tunnel is exchange:
            self._tunnel = None
        if self._upgrading is exchange:
            self._upgrading = None
            self._upgrade_body = 0
        if self._closed:
            return
        if not exchange.keep_alive or self.ctx.closing:
            # (after an Upgrade, refused or done, the client may be sending its protocol still)
            self.close_now(linger=exchange.request.upgrade is not None)
            return
        if self._queue:
            following = self._queue.popleft()
            self._active = following
            if not self._queue:
                self._resume(self.PIPELINE)
            following.begin()
        elif self._fatal is not None:
            self._answer_fatal(self._fatal)
        else:
            self._idle_since = self.ctx.loop.time()

    def close_if_idle(self) -> None:
        """Close unless a request is being answered, or a head is arriving (waited out)."""
        idle = self._active is None and self._tunnel is None and not self._head_size
        if idle and self.transport is not None:
            self.close_now()

    # -- internals -----------------------------------------------------------------------------

    def _reject(self, error: ProxyError) -> None:
        """A request that cannot be parsed: answer it after those before it, then close."""
        self._fatal = error
        self._pause(self.PIPELINE)
        incoming, self._incoming = self._incoming, None
        if incoming is not None:
            if incoming.started:
                incoming.fail(error)  # its head was fine, its body is not
                return
            self._queue.remove(incoming)
        if self._active is None:
            self._answer_fatal(error)

    def _answer_fatal(self, error: ProxyError) -> None:
        self._fatal = error  # (also when a head timed out: it lingers like every refusal)
        self.ctx.metrics.count_request(None, b"", error.status)
        self.write(error_response(error.status, close=True))
        self.close_now()

    def _body_timed_out(self, exchange: Exchange) -> None:
        self._incoming = None
        if exchange.started:
            exchange.fail(RequestTimeout())  # 408 unless the answer began; closes either way
        else:
            self.close_now()

    def _arm_timer(self, delay: float) -> None:
        loop = self.ctx.loop
        self._timer_at = loop.time() + delay
        self._timer = loop.call_at(self._timer_at, self._on_timer)

    def timer_within(self, delay: float, now: float) -> None:
        """Make sure the connection timer fires within `delay` of `now` (loop time): a shorter
        timeout starts."""
        timer = self._timer
        if timer is None or self._timer_at > now + delay:
            if timer is not None:
                timer.cancel()
            self._arm_timer(delay)

    def _on_timer(self) -> None:
        """The connection's one timer: head, body, upstream-read and keep-alive timeouts."""
        self._timer = None
        if self._closed:
            return
        ctx = self.ctx
        now = ctx.loop.time()
        active = self._active
        next_check = ctx.client_header_timeout  # a busy connection is looked at this often
        if self._in_head:
            left = self._head_started + ctx.client_header_timeout - now
            if left <= 0:
                if self._head_size > 0 and active is None:
                    self._answer_fatal(RequestTimeout())
                else:
                    self.close_now()
                return
            next_check = min(next_check, left)
        elif active is None and self._tunnel is None and not self._queue:
            left = self._idle_since + KEEPALIVE_TIMEOUT - now
            if left <= 0:
                self.close_now()
                return
            next_check = min(next_check, left)
        incoming = self._incoming
        if incoming is not None and not self._paused:
            # A body is arriving and we are reading: nginx's client_body_timeout, between reads.
            left = self._last_read + ctx.client_body_timeout - now
            if left <= 0:
                self._body_timed_out(incoming)
                return
            next_check = min(next_check, left)
        if active is not None and active.awaiting_upstream:
            left = active.read_time_left(now)
            if left <= 0:
                active.read_timed_out()  # may retry elsewhere, answer 504 or close
                if self._closed or self._timer is not None:
                    return
                left = ctx.client_header_timeout
            next_check = min(next_check, left)
        self._arm_timer(next_check)


def _check_head_size(url: bytes, headers: h.Headers) -> None:
    """HeadTooLarge (431) for a request line or header line over 8 KiB, or a head over 32 KiB."""
    total = len(url)
    if total > MAX_LINE:
        raise HeadTooLarge()
    for name, value in headers:
        line = len(name) + len(value) + 4
        total += line
        if line > MAX_LINE or total > MAX_HEAD:
            raise HeadTooLarge()


def _host_port(sockname: tuple[object, ...] | None) -> bytes:
    if not sockname:
        return b"localhost"
    host, port = str(sockname[0]), sockname[1]
    return (f"[{host}]:{port}" if ":" in host else f"{host}:{port}").encode()

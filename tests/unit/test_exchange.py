"""The data plane without sockets: retries and replay, pipelining, tunnels and timeouts.

The real DownstreamProtocol, Exchange and UpstreamConnection run on in-memory transports. An
asyncio loop whose clock moves only when a test moves it runs their timers, and a new upstream
connection opens one loop turn after it is asked for. The same behaviours over real sockets are
in tests/integration/test_http_proxy.py.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Iterator

import pytest

from proxy.control.sources.static import static_snapshot
from proxy.core.errors import UpstreamError
from proxy.core.model import Endpoint, UpstreamPolicy
from proxy.dataplane.context import ServerContext
from proxy.dataplane.downstream import DownstreamProtocol
from proxy.dataplane.exchange import BUFFER_LIMIT
from proxy.dataplane.upstream import ConnectDone, Pool, UpstreamConnection
from proxy.observability.metrics import Metrics
from tests.memory_transport import MemoryTransport

ENDPOINTS = (Endpoint("10.0.0.1", 8080), Endpoint("10.0.0.2", 8080))
GET = b"GET /page HTTP/1.1\r\nHost: app\r\n\r\n"
UPGRADE = b"GET /ws HTTP/1.1\r\nHost: app\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
SWITCHING = b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"


def ok(body: bytes) -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)


def received(upstream: UpstreamConnection) -> bytes:
    """What the proxy wrote to `upstream` since the last look."""
    transport = upstream.transport
    assert isinstance(transport, MemoryTransport)
    return transport.take()


class ClockLoop(asyncio.SelectorEventLoop):
    """An event loop whose clock stands still until `advance`: timeouts fire exactly, at once."""

    def __init__(self) -> None:
        super().__init__()
        self.now = 1000.0

    def time(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        """Move the clock, then run what is due: timers, and what they and it call soon."""
        self.now += seconds
        self.run_until_complete(self._settle())

    async def _settle(self) -> None:
        for _ in range(8):  # a connect task, its callback, the timers they arm...
            await asyncio.sleep(0)


class MemoryProxy:
    """One client connection to the proxy and the upstream connections its requests open, all
    in memory. Both endpoints serve one catch-all route without affinity."""

    def __init__(self, loop: ClockLoop, ctx: ServerContext) -> None:
        self.loop = loop
        self.opened: list[UpstreamConnection] = []  # upstream connections, in opening order
        self.refuse = 0  # connection attempts still to refuse
        self.client = DownstreamProtocol(ctx)
        self.client_side = MemoryTransport()
        self.client.connection_made(self.client_side)

    def connect(self, pool: Pool, done: ConnectDone) -> asyncio.Task[None]:
        """The context's way to dial: a connection, or a refusal, a loop turn later."""
        return self.loop.create_task(self._open(pool, done))

    async def _open(self, pool: Pool, done: ConnectDone) -> None:
        if self.refuse:
            self.refuse -= 1
            done(None, UpstreamError("connect", "Connection refused"))
            return
        conn = UpstreamConnection(pool)
        conn.connection_made(MemoryTransport(own=("10.0.0.254", 50000)))
        self.opened.append(conn)
        done(conn, None)

    def send(self, data: bytes) -> None:
        """Bytes from the client, and what follows from them."""
        self.client.data_received(data)
        self.loop.advance(0)

    def answer(self, upstream: UpstreamConnection, data: bytes) -> None:
        """Bytes from an upstream, and what follows from them."""
        upstream.data_received(data)
        self.loop.advance(0)

    def reset(self, upstream: UpstreamConnection) -> None:
        """The upstream resets the connection."""
        upstream.connection_lost(ConnectionResetError())
        self.loop.advance(0)

    def serving(self) -> UpstreamConnection:
        """The one upstream connection a request is in progress on."""
        busy = [conn for conn in self.opened if conn.sink is not None]
        assert len(busy) == 1, f"{len(busy)} upstream connections busy"
        return busy[0]

    def answered(self) -> bytes:
        """What the client was sent since the last look."""
        return self.client_side.take()


MakeProxy = Callable[..., MemoryProxy]


@pytest.fixture
def make_proxy() -> Iterator[MakeProxy]:
    loop = ClockLoop()

    def make(
        policy: UpstreamPolicy | None = None,
        header_timeout: float = 60.0,
        body_timeout: float = 60.0,
    ) -> MemoryProxy:
        snapshot = static_snapshot(ENDPOINTS, None, policy or UpstreamPolicy())
        proxies: list[MemoryProxy] = []  # the one made below, which upstream connections open in
        ctx = ServerContext(
            loop,
            lambda: snapshot,
            Metrics(),
            client_header_timeout=header_timeout,
            client_body_timeout=body_timeout,
            rng=random.Random(7),
            dial=lambda pool, _, done: proxies[0].connect(pool, done),
        )
        proxies.append(MemoryProxy(loop, ctx))
        return proxies[0]

    yield make
    loop.close()


# -- retries and replay ---------------------------------------------------------------------------


def test_a_failed_try_replays_the_buffered_body_to_the_next_endpoint(
    make_proxy: MakeProxy,
) -> None:
    proxy = make_proxy()
    proxy.send(b"PUT /doc HTTP/1.1\r\nHost: app\r\nContent-Length: 11\r\n\r\nhello world")
    first = proxy.serving()
    assert received(first).endswith(b"\r\n\r\nhello world")  # the body left with this try
    proxy.reset(first)
    second = proxy.serving()
    assert second.pool.endpoint != first.pool.endpoint
    sent = received(second)
    assert sent.startswith(b"PUT /doc HTTP/1.1\r\n")
    assert sent.endswith(b"\r\n\r\nhello world")
    proxy.answer(second, ok(b"stored"))
    answer = proxy.answered()
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
    assert answer.endswith(b"stored")


def test_a_non_idempotent_request_is_not_retried_once_sent(make_proxy: MakeProxy) -> None:
    proxy = make_proxy()
    proxy.send(b"POST /order HTTP/1.1\r\nHost: app\r\nContent-Length: 3\r\n\r\nabc")
    first = proxy.serving()
    assert received(first).endswith(b"\r\n\r\nabc")
    proxy.reset(first)
    assert proxy.answered().startswith(b"HTTP/1.1 502 ")
    assert proxy.opened == [first]  # the upstream may have acted on it: no second try


def test_a_non_idempotent_request_is_retried_when_it_never_left(make_proxy: MakeProxy) -> None:
    proxy = make_proxy()
    proxy.refuse = 1
    proxy.send(b"POST /order HTTP/1.1\r\nHost: app\r\nContent-Length: 3\r\n\r\nabc")
    upstream = proxy.serving()  # the second endpoint: the first refused the connection
    sent = received(upstream)
    assert sent.startswith(b"POST /order HTTP/1.1\r\n")
    assert sent.endswith(b"\r\n\r\nabc")
    proxy.answer(upstream, ok(b"ordered"))
    assert proxy.answered().startswith(b"HTTP/1.1 200 OK\r\n")


# -- pipelining -----------------------------------------------------------------------------------


def test_pipelined_requests_are_answered_in_order_one_at_a_time(make_proxy: MakeProxy) -> None:
    proxy = make_proxy()
    proxy.send(b"GET /one HTTP/1.1\r\nHost: app\r\n\r\nGET /two HTTP/1.1\r\nHost: app\r\n\r\n")
    first = proxy.serving()  # (asserts that the second request is not upstream yet)
    assert received(first).startswith(b"GET /one ")
    assert not proxy.client_side.reading  # a request waits: nothing more is read meanwhile

    proxy.answer(first, ok(b"first"))
    assert proxy.answered().endswith(b"\r\n\r\nfirst")
    second = proxy.serving()
    assert received(second).startswith(b"GET /two ")
    assert proxy.client_side.reading

    proxy.answer(second, ok(b"second"))
    assert proxy.answered().endswith(b"\r\n\r\nsecond")


def test_a_head_that_starts_a_read_goes_upstream_as_it_came(make_proxy: MakeProxy) -> None:
    proxy = make_proxy()
    proxy.send(b"GET /a HTTP/1.1\r\nHost: app\r\nX-Spaced:   v  \r\n\r\n")
    assert received(proxy.serving()).startswith(
        b"GET /a HTTP/1.1\r\nHost: app\r\nX-Spaced:   v  \r\n"
    )


def _x_n(head: bytes) -> bytes:
    return head.split(b"\r\n")[2]  # (the line after Host)


def test_heads_in_one_read_go_upstream_each_with_its_own_lines(make_proxy: MakeProxy) -> None:
    """Only a head at the start of a read is spliced from it: the one there, with the same
    request line and as many lines, must not lend the next its lines."""
    proxy = make_proxy()
    head = b"GET /x HTTP/1.1\r\nHost: app\r\nX-N: %d\r\n\r\n"
    proxy.send(head % 1 + head % 2)
    first = proxy.serving()
    assert _x_n(received(first)) == b"X-N: 1"
    proxy.answer(first, ok(b""))
    assert _x_n(received(proxy.serving())) == b"X-N: 2"


def test_a_body_that_looks_like_a_head_does_not_lend_the_next_head_its_lines(
    make_proxy: MakeProxy,
) -> None:
    proxy = make_proxy()
    lookalike = b"GET /x HTTP/1.1\r\nHost: app\r\nX-N: body\r\n\r\n"
    proxy.send(b"POST /x HTTP/1.1\r\nHost: app\r\nContent-Length: %d\r\n\r\n" % len(lookalike))
    proxy.send(lookalike + b"GET /x HTTP/1.1\r\nHost: app\r\nX-N: 2\r\n\r\n")
    post = proxy.serving()
    assert received(post).endswith(b"\r\n\r\n" + lookalike)
    proxy.answer(post, ok(b""))
    assert _x_n(received(proxy.serving())) == b"X-N: 2"


def test_an_upstream_connection_that_answered_a_head_request_is_reused(
    make_proxy: MakeProxy,
) -> None:
    proxy = make_proxy()
    proxy.send(b"HEAD /page HTTP/1.1\r\nHost: app\r\n\r\n")
    first = proxy.serving()
    proxy.answer(first, b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n")
    assert proxy.answered().startswith(b"HTTP/1.1 200 OK\r\n")
    assert first.transport is not None
    assert not first.transport.is_closing()
    assert first.pool.take_idle() is first  # back in its pool, for the next request


# -- tunnels --------------------------------------------------------------------------------------


def test_an_upgrade_answered_101_passes_bytes_both_ways(make_proxy: MakeProxy) -> None:
    proxy = make_proxy()
    proxy.send(UPGRADE + b"early")  # the new protocol's first bytes, sent before the 101
    upstream = proxy.serving()
    head = received(upstream)
    assert b"\r\nUpgrade: websocket\r\n" in head
    assert b"early" not in head  # held until the upstream agrees
    proxy.send(b"+more")
    assert received(upstream) == b""  # also once the upstream is connected

    proxy.answer(upstream, SWITCHING)
    assert proxy.answered().startswith(b"HTTP/1.1 101 ")
    assert received(upstream) == b"early+more"

    proxy.send(b"ping")
    assert received(upstream) == b"ping"
    proxy.answer(upstream, b"pong")
    assert proxy.answered() == b"pong"

    upstream.connection_lost(None)  # the upstream ends the tunnel: so does the proxy
    assert proxy.client_side.eof


def test_reading_held_by_bytes_waiting_for_a_101_resumes_with_the_tunnel(
    make_proxy: MakeProxy,
) -> None:
    proxy = make_proxy()
    early = b"x" * (BUFFER_LIMIT + 1)
    proxy.send(UPGRADE + early)
    upstream = proxy.serving()
    assert not proxy.client_side.reading  # too much to hold: the client waits
    proxy.answer(upstream, SWITCHING)
    assert proxy.client_side.reading
    assert received(upstream).endswith(early)


def test_bytes_held_after_an_upgrade_request_never_leave_without_a_101(
    make_proxy: MakeProxy,
) -> None:
    proxy = make_proxy()
    proxy.send(UPGRADE + b"early")
    upstream = proxy.serving()
    received(upstream)
    proxy.answer(upstream, b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
    assert proxy.answered().startswith(b"HTTP/1.1 403 ")
    assert received(upstream) == b""
    assert proxy.client_side.eof  # closed: the client may still be speaking its new protocol


# -- timeouts -------------------------------------------------------------------------------------


def test_a_head_not_complete_within_the_header_timeout_is_408(make_proxy: MakeProxy) -> None:
    proxy = make_proxy(header_timeout=10)
    proxy.send(b"GET /page HTTP/1.1\r\nHost: ap")
    proxy.loop.advance(9.9)
    assert proxy.answered() == b""
    proxy.loop.advance(0.2)
    assert proxy.answered().startswith(b"HTTP/1.1 408 ")
    assert proxy.client_side.eof
    assert proxy.opened == []


def test_a_body_that_stops_arriving_is_408_after_the_body_timeout(make_proxy: MakeProxy) -> None:
    proxy = make_proxy(body_timeout=10)
    proxy.send(b"POST /form HTTP/1.1\r\nHost: app\r\nContent-Length: 10\r\n\r\nabc")
    upstream = proxy.serving()
    proxy.loop.advance(6)
    proxy.send(b"de")  # the timeout runs between reads: this one starts it again
    proxy.loop.advance(9.9)
    assert proxy.answered() == b""
    proxy.loop.advance(0.2)
    assert proxy.answered().startswith(b"HTTP/1.1 408 ")
    assert upstream.transport is not None
    assert upstream.transport.is_closing()  # it has half a body: never reused


def test_an_upstream_silent_past_the_read_timeout_is_504_once_each_endpoint_was_tried(
    make_proxy: MakeProxy,
) -> None:
    proxy = make_proxy(UpstreamPolicy(read_timeout=5))
    proxy.send(GET)
    first = proxy.serving()
    proxy.loop.advance(4.9)
    assert proxy.serving() is first
    proxy.loop.advance(0.2)
    second = proxy.serving()  # a timeout is retried on the next endpoint
    assert second.pool.endpoint != first.pool.endpoint
    assert received(second).startswith(b"GET /page ")
    assert proxy.answered() == b""
    proxy.loop.advance(5.1)
    assert proxy.answered().startswith(b"HTTP/1.1 504 ")
    assert proxy.opened == [first, second]

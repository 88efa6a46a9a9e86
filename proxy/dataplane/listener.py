"""A listening socket that takes every waiting connection when it is readable, not one a turn.

uvloop's own servers accept one connection per event-loop turn: libuv stopped accepting in a
loop in 1.45 (libuv/libuv#3696) and relies on the socket being reported readable again next
turn. A proxy turn that serves 500 busy clients lasts 10-25 ms, so a burst of 100 new clients
drained from the accept queue at 40-100 a second: at c=500 the 99th percentile was 0.4-0.9 s of
pure queueing, with the loop never stalled. Here the socket's reader accepts a batch at once
and gives each connection to uvloop as an accepted socket, which builds the same transport.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import ssl
from collections.abc import Callable
from typing import Protocol

from proxy.core.client_hello import RECORD_LIMIT, record_length, server_name
from proxy.core.values import Address

log = logging.getLogger("sticky_proxy")

BACKLOG = 2048
# Connections taken per readable event: a flood is accepted in batches, requests served between.
ACCEPTS_PER_TURN = 256
# Out of descriptors (EMFILE) or kernel memory: the socket stays readable, so retrying at once
# would spin; wait for connections to close instead, as nginx does (accept_mutex_delay).
OUT_OF_RESOURCES = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}
RETRY_AFTER = 0.5
# A ClientHello peeked in part: its bytes stay unread, so the socket stays readable and only a
# pause lets the rest arrive (a hello beyond one TCP segment, rare). From 2 ms, doubling to 50.
PEEK_PAUSE = 0.002
PEEK_PAUSE_LIMIT = 0.05


class HelloChooser(Protocol):
    """Picks a TLS connection's listening context by the server name of its ClientHello
    (tls_contexts.TlsContexts: whether the client is asked for a certificate)."""

    def peeks(self) -> bool: ...
    def for_server_name(self, server_name: str | None) -> ssl.SSLContext: ...


def listening_socket(address: Address, *, reuse_port: bool = False) -> socket.socket:
    """Bound and listening (`address` is an IP literal, v4 or v6), so even port 0 is known."""
    return socket.create_server(
        (address.host, address.port),
        family=socket.AF_INET6 if ":" in address.host else socket.AF_INET,
        backlog=BACKLOG,
        reuse_port=reuse_port,
    )


class Listener:
    """Accepts on one bound socket and runs `protocol_factory()` on each connection (with TLS
    when `ssl_context` is given), from `start_accepting()` on: until then connections wait in
    the kernel's queue. `close()` stops accepting; accepted connections live on."""

    def __init__(
        self,
        sock: socket.socket,
        protocol_factory: Callable[[], asyncio.Protocol],
        ssl_context: ssl.SSLContext | None = None,
        ssl_handshake_timeout: float | None = None,
        hello_chooser: HelloChooser | None = None,
    ) -> None:
        self._loop = asyncio.get_running_loop()
        self._chooser = hello_chooser
        self._sock = sock
        self._factory = protocol_factory
        self._ssl = ssl_context
        self._handshake_timeout = ssl_handshake_timeout if ssl_context is not None else None
        self._adopting: set[asyncio.Task[object]] = set()
        self._retry: asyncio.TimerHandle | None = None
        self._accepting = False
        host, port = sock.getsockname()[:2]
        self.address = Address(host, port)
        sock.setblocking(False)

    @classmethod
    def bind(
        cls,
        address: Address,
        protocol_factory: Callable[[], asyncio.Protocol],
        *,
        reuse_port: bool = False,
        ssl_context: ssl.SSLContext | None = None,
        ssl_handshake_timeout: float | None = None,
        hello_chooser: HelloChooser | None = None,
    ) -> Listener:
        sock = listening_socket(address, reuse_port=reuse_port)
        return cls(sock, protocol_factory, ssl_context, ssl_handshake_timeout, hello_chooser)

    def start_accepting(self) -> None:
        if self._accepting or self._sock.fileno() == -1:
            return
        self._accepting = True
        self._loop.add_reader(self._sock.fileno(), self._accept)

    def close(self) -> None:
        if self._sock.fileno() == -1:
            return
        if self._retry is not None:
            self._retry.cancel()
        elif self._accepting:
            self._loop.remove_reader(self._sock.fileno())
        self._sock.close()

    def _accept(self) -> None:
        accept = self._sock.accept
        for _ in range(ACCEPTS_PER_TURN):
            try:
                conn, _ = accept()
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionAbortedError:
                continue  # the client gave up while queued
            except OSError as exc:
                if exc.errno not in OUT_OF_RESOURCES:
                    raise
                log.warning("cannot accept connections on %s: %s; retrying in %.1fs",
                            self.address, exc.strerror, RETRY_AFTER)  # fmt: skip
                self._loop.remove_reader(self._sock.fileno())
                self._retry = self._loop.call_later(RETRY_AFTER, self._resume)
                return
            self._adopt(conn)

    def _resume(self) -> None:
        self._retry = None
        self._loop.add_reader(self._sock.fileno(), self._accept)

    def _adopt(self, conn: socket.socket) -> None:
        chooser = self._chooser
        adoption: asyncio.Task[object]
        if chooser is not None and chooser.peeks():
            adoption = self._loop.create_task(self._adopt_after_hello(conn, chooser))
        else:
            adoption = self._loop.create_task(
                self._loop.connect_accepted_socket(
                    self._factory,
                    conn,
                    ssl=self._ssl,
                    ssl_handshake_timeout=self._handshake_timeout,
                )
            )
        self._adopting.add(adoption)
        adoption.add_done_callback(self._adopted)

    async def _adopt_after_hello(self, conn: socket.socket, chooser: HelloChooser) -> None:
        """Peek at the ClientHello's server name (within the handshake timeout), then hand the
        socket over with the listening context it picks: the hello is still unread."""
        try:
            async with asyncio.timeout(self._handshake_timeout):
                hello = await self._peek_hello(conn)
        except (TimeoutError, OSError):
            hello = None
        if hello is None:
            conn.close()  # gone, or silent for the whole handshake timeout
            return
        context = chooser.for_server_name(server_name(hello) if hello else None)
        await self._loop.connect_accepted_socket(
            self._factory, conn, ssl=context, ssl_handshake_timeout=self._handshake_timeout
        )

    async def _peek_hello(self, conn: socket.socket) -> bytes | None:
        """The first TLS record, unread; b"" for bytes that are none (the handshake then fails
        as it would have), None when the client closed first."""
        pause = PEEK_PAUSE
        while True:
            await self._readable(conn)
            try:
                data = conn.recv(RECORD_LIMIT, socket.MSG_PEEK)
            except (BlockingIOError, InterruptedError):
                continue
            if not data:
                return None
            length = record_length(data)
            if length == 0:
                return b""
            if length is not None and len(data) >= length:
                return data[:length]
            await asyncio.sleep(pause)
            pause = min(pause * 2, PEEK_PAUSE_LIMIT)

    async def _readable(self, conn: socket.socket) -> None:
        ready: asyncio.Future[None] = self._loop.create_future()
        descriptor = conn.fileno()
        self._loop.add_reader(descriptor, _settle, ready)
        try:
            await ready
        finally:
            self._loop.remove_reader(descriptor)

    def _adopted(self, adoption: asyncio.Task[object]) -> None:
        self._adopting.discard(adoption)
        if not adoption.cancelled() and (exc := adoption.exception()) is not None:
            # A failed TLS handshake lands here, like any client that left early: not our fault.
            log.debug("connection dropped before it started: %r", exc)


def _settle(ready: asyncio.Future[None]) -> None:
    if not ready.done():
        ready.set_result(None)

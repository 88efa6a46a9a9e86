"""The TLS listener's look at the ClientHello: only while some host asks for client
certificates, whatever way the hello arrives, and never holding a connection past the handshake
timeout (docs/behaviour.md, "Client certificate authentication")."""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import AsyncIterator, Iterator

import pytest

from proxy.core.values import Address
from proxy.dataplane.listener import Listener
from proxy.system.cert_chain import load_cert_chain
from tests.certs import self_signed

TIMEOUT = 0.3


class Chooser:
    """A HelloChooser that records the server names it was asked about."""

    def __init__(self, context: ssl.SSLContext, peeking: bool = True) -> None:
        self.context = context
        self.peeking = peeking
        self.names: list[str | None] = []

    def peeks(self) -> bool:
        return self.peeking

    def for_server_name(self, server_name: str | None) -> ssl.SSLContext:
        self.names.append(server_name)
        return self.context


class Recorder(asyncio.Protocol):
    def __init__(self, made: list[asyncio.BaseTransport]) -> None:
        self.made = made

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.made.append(transport)


@pytest.fixture
def server_context() -> ssl.SSLContext:
    chain, key = self_signed("a.test")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    load_cert_chain(context, chain, key)
    return context


def client_hello(name: str | None) -> bytes:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    client = context.wrap_bio(ssl.MemoryBIO(), outgoing := ssl.MemoryBIO(), server_hostname=name)
    with pytest.raises(ssl.SSLWantReadError):
        client.do_handshake()
    return outgoing.read()


@pytest.fixture
def made() -> Iterator[list[asyncio.BaseTransport]]:
    made: list[asyncio.BaseTransport] = []
    yield made
    for transport in made:
        transport.close()


@pytest.fixture
def chooser(server_context: ssl.SSLContext) -> Chooser:
    return Chooser(server_context)


@pytest.fixture
async def address(
    chooser: Chooser, made: list[asyncio.BaseTransport], server_context: ssl.SSLContext
) -> AsyncIterator[tuple[str, int]]:
    """Where a TLS listener that asks `chooser` accepts, with a short handshake timeout."""
    listener = Listener.bind(
        Address("127.0.0.1", 0),
        lambda: Recorder(made),
        ssl_context=server_context,
        ssl_handshake_timeout=TIMEOUT,
        hello_chooser=chooser,
    )
    listener.start_accepting()
    yield listener.address.host, listener.address.port
    listener.close()


async def first_answer(client: socket.socket) -> bytes:
    """The first bytes the server sends (its handshake answer starts with record type 22)."""
    client.setblocking(False)
    return await asyncio.get_running_loop().sock_recv(client, 65536)


async def closed_by_server(client: socket.socket) -> bytes:
    """What the client reads until the server closes (the loop runs meanwhile); closing with
    bytes unread resets the connection instead."""
    loop = asyncio.get_running_loop()
    client.setblocking(False)
    received = b""
    try:
        while chunk := await loop.sock_recv(client, 65536):
            received += chunk
    except ConnectionResetError:
        pass
    return received


async def test_a_hello_in_pieces_is_read_whole_before_the_handshake(
    chooser: Chooser, address: tuple[str, int]
) -> None:
    hello = client_hello("a.test")
    with socket.create_connection(address) as client:
        client.sendall(hello[:7])  # the record header and two bytes of the hello
        for _ in range(20):
            await asyncio.sleep(0.005)
        assert chooser.names == []  # still waiting for the rest
        client.sendall(hello[7:])
        assert (await first_answer(client))[:1] == b"\x16"  # the hello was not eaten
    assert chooser.names == ["a.test"]


async def test_a_hello_without_server_name_and_bytes_that_are_no_tls(
    chooser: Chooser, address: tuple[str, int]
) -> None:
    with socket.create_connection(address) as client:
        client.sendall(client_hello(None))
        assert (await first_answer(client))[:1] == b"\x16"
    with socket.create_connection(address) as client:
        client.sendall(b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")
        await closed_by_server(client)  # the handshake fails, as without the look
    assert chooser.names == [None, None]


async def test_silent_and_departed_clients_are_let_go(
    chooser: Chooser, address: tuple[str, int], made: list[asyncio.BaseTransport]
) -> None:
    with socket.create_connection(address) as silent:
        assert await closed_by_server(silent) == b""  # after the handshake timeout
    with socket.create_connection(address) as partial:
        partial.sendall(client_hello("a.test")[:20])
        assert await closed_by_server(partial) == b""  # a hello that never completes
    socket.create_connection(address).close()  # departed at once
    for _ in range(20):
        await asyncio.sleep(0.005)
    assert chooser.names == [] and made == []


async def test_without_hosts_asking_nothing_is_peeked(
    chooser: Chooser, address: tuple[str, int]
) -> None:
    chooser.peeking = False
    with socket.create_connection(address) as client:
        client.sendall(client_hello("a.test"))
        assert (await first_answer(client))[:1] == b"\x16"
    assert chooser.names == []  # handed over at once, with the listener's own context

"""The data-plane listener: every queued connection is taken when the socket is readable, and
running out of descriptors pauses accepting instead of spinning or crashing."""

from __future__ import annotations

import asyncio
import logging
import resource
import socket
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from proxy.core.values import Address
from proxy.dataplane.listener import RETRY_AFTER, Listener

QUEUED = 100


class Recorder(asyncio.Protocol):
    def __init__(self, made: list[asyncio.BaseTransport]) -> None:
        self.made = made

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.made.append(transport)


def queue_clients(address: Address, count: int) -> list[socket.socket]:
    """Blocking connects: each completes in the kernel's accept queue while the loop sits still."""
    return [socket.create_connection((address.host, address.port)) for _ in range(count)]


@contextmanager
def descriptors_up_to(highest: int) -> Iterator[None]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (highest + 1, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


async def test_a_burst_is_accepted_in_a_few_loop_turns_not_one_per_turn() -> None:
    made: list[asyncio.BaseTransport] = []
    listener = Listener.bind(Address("127.0.0.1", 0), lambda: Recorder(made))
    listener.start_accepting()
    clients = queue_clients(listener.address, QUEUED)
    try:
        # uvloop's own server needs a loop turn per queued connection: 100 turns, not 5.
        for _ in range(5):
            await asyncio.sleep(0)
        assert len(made) == QUEUED
        listener.close()
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((listener.address.host, listener.address.port)).close()
    finally:
        for client in clients:
            client.close()
        for transport in made:
            transport.close()


async def test_out_of_descriptors_pauses_accepting_then_takes_the_rest(
    caplog: pytest.LogCaptureFixture,
) -> None:
    made: list[asyncio.BaseTransport] = []
    listener = Listener.bind(Address("127.0.0.1", 0), lambda: Recorder(made))
    listener.start_accepting()
    clients = queue_clients(listener.address, 10)
    spare = socket.socket()  # the lowest free descriptor: the limit lets one more open after it
    try:
        with caplog.at_level(logging.WARNING, "sticky_proxy"), descriptors_up_to(spare.fileno()):
            spare.close()
            await asyncio.sleep(RETRY_AFTER / 2)
            assert len(made) <= 1
            warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
            # once, not once per loop turn: the listener stopped watching the socket
            assert len(warnings) == 1
            assert "cannot accept connections on 127.0.0.1:" in warnings[0]
            assert "Too many open files" in warnings[0]
        async with asyncio.timeout(RETRY_AFTER * 4):
            while len(made) < len(clients):
                await asyncio.sleep(0.01)
        assert len(made) == len(clients)
    finally:
        listener.close()
        for client in clients:
            client.close()
        for transport in made:
            transport.close()

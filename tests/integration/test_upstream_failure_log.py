"""Failed upstream tries in the log, through a real proxy in front of a port nobody listens on."""

from __future__ import annotations

import logging
import socket

import pytest

from proxy.core.model import Endpoint
from tests.integration.cluster import get
from tests.integration.conftest import StartProxy


def closed_port() -> int:
    """A loopback port that refuses connections: bound once, then closed."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_a_refused_endpoint_is_logged_once_a_second_with_its_address_and_pod(
    proxy: StartProxy, caplog: pytest.LogCaptureFixture
) -> None:
    port = closed_port()
    server = await proxy([Endpoint("127.0.0.1", port, pod="web-0")], None)
    with caplog.at_level(logging.INFO, "sticky_proxy"):
        for _ in range(5):
            assert (await get(server)).status == 502
    lines = [r for r in caplog.records if r.name == "sticky_proxy.upstream"]
    assert [(r.levelno, r.getMessage()) for r in lines] == [
        (
            logging.WARNING,
            f"upstream 127.0.0.1:{port} (pod web-0, cluster static) failed (connect): "
            "Connection refused",
        )
    ]  # five failures within a second: one line

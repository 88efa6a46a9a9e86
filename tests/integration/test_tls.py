"""TLS termination over real sockets: default certificate, SNI from the snapshot, reloads,
https-only cookies and forwarding headers, ssl-redirect."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from proxy.app.runtime import ProxyServer
from proxy.app.settings import ServeSettings
from proxy.core.affinity import build_cluster
from proxy.core.model import Affinity, PathType, TlsCertificate
from proxy.core.routing import Route, Snapshot
from proxy.core.values import Address
from tests.certs import tls_certificate
from tests.integration.conftest import StartUpstreams
from tests.integration.harness import Upstream, raw_request

StartTls = Callable[..., Awaitable[ProxyServer]]
ANY_LOOPBACK_PORT = Address("127.0.0.1", 0)


@pytest.fixture
async def tls_proxy() -> AsyncIterator[StartTls]:
    started: list[ProxyServer] = []

    async def start(
        snapshot: Snapshot,
        default: TlsCertificate | None = None,
        https_port: int = 443,
        tls_listen: Address = ANY_LOOPBACK_PORT,
        tls_on_demand: bool = False,
    ) -> ProxyServer:
        settings = ServeSettings(
            listen=Address("127.0.0.1", 0),
            metrics_listen=None,
            tls_listen=tls_listen,
            tls_on_demand=tls_on_demand,
            tls_default=default,
            https_port=https_port,
        )
        server = ProxyServer(settings, snapshot)
        await server.start()
        started.append(server)
        return server

    yield start
    for server in started:
        await server.stop(grace=0.2)


def snapshot(
    up: Upstream, *certificates: TlsCertificate, redirect: bool = False, keep_slash: bool = False
) -> Snapshot:
    cluster = build_cluster("shop-web-80", [up.endpoint], Affinity())
    routes = tuple(
        Route(host, "/", PathType.PREFIX, cluster, True, "/", ssl_redirect=redirect,
              keeps_trailing_slash=keep_slash)
        for host in ("a.test", "x.b.test", "c.test")
    )  # fmt: skip
    return Snapshot(routes, certificates=certificates)


async def https_get(
    server: ProxyServer, server_name: str | None, trust: TlsCertificate, host: str | None = None
) -> bytes:
    """GET / over TLS with SNI `server_name`, trusting only `trust` (and checking the name only
    when the request's Host is the SNI name); the raw answer."""
    assert server.tls_address is not None
    context = ssl.create_default_context(cadata=trust.chain.decode())
    context.check_hostname = server_name is not None and host is None
    reader, writer = await asyncio.open_connection(
        server.tls_address.host,
        server.tls_address.port,
        ssl=context,
        server_hostname=server_name or "",
    )
    writer.write(
        b"GET /?q=1 HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n"
        % (host or server_name or "a.test").encode()
    )
    try:
        return await asyncio.wait_for(reader.read(), 5)
    finally:
        writer.close()


async def test_sni_picks_the_certificate_of_each_host(
    upstreams: StartUpstreams, tls_proxy: StartTls
) -> None:
    (up,) = await upstreams(1)
    a = tls_certificate("Secret shop/a", "a.test")
    wild = tls_certificate("Secret shop/wild", "*.b.test")
    default = tls_certificate("--tls-cert", names=("default.test", "127.0.0.1"))
    server = await tls_proxy(snapshot(up, a, wild), default)
    assert (await https_get(server, "a.test", a)).startswith(b"HTTP/1.1 200 ")
    assert (await https_get(server, "x.b.test", wild)).startswith(b"HTTP/1.1 200 ")
    # no certificate of its own, and no SNI at all: the default certificate
    assert (await https_get(server, "c.test", default, host="c.test")).startswith(b"HTTP/1.1 200 ")
    assert (await https_get(server, None, default, host="c.test")).startswith(b"HTTP/1.1 200 ")
    with pytest.raises(ssl.SSLCertVerificationError):
        await https_get(server, "a.test", wild)  # a.test is not served with the wildcard


async def test_https_sets_secure_cookies_and_forwarded_proto(
    upstreams: StartUpstreams, tls_proxy: StartTls
) -> None:
    (up,) = await upstreams(1)
    a = tls_certificate("Secret shop/a", "a.test")
    server = await tls_proxy(snapshot(up, a))
    answer = await https_get(server, "a.test", a)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert b"; Path=/; Secure; HttpOnly" in head
    headers = {k.lower(): v for k, v in json.loads(body)["headers"]}
    assert headers["x-forwarded-proto"] == "https"
    assert server.tls_address is not None
    assert headers["x-forwarded-port"] == str(server.tls_address.port)


async def test_without_a_certificate_for_the_name_the_handshake_is_refused(
    upstreams: StartUpstreams, tls_proxy: StartTls
) -> None:
    (up,) = await upstreams(1)
    a = tls_certificate("Secret shop/a", "a.test")
    server = await tls_proxy(snapshot(up, a))  # no default certificate
    with pytest.raises((ssl.SSLError, ConnectionError)):
        await https_get(server, "c.test", a)
    assert (await https_get(server, "a.test", a)).startswith(b"HTTP/1.1 200 ")


async def test_a_new_snapshot_brings_new_certificates_without_a_restart(
    upstreams: StartUpstreams, tls_proxy: StartTls
) -> None:
    (up,) = await upstreams(1)
    old = tls_certificate("Secret shop/a", "a.test")
    new = tls_certificate("Secret shop/a", "a.test")  # renewed: a new key and certificate
    server = await tls_proxy(snapshot(up, old))
    assert (await https_get(server, "a.test", old)).startswith(b"HTTP/1.1 200 ")
    server.publisher.publish(snapshot(up, new))
    assert (await https_get(server, "a.test", new)).startswith(b"HTTP/1.1 200 ")
    with pytest.raises(ssl.SSLCertVerificationError):
        await https_get(server, "a.test", old)


async def test_a_certificate_that_does_not_load_fails_only_its_hosts(
    upstreams: StartUpstreams, tls_proxy: StartTls, caplog: pytest.LogCaptureFixture
) -> None:
    (up,) = await upstreams(1)
    a = tls_certificate("Secret shop/a", "a.test")
    broken = TlsCertificate("Secret shop/broken", ("x.b.test",), b"not a certificate", b"no key")
    server = await tls_proxy(snapshot(up, a, broken))
    with caplog.at_level(logging.ERROR, logger="sticky_proxy.tls"):
        for _ in range(3):
            with pytest.raises((ssl.SSLError, ConnectionError)):
                await https_get(server, "x.b.test", a)
    assert (await https_get(server, "a.test", a)).startswith(b"HTTP/1.1 200 ")
    said = [r.message for r in caplog.records if "Secret shop/broken" in r.message]
    assert len(said) == 1, said


@pytest.mark.parametrize(
    ("https_port", "location"),
    [(443, b"https://a.test/?q=1"), (8443, b"https://a.test:8443/?q=1")],
)
async def test_ssl_redirect_sends_plain_http_to_https(
    upstreams: StartUpstreams, tls_proxy: StartTls, https_port: int, location: bytes
) -> None:
    (up,) = await upstreams(1)
    a = tls_certificate("Secret shop/a", "a.test")
    server = await tls_proxy(snapshot(up, a, redirect=True), https_port=https_port)
    plain = await raw_request(
        server, b"POST /?q=1 HTTP/1.1\r\nHost: a.test:8080\r\nContent-Length: 0\r\n"
        b"Connection: close\r\n\r\n",
    )  # fmt: skip
    assert plain.startswith(b"HTTP/1.1 308 ")
    assert b"\r\nLocation: " + location + b"\r\n" in plain
    assert up.requests == 0
    assert (await https_get(server, "a.test", a)).startswith(b"HTTP/1.1 200 ")  # no loop
    assert up.requests == 1


@pytest.mark.parametrize(
    ("target", "keep_slash", "location"),
    [
        (b"/shop/", False, b"https://a.test/shop"),  # ingress-nginx drops the last "/"
        (b"/", False, b"https://a.test"),
        (b"/shop/?q=/", False, b"https://a.test/shop/?q="),  # the last byte, query or not
        (b"/shop/", True, b"https://a.test/shop/"),  # preserve-trailing-slash: "true"
    ],
)
async def test_ssl_redirects_drop_a_trailing_slash_unless_told_to_keep_it(
    upstreams: StartUpstreams, tls_proxy: StartTls, target: bytes, keep_slash: bool,
    location: bytes,
) -> None:  # fmt: skip
    (up,) = await upstreams(1)
    a = tls_certificate("Secret shop/a", "a.test")
    server = await tls_proxy(snapshot(up, a, redirect=True, keep_slash=keep_slash))
    plain = await raw_request(
        server, b"GET %s HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n" % target
    )
    assert b"\r\nLocation: " + location + b"\r\n" in plain


def free_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as sock:
        port: int = sock.getsockname()[1]
        return port


async def test_an_on_demand_tls_port_is_bound_when_the_first_certificate_loads(
    upstreams: StartUpstreams, tls_proxy: StartTls
) -> None:
    (up,) = await upstreams(1)
    port = free_port()
    server = await tls_proxy(
        snapshot(up), tls_listen=Address("127.0.0.1", port), tls_on_demand=True
    )
    plain = b"GET / HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n"
    assert (await raw_request(server, plain)).startswith(b"HTTP/1.1 200 ")
    assert server.tls_address is None
    with pytest.raises(ConnectionRefusedError):  # nothing to serve yet: the port stays free
        socket.create_connection(("127.0.0.1", port)).close()
    a = tls_certificate("Secret shop/a", "a.test")
    server.publisher.publish(snapshot(up, a))
    assert server.tls_address == Address("127.0.0.1", port)
    assert (await https_get(server, "a.test", a)).startswith(b"HTTP/1.1 200 ")


async def test_an_on_demand_tls_port_that_is_taken_is_one_error_and_http_goes_on(
    upstreams: StartUpstreams, tls_proxy: StartTls, caplog: pytest.LogCaptureFixture
) -> None:
    (up,) = await upstreams(1)
    with socket.create_server(("127.0.0.1", 0)) as taken:  # another program's port
        port = taken.getsockname()[1]
        server = await tls_proxy(
            snapshot(up), tls_listen=Address("127.0.0.1", port), tls_on_demand=True
        )
        with caplog.at_level(logging.INFO, logger="sticky_proxy"):
            server.publisher.publish(snapshot(up, tls_certificate("Secret shop/a", "a.test")))
            server.publisher.publish(snapshot(up, tls_certificate("Secret shop/a", "a.test")))
        errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
        assert errors == [
            f"TLS on 127.0.0.1:{port} not opened: Address already in use; plain HTTP only"
        ]
        assert server.tls_address is None
        plain = b"GET / HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n"
        assert (await raw_request(server, plain)).startswith(b"HTTP/1.1 200 ")

"""ingress-nginx's custom-http-errors, default-backend and disable-proxy-intercept-errors e2e cases
(test/e2e/annotations/customhttperrors.go, default_backend.go, disableproxyintercepterrors.go),
each named after the Go test it mirrors, from a manifest file through a real proxy to real
upstreams; then clients and backends that try to break the error pages
(docs/behaviour.md, "Custom error pages").

`httpbun` is an upstream that answers `/status/<code>` with that code (as the Go tests' httpbun);
`echo` is the default backend, which echoes the headers it was sent as JSON (as their echo).
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from proxy.app.runtime import ProxyServer
from tests.integration.cluster import (
    Obj,
    Pods,
    endpoint_slice,
    ingress,
    path,
    reload_after,
    rule,
    service,
    write_manifest,
)
from tests.integration.conftest import StartManifestProxy
from tests.integration.harness import Upstream, url

HOST = "customerrors.foo.com"


@dataclass
class StatusApp:
    """httpbun's /status/<code>: answers that code with a body of its own; `requests` lists the
    paths asked for. `pod` is it as a Service's endpoint."""

    pod: Upstream
    requests: list[str] = field(default_factory=list)


async def start_status_app(host: str = "127.0.0.20") -> StatusApp:
    requests: list[str] = []

    async def status(request: web.Request) -> web.Response:
        requests.append(request.raw_path)
        code = int(request.match_info["code"])
        return web.Response(status=code, text=f"upstream says {code}")

    app = web.Application()
    app.router.add_route("*", "/status/{code}", status)
    app.router.add_route("*", "/{tail:.*}", status_of_root)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    sock = socket.create_server((host, 0))
    await web.SockSite(runner, sock).start()
    return StatusApp(Upstream("httpbun", runner, sock.getsockname()[1], host=host), requests)


async def status_of_root(request: web.Request) -> web.Response:
    await request.read()
    return web.Response(status=404, text="root of a status app")


@pytest.fixture
async def httpbun() -> AsyncIterator[StatusApp]:
    app = await start_status_app()
    yield app
    await app.pod.stop()


@pytest.fixture
async def echo(pods: Pods) -> Upstream:
    (started,) = await pods.start(1)
    return started


@pytest.fixture
def manifest(tmp_path: Path) -> Path:
    return tmp_path / "cluster.yaml"


def world(httpbun: StatusApp | None, echo: Upstream | None, *ingresses: Obj) -> list[Obj]:
    """The Ingresses, Service `httpbun` (to the status app) and Service `echo` (the default
    backend), each with a slice of its one pod when given, none when not."""
    return [
        *ingresses,
        service("httpbun"),
        endpoint_slice([httpbun.pod] if httpbun else [], "httpbun"),
        service("echo"),
        endpoint_slice([echo] if echo else [], "echo"),
    ]


def errors_ingress(name: str = HOST, where: str = "/", **annotations: str) -> Obj:
    return ingress(name, rule(HOST, path(where, "httpbun")), **annotations)


@dataclass(frozen=True)
class Reply:
    status: int
    body: str
    echoed: dict[str, str]  # the headers the default backend saw, lower-case; {}: it did not answer
    echoed_path: str | None = None
    echoed_method: str | None = None
    echoed_body_size: int | None = None


async def ask(
    server: ProxyServer,
    target: str,
    method: str = "GET",
    headers: dict[str, str] | None = None,
    data: bytes | None = None,
) -> Reply:
    sent = {"Host": HOST, **(headers or {})}
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, url(server, target), headers=sent, data=data) as response,
    ):
        if response.content_type != "application/json":
            return Reply(response.status, await response.text(), {})
        echoed: dict[str, Any] = await response.json()
        seen = {name.lower(): value for name, value in echoed["headers"]}
        return Reply(
            response.status,
            "",
            seen,
            echoed["path_qs"],
            echoed["method"],
            echoed["body_size"],
        )


async def serve(
    manifest: Path, manifest_proxy: StartManifestProxy, objects: list[Obj]
) -> ProxyServer:
    write_manifest(manifest, objects)
    return await manifest_proxy(manifest)


# --- test/e2e/annotations/customhttperrors.go ---------------------------------------------------


async def test_custom_http_errors_configures_nginx_correctly(
    manifest: Path, manifest_proxy: StartManifestProxy, httpbun: StatusApp, echo: Upstream
) -> None:
    """The Go test reads the nginx config (proxy_intercept_errors, error_page, the @custom_
    locations) after each change; here, what those do to answers. Without default-backend the
    errors go to the built-in default backend, which answers 404."""
    codes = errors_ingress(custom_http_errors="404,500")
    server = await serve(manifest, manifest_proxy, world(httpbun, echo, codes))
    assert await ask(server, "/status/404") == Reply(404, "404 Not Found\n", {})
    assert await ask(server, "/status/500") == Reply(404, "404 Not Found\n", {})
    assert await ask(server, "/status/503") == Reply(503, "upstream says 503", {})  # not listed
    # updating configuration when only custom-http-error value changes
    codes = errors_ingress(custom_http_errors="503")
    assert await reload_after(server, lambda: write_manifest(manifest, world(httpbun, echo, codes)))
    assert await ask(server, "/status/404") == Reply(404, "upstream says 404", {})
    assert await ask(server, "/status/503") == Reply(404, "404 Not Found\n", {})
    # ignoring duplicate values (503 in this case) per server: another Ingress of the host
    # has codes of its own for its own path
    other = errors_ingress(f"{HOST}-else", "/else", custom_http_errors="404, 503")
    assert await reload_after(
        server, lambda: write_manifest(manifest, world(httpbun, echo, codes, other))
    )
    assert (await ask(server, "/else/status/404")).body == "404 Not Found\n"
    assert (await ask(server, "/status/404")).body == "upstream says 404"
    # using the custom default-backend from annotation for upstream
    codes = errors_ingress(custom_http_errors="503", default_backend="echo")
    assert await reload_after(
        server, lambda: write_manifest(manifest, world(httpbun, echo, codes, other))
    )
    reply = await ask(server, "/status/503?x=1", headers={"Accept": "text/html"})
    assert reply.status == 200  # the default backend's own status: `error_page 503 = @custom`
    assert reply.echoed_path == "/"  # `rewrite (.*) / break`
    assert {name: reply.echoed.get(name) for name in _ERROR_HEADERS} == {
        "x-code": "503",
        "x-format": "text/html",
        "x-original-uri": "/status/503?x=1",
        "x-namespace": "default",
        "x-ingress-name": HOST,
        "x-service-name": "httpbun",
        "x-service-port": "80",
    }
    assert reply.echoed["host"] == HOST
    assert reply.echoed["x-request-id"]


_ERROR_HEADERS = (
    "x-code",
    "x-format",
    "x-original-uri",
    "x-namespace",
    "x-ingress-name",
    "x-service-name",
    "x-service-port",
)


# --- test/e2e/annotations/default_backend.go ----------------------------------------------------


async def test_should_use_a_custom_default_backend_as_upstream(
    manifest: Path, manifest_proxy: StartManifestProxy, echo: Upstream
) -> None:
    host = "default-backend"
    objects = [
        ingress(host, rule(host, path("/", "invalid")), default_backend="echo"),
        service("echo"),
        endpoint_slice([echo], "echo"),
    ]
    server = await serve(manifest, manifest_proxy, objects)
    async with (
        aiohttp.ClientSession() as session,
        session.get(
            url(server, "/alma/armud"),
            headers={"Host": host, "x-request-id": "something-unique"},
        ) as response,
    ):
        assert response.status == 200
        echoed = await response.json()
    seen = {name.lower(): value for name, value in echoed["headers"]}
    assert seen["x-code"] == "503"
    assert seen["x-ingress-name"] == host
    assert seen["x-service-name"] == "invalid"
    assert seen["x-request-id"] == "something-unique"
    assert echoed["path_qs"] == "/alma/armud"  # served as the location, not rewritten to /
    assert "x-original-uri" not in seen  # (nginx.tmpl sets it for error pages only)


# --- test/e2e/annotations/disableproxyintercepterrors.go ----------------------------------------


async def test_disable_proxy_intercept_errors_configures_nginx_correctly(
    manifest: Path, manifest_proxy: StartManifestProxy, httpbun: StatusApp, echo: Upstream
) -> None:
    host_ingress = errors_ingress(
        custom_http_errors="404", disable_proxy_intercept_errors="true", default_backend="echo"
    )
    server = await serve(manifest, manifest_proxy, world(httpbun, echo, host_ingress))
    reply = await ask(server, "/status/404", headers={"x-request-id": "proxy_intercept_errors"})
    assert reply == Reply(404, "upstream says 404", {})  # the upstream's own answer
    host_ingress = errors_ingress(
        custom_http_errors="404", disable_proxy_intercept_errors="false", default_backend="echo"
    )
    assert await reload_after(
        server, lambda: write_manifest(manifest, world(httpbun, echo, host_ingress))
    )
    reply = await ask(server, "/status/404", headers={"x-request-id": "proxy_intercept_errors"})
    assert reply.status == 200
    assert reply.echoed["x-code"] == "404"
    assert reply.echoed["x-ingress-name"] == HOST
    assert reply.echoed["x-service-name"] == "httpbun"
    assert reply.echoed["x-request-id"] == "proxy_intercept_errors"


async def test_disabled_interception_still_hands_over_the_proxy_s_own_errors(
    manifest: Path, manifest_proxy: StartManifestProxy, echo: Upstream
) -> None:
    """error_page applies to nginx's own answers whatever proxy_intercept_errors says: a
    Service whose endpoint refuses connections gives 502, which the default backend answers."""
    dead = await start_status_app("127.0.0.21")
    await dead.pod.stop()  # (its port is now closed)
    objects = world(
        dead,
        echo,
        errors_ingress(
            custom_http_errors="502", disable_proxy_intercept_errors="true", default_backend="echo"
        ),
    )
    server = await serve(manifest, manifest_proxy, objects)
    reply = await ask(server, "/status/200")
    assert reply.status == 200
    assert reply.echoed["x-code"] == "502"


# --- hostile cases and the rest of docs/behaviour.md, "Custom error pages" ----------------------


async def test_a_client_cannot_name_the_error_it_is_answered_for(
    manifest: Path, manifest_proxy: StartManifestProxy, httpbun: StatusApp, echo: Upstream
) -> None:
    """nginx's proxy_set_header replaces a client's X-Code and the rest: the default backend
    sees one of each, the proxy's."""
    objects = world(httpbun, echo, errors_ingress(custom_http_errors="404", default_backend="echo"))
    server = await serve(manifest, manifest_proxy, objects)
    forged = {
        "X-Code": "200",
        "X-Namespace": "kube-system",
        "X-Ingress-Name": "admin",
        "X-Service-Name": "secrets",
        "X-Service-Port": "1",
        "X-Original-URI": "/forged",
        "X-Format": "forged",
        "Accept": "application/json",
    }
    async with (
        aiohttp.ClientSession() as session,
        session.get(url(server, "/status/404"), headers={"Host": HOST, **forged}) as response,
    ):
        echoed = await response.json()
    pairs = [(name.lower(), value) for name, value in echoed["headers"]]
    for name in _ERROR_HEADERS:
        assert len([value for seen, value in pairs if seen == name]) == 1, name
    seen = dict(pairs)
    assert seen["x-code"] == "404"
    assert seen["x-namespace"] == "default"
    assert seen["x-ingress-name"] == HOST
    assert seen["x-service-name"] == "httpbun"
    assert seen["x-service-port"] == "80"
    assert seen["x-original-uri"] == "/status/404"
    assert seen["x-format"] == "application/json"


async def test_the_error_backend_s_own_errors_are_not_intercepted_again(
    manifest: Path, manifest_proxy: StartManifestProxy, httpbun: StatusApp
) -> None:
    """A default backend that answers a listed code itself (the status app answers / with 404)
    is asked once, and its answer goes to the client: nginx has no recursive error pages."""
    objects = [
        errors_ingress(custom_http_errors="404", default_backend="httpbun"),
        service("httpbun"),
        endpoint_slice([httpbun.pod], "httpbun"),
    ]
    server = await serve(manifest, manifest_proxy, objects)
    assert await ask(server, "/status/404") == Reply(404, "root of a status app", {})
    assert httpbun.requests == ["/status/404"]  # (the root's handler does not count itself)


async def test_a_failing_default_backend_gives_the_proxy_s_own_error(
    manifest: Path, manifest_proxy: StartManifestProxy, httpbun: StatusApp
) -> None:
    """The default backend's endpoint refuses connections: its 502 is the answer, handed to no
    one else (an error page of an error page would loop)."""
    dead = await start_status_app("127.0.0.22")
    await dead.pod.stop()
    objects = [
        errors_ingress(custom_http_errors="404,502", default_backend="echo"),
        service("httpbun"),
        endpoint_slice([httpbun.pod], "httpbun"),
        service("echo"),
        endpoint_slice([dead.pod], "echo"),
    ]
    server = await serve(manifest, manifest_proxy, objects)
    assert await ask(server, "/status/404") == Reply(502, "502 Bad Gateway\n", {})


async def test_a_default_backend_without_endpoints_gives_the_built_in_404(
    manifest: Path, manifest_proxy: StartManifestProxy, httpbun: StatusApp
) -> None:
    """As ingress-nginx: a default backend counts only with a ready endpoint."""
    objects = world(httpbun, None, errors_ingress(custom_http_errors="500", default_backend="echo"))
    server = await serve(manifest, manifest_proxy, objects)
    assert await ask(server, "/status/500") == Reply(404, "404 Not Found\n", {})
    assert await ask(server, "/status/200") == Reply(200, "upstream says 200", {})


async def test_an_intercepted_answer_drops_the_request_body(
    manifest: Path, manifest_proxy: StartManifestProxy, httpbun: StatusApp, echo: Upstream
) -> None:
    """A POST with a body larger than the proxy keeps for retries: the error backend is asked
    with the same method and no body, and the client's connection still gets its answer."""
    objects = world(httpbun, echo, errors_ingress(custom_http_errors="404", default_backend="echo"))
    server = await serve(manifest, manifest_proxy, objects)
    reply = await ask(server, "/status/404", method="POST", data=b"x" * 200_000)
    assert reply.status == 200
    assert (reply.echoed_method, reply.echoed_body_size) == ("POST", 0)
    assert reply.echoed["x-code"] == "404"


async def test_a_head_request_s_error_page_has_no_body(
    manifest: Path, manifest_proxy: StartManifestProxy, httpbun: StatusApp, echo: Upstream
) -> None:
    objects = world(httpbun, echo, errors_ingress(custom_http_errors="404", default_backend="echo"))
    server = await serve(manifest, manifest_proxy, objects)
    async with (
        aiohttp.ClientSession() as session,
        session.head(url(server, "/status/404"), headers={"Host": HOST}) as response,
    ):
        assert response.status == 200
        assert response.content_type == "application/json"  # the default backend's head
        assert await response.read() == b""
    assert (await ask(server, "/status/404")).echoed["x-code"] == "404"  # (the connection pool)


async def test_the_proxy_s_own_403_is_an_error_page_too(
    manifest: Path, manifest_proxy: StartManifestProxy, httpbun: StatusApp, echo: Upstream
) -> None:
    """A deny list's 403 comes from the location's access phase, where nginx's error_page
    applies as to any answer of the location."""
    objects = world(
        httpbun,
        echo,
        errors_ingress(
            custom_http_errors="403", default_backend="echo", denylist_source_range="127.0.0.1"
        ),
    )
    server = await serve(manifest, manifest_proxy, objects)
    reply = await ask(server, "/status/200")
    assert reply.status == 200
    assert reply.echoed["x-code"] == "403"


async def test_a_kept_alive_connection_carries_on_after_error_pages(
    manifest: Path, manifest_proxy: StartManifestProxy, httpbun: StatusApp, echo: Upstream
) -> None:
    """The intercepted answer's upstream connection is dropped, not the client's: the next
    requests on it are answered in turn, error pages or not."""
    objects = world(httpbun, echo, errors_ingress(custom_http_errors="404", default_backend="echo"))
    server = await serve(manifest, manifest_proxy, objects)
    connector = aiohttp.TCPConnector(limit=1)
    seen = []
    async with aiohttp.ClientSession(connector=connector) as session:
        for target in ("/status/404", "/status/200", "/status/404"):
            async with session.get(url(server, target), headers={"Host": HOST}) as response:
                seen.append((response.status, await response.text()))
                assert response.headers.get("Connection", "keep-alive") == "keep-alive"
    assert [status for status, _ in seen] == [200, 200, 200]
    assert '"x-code"' in seen[0][1].lower() and seen[1][1] == "upstream says 200"
    assert echo.requests == 2 and len(echo.transports) == 1  # (the proxy kept its own too)

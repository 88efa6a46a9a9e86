"""External authentication through a real proxy: ingress-nginx's e2e cases about auth-url
(test/e2e/annotations/auth.go), each named after the Go test it mirrors, against a small auth
service playing httpbin's part; then the hostile and concurrent cases issue 18 names
(docs/behaviour.md, "External authentication"): forged auth response headers, what the auth
service is sent, statuses, a slow or absent auth service, clients that leave, pipelining, and
an https auth URL."""

from __future__ import annotations

import asyncio
import base64
import socket
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import aiohttp
import pytest
from aiohttp import web
from multidict import CIMultiDictProxy

from proxy.app.runtime import ProxyServer
from proxy.system.cert_chain import load_cert_chain
from tests.certs import self_signed
from tests.integration.cluster import (
    NAMESPACE,
    Pods,
    endpoint_slice,
    ingress,
    path,
    reload_after,
    rule,
    service,
    until,
    web_app,
    write_manifest,
)
from tests.integration.conftest import StartManifestProxy
from tests.integration.harness import connect, url

HOST = "auth"  # the Go tests' authHost
DIFFERENT_HOST = "different"  # their differentHost
USER = ("user", "password")


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@dataclass
class Seen:
    method: str
    path_qs: str
    headers: list[tuple[str, str]]
    body: bytes


@dataclass
class AuthService:
    """httpbin's endpoints the Go tests use, and a few more: `/basic-auth/{user}/{password}`,
    `/cookies/set/{name}/{value}`, `/status/{code}`, `/response-headers?Name=value` (200 with
    those headers), `/hold` (200 once `release` is set; `holding` counts the waiting ones).
    `seen` records every request; `transports` the connections they came on."""

    port: int
    runner: web.AppRunner
    host: str = "127.0.0.1"
    seen: list[Seen] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    holding: int = 0
    transports: list[asyncio.BaseTransport] = field(default_factory=list)

    async def stop(self) -> None:
        """As the Go tests delete httpbin's Deployment: gone, its port closed."""
        self.release.set()
        await self.runner.cleanup()

    def url(self, path: str, scheme: str = "http") -> str:
        return f"{scheme}://{self.host}:{self.port}{path}"

    def headers(self, index: int = -1) -> dict[str, str]:
        return {name.lower(): value for name, value in self.seen[index].headers}


async def start_auth_service(tls: ssl.SSLContext | None = None) -> AuthService:
    service: AuthService

    async def record(request: web.Request) -> None:
        body = await request.read()
        headers = [(k.decode(), v.decode()) for k, v in request.raw_headers]
        service.seen.append(Seen(request.method, request.raw_path, headers, body))
        if request.transport is not None:
            service.transports.append(request.transport)

    async def basic_auth(request: web.Request) -> web.Response:
        await record(request)
        expected = basic(request.match_info["user"], request.match_info["password"])
        if request.headers.get("Authorization") == expected:
            return web.json_response({"authenticated": True})
        return web.Response(status=401, headers={"WWW-Authenticate": 'Basic realm="Fake Realm"'})

    async def set_cookie(request: web.Request) -> web.Response:
        await record(request)
        name, value = request.match_info["name"], request.match_info["value"]
        return web.Response(text="OK", headers={"Set-Cookie": f"{name}={value}"})

    async def status(request: web.Request) -> web.Response:
        await record(request)
        code = int(request.match_info["code"])
        headers = {"Location": "/elsewhere"} if 300 <= code < 400 else {}
        return web.Response(status=code, headers=headers)

    async def response_headers(request: web.Request) -> web.Response:
        await record(request)
        response = web.Response(text="OK")
        for name, value in request.query.items():
            response.headers.add(name, value)
        return response

    async def hold(request: web.Request) -> web.Response:
        await record(request)
        service.holding += 1
        try:
            await service.release.wait()
        finally:
            service.holding -= 1
        return web.Response(text="OK")

    app = web.Application()
    app.router.add_route("*", "/basic-auth/{user}/{password}", basic_auth)
    app.router.add_route("*", "/cookies/set/{name}/{value}", set_cookie)
    app.router.add_route("*", "/status/{code}", status)
    app.router.add_route("*", "/response-headers", response_headers)
    app.router.add_route("*", "/hold", hold)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    sock = socket.create_server(("127.0.0.1", 0))
    await web.SockSite(runner, sock, ssl_context=tls).start()
    service = AuthService(sock.getsockname()[1], runner)
    return service


@pytest.fixture
async def auth() -> AsyncIterator[AuthService]:
    service = await start_auth_service()
    yield service
    if service.runner.server is not None:  # (not stopped by the test)
        await service.stop()


@dataclass(frozen=True)
class Reply:
    status: int
    headers: CIMultiDictProxy[str]
    pod_headers: list[tuple[str, str]] | None  # what the pod was sent; None: it was not asked
    pod_body_size: int = 0

    def pod_values(self, name: str) -> list[str]:
        assert self.pod_headers is not None
        return [value for key, value in self.pod_headers if key.lower() == name.lower()]


async def ask(
    server: ProxyServer,
    target: str = "/",
    *,
    host: str = HOST,
    method: str = "GET",
    user: tuple[str, str] | None = None,
    data: bytes | None = None,
    headers: list[tuple[str, str]] | None = None,
) -> Reply:
    sent = [("Host", host), *(headers or [])]
    if user is not None:
        sent.append(("Authorization", basic(*user)))
    async with (
        aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as session,
        session.request(
            method, url(server, target), headers=sent, data=data, allow_redirects=False
        ) as response,
    ):
        if response.content_type != "application/json":
            await response.read()
            return Reply(response.status, response.headers, None)
        echoed = await response.json()
        pod = [(name, value) for name, value in echoed["headers"]]
        return Reply(response.status, response.headers, pod, echoed["body_size"])


async def serve(
    tmp_path: Path,
    manifest_proxy: StartManifestProxy,
    pods: Pods,
    *rules: dict[str, object],
    **annotations: str,
) -> ProxyServer:
    """Ingress `web` (host `auth`, or `rules`) with `annotations`, before one pod."""
    if not pods.started:
        await pods.start(1)
    manifest = tmp_path / "cluster.yaml"
    write_manifest(manifest, web_app(pods.started, *(rules or [rule(HOST)]), **annotations))
    return await manifest_proxy(manifest)


def basic_auth_annotations(auth: AuthService, **more: str) -> dict[str, str]:
    """The Go context "when external authentication is configured"."""
    return {
        "auth_url": auth.url("/basic-auth/user/password"),
        "auth_signin": "http://$host/auth/start",
        **more,
    }


# --- "when external authentication is configured" ---------------------------------------------


async def test_should_return_status_code_200_when_signed_in(
    auth: AuthService, pods: Pods, tmp_path: Path, manifest_proxy: StartManifestProxy
) -> None:
    server = await serve(tmp_path, manifest_proxy, pods, **basic_auth_annotations(auth))
    reply = await ask(server, user=USER)
    assert reply.status == 200
    assert reply.pod_headers is not None


async def test_should_redirect_to_signin_url_when_not_signed_in(
    auth: AuthService, pods: Pods, tmp_path: Path, manifest_proxy: StartManifestProxy
) -> None:
    server = await serve(tmp_path, manifest_proxy, pods, **basic_auth_annotations(auth))
    reply = await ask(server, "/?a=b&c=d")
    assert reply.status == 302
    expected = f"http://{HOST}/auth/start?rd=http://{HOST}{quote('/?a=b&c=d', safe='')}"
    assert reply.headers["Location"] == expected
    assert reply.pod_headers is None
    assert len(auth.seen) == 1


async def test_keeps_processing_new_ingresses_even_if_one_of_the_existing_ingresses_is_misconfigured(  # noqa: E501
    auth: AuthService, pods: Pods, tmp_path: Path, manifest_proxy: StartManifestProxy
) -> None:
    await pods.start(1)
    annotations = basic_auth_annotations(
        auth, auth_type="basic", auth_secret="something", auth_realm="test auth"
    )
    manifest = tmp_path / "cluster.yaml"
    write_manifest(
        manifest,
        [
            ingress("web", rule(HOST), **annotations),
            ingress("another", rule(DIFFERENT_HOST)),
            service(),
            endpoint_slice(pods.started),
        ],
    )
    server = await manifest_proxy(manifest)
    assert (await ask(server, host=DIFFERENT_HOST)).status == 200
    assert auth.seen == []  # (the other Ingress has no auth)


async def test_should_overwrite_foo_header_with_auth_response(
    auth: AuthService, pods: Pods, tmp_path: Path, manifest_proxy: StartManifestProxy
) -> None:
    annotations = basic_auth_annotations(auth, auth_response_headers="Foo")
    server = await serve(tmp_path, manifest_proxy, pods, **annotations)
    reply = await ask(server, user=USER, headers=[("Foo", "bar")])
    assert reply.status == 200
    assert reply.pod_values("Foo") == []  # the auth service sent none: the client's is gone


# --- "when external authentication is configured with a custom redirect param" ----------------


async def test_should_return_status_code_200_when_signed_in_with_a_custom_redirect_param(
    auth: AuthService, pods: Pods, tmp_path: Path, manifest_proxy: StartManifestProxy
) -> None:
    annotations = basic_auth_annotations(auth, auth_signin_redirect_param="orig")
    server = await serve(tmp_path, manifest_proxy, pods, **annotations)
    assert (await ask(server, user=USER)).status == 200


async def test_should_redirect_to_signin_url_when_not_signed_in_with_a_custom_redirect_param(
    auth: AuthService, pods: Pods, tmp_path: Path, manifest_proxy: StartManifestProxy
) -> None:
    annotations = basic_auth_annotations(auth, auth_signin_redirect_param="orig")
    server = await serve(tmp_path, manifest_proxy, pods, **annotations)
    reply = await ask(server, "/?a=b&c=d")
    assert reply.status == 302
    expected = f"http://{HOST}/auth/start?orig=http://{HOST}{quote('/?a=b&c=d', safe='')}"
    assert reply.headers["Location"] == expected


# --- "cookie set by external authentication server" -------------------------------------------


async def cookie_server(
    auth: AuthService, tmp_path: Path, manifest_proxy: StartManifestProxy, **more: str
) -> ProxyServer:
    """As the Go context: two Ingresses of one host with the same auth, `/` served and
    `/error` answering 503 (here: a Service without endpoints)."""
    annotations = {
        "auth_url": auth.url("/cookies/set/alma/armud"),
        "auth_signin": "http://$host/auth/start",
        **more,
    }
    pods = Pods()
    await pods.start(1)
    host = "auth-check-cookies"
    manifest = tmp_path / "cluster.yaml"
    write_manifest(
        manifest,
        [
            ingress("ok", rule(host, path("/")), **annotations),
            ingress("error", rule(host, path("/error", service="empty")), **annotations),
            service(),
            service("empty"),
            endpoint_slice(pods.started),
        ],
    )
    server = await manifest_proxy(manifest)
    server_pods.append(pods)
    return server


server_pods: list[Pods] = []


@pytest.fixture(autouse=True)
async def _stop_cookie_pods() -> AsyncIterator[None]:
    yield
    while server_pods:
        await server_pods.pop().stop()


async def test_user_retains_cookie_by_default(
    auth: AuthService, tmp_path: Path, manifest_proxy: StartManifestProxy
) -> None:
    server = await cookie_server(auth, tmp_path, manifest_proxy)
    reply = await ask(server, "/?a=b&c=d", host="auth-check-cookies")
    assert reply.status == 200
    assert "alma=armud" in reply.headers.getall("Set-Cookie")


async def test_user_does_not_retain_cookie_if_upstream_returns_error_status_code(
    auth: AuthService, tmp_path: Path, manifest_proxy: StartManifestProxy
) -> None:
    server = await cookie_server(auth, tmp_path, manifest_proxy)
    reply = await ask(server, "/error?a=b&c=d", host="auth-check-cookies")
    assert reply.status == 503
    assert "alma=armud" not in reply.headers.getall("Set-Cookie", [])


async def test_user_with_annotated_ingress_retains_cookie_if_upstream_returns_error_status_code(
    auth: AuthService, tmp_path: Path, manifest_proxy: StartManifestProxy
) -> None:
    server = await cookie_server(auth, tmp_path, manifest_proxy, auth_always_set_cookie="true")
    reply = await ask(server, "/error?a=b&c=d", host="auth-check-cookies")
    assert reply.status == 503
    assert "alma=armud" in reply.headers.getall("Set-Cookie")


# --- "with invalid auth-url should deny whole location" ---------------------------------------


async def test_should_return_503_location_was_denied(
    pods: Pods, tmp_path: Path, manifest_proxy: StartManifestProxy
) -> None:
    server = await serve(
        tmp_path, manifest_proxy, pods, rule(HOST, path("/denied-auth")),
        auth_url="https://invalid..auth.url",
    )  # fmt: skip
    assert (await ask(server, "/denied-auth")).status == 503


async def test_should_add_error_to_the_config(
    pods: Pods, tmp_path: Path, manifest_proxy: StartManifestProxy
) -> None:
    server = await serve(
        tmp_path, manifest_proxy, pods, rule(HOST, path("/denied-auth")),
        auth_url="https://invalid..auth.url",
    )  # fmt: skip
    snapshot = server.publisher.current
    assert snapshot is not None
    assert any(
        "could not parse auth-url annotation: invalid url host" in line
        for line in snapshot.warnings
    )


# --- issue 18: forged auth response headers ---------------------------------------------------


async def test_a_forged_auth_response_header_is_replaced_by_the_auth_services(
    auth: AuthService, pods: Pods, tmp_path: Path, manifest_proxy: StartManifestProxy
) -> None:
    server = await serve(
        tmp_path, manifest_proxy, pods,
        auth_url=auth.url("/response-headers?X-User=alice&X-Groups=staff"),
        auth_response_headers="X-User, X-Groups",
    )  # fmt: skip
    forged = [("X-User", "admin"), ("x-user", "root"), ("X-GROUPS", "wheel")]
    reply = await ask(server, headers=forged)
    assert reply.status == 200
    assert reply.pod_values("X-User") == ["alice"]
    assert reply.pod_values("X-Groups") == ["staff"]


async def test_a_forged_auth_response_header_the_auth_service_does_not_send_is_removed(
    auth: AuthService, pods: Pods, tmp_path: Path, manifest_proxy: StartManifestProxy
) -> None:
    server = await serve(
        tmp_path, manifest_proxy, pods,
        auth_url=auth.url("/response-headers?X-User=alice"),
        auth_response_headers="X-User,X-Admin",
    )  # fmt: skip
    reply = await ask(server, headers=[("X-Admin", "true"), ("x-admin", "yes")])
    assert reply.status == 200
    assert reply.pod_values("X-Admin") == []
    assert reply.pod_values("X-User") == ["alice"]


async def test_headers_not_named_in_auth_response_headers_stay_the_clients(
    auth: AuthService, pods: Pods, tmp_path: Path, manifest_proxy: StartManifestProxy
) -> None:
    """Only the named headers are copied: another header of the auth answer does not reach the
    pod, and the client's other headers do."""
    server = await serve(
        tmp_path, manifest_proxy, pods,
        auth_url=auth.url("/response-headers?X-User=alice&X-Other=auth"),
        auth_response_headers="X-User",
    )  # fmt: skip
    reply = await ask(server, headers=[("X-Other", "client")])
    assert reply.pod_values("X-Other") == ["client"]
    assert reply.pod_values("X-User") == ["alice"]


# --- what the auth service is sent ------------------------------------------------------------


async def test_the_subrequest_carries_the_auth_locations_headers_and_the_clients(
    auth: AuthService, pods: Pods, tmp_path: Path, manifest_proxy: StartManifestProxy
) -> None:
    server = await serve(tmp_path, manifest_proxy, pods, auth_url=auth.url("/status/200"))
    forged = [
        ("Cookie", "session=abc"),
        ("X-Forwarded-For", "6.6.6.6"),
        ("X-Real-IP", "6.6.6.6"),
        ("X-Original-URL", "http://evil/"),
        ("X-Sent-From", "me"),
        ("X-Custom", "kept"),
    ]
    reply = await ask(server, "/some/path?q=1", method="POST", data=b"the body", headers=forged)
    assert reply.status == 200
    assert reply.pod_body_size == len(b"the body")  # the pod gets the body...
    seen = auth.seen[-1]
    assert (seen.method, seen.path_qs, seen.body) == ("GET", "/status/200", b"")  # ...not auth
    sent = auth.headers()
    assert sent["host"] == "127.0.0.1"  # the auth URL's host name, without its port
    assert sent["x-original-url"] == f"http://{HOST}/some/path?q=1"
    assert sent["x-original-method"] == "POST"
    assert sent["x-sent-from"] == "nginx-ingress-controller"
    assert sent["x-real-ip"] == "127.0.0.1"
    assert sent["x-forwarded-for"] == "127.0.0.1"
    assert sent["x-auth-request-redirect"] == "/some/path?q=1"
    assert sent["cookie"] == "session=abc"
    assert sent["x-custom"] == "kept"
    assert "content-length" not in sent and "transfer-encoding" not in sent
    assert "x-original-uri" not in sent and "x-scheme" not in sent  # (only with auth-method)
    assert sent["x-request-id"] == reply.pod_values("X-Request-ID")[0]  # the request's own
    assert [name for name, _ in seen.headers].count("X-Forwarded-For") == 1


async def test_auth_method_and_auth_request_redirect(
    auth: AuthService, pods: Pods, tmp_path: Path, manifest_proxy: StartManifestProxy
) -> None:
    server = await serve(
        tmp_path, manifest_proxy, pods,
        auth_url=auth.url("/status/202"), auth_method="POST",
        auth_request_redirect="http://sign.in/?back=1",
    )  # fmt: skip
    assert (await ask(server, "/x?y=z")).status == 200
    seen = auth.seen[-1]
    assert seen.method == "POST"
    sent = auth.headers()
    assert sent["x-original-uri"] == "/x?y=z"
    assert sent["x-scheme"] == "http"
    assert sent["x-auth-request-redirect"] == "http://sign.in/?back=1"


async def test_auth_url_variables_are_expanded_per_request(
    auth: AuthService, pods: Pods, tmp_path: Path, manifest_proxy: StartManifestProxy
) -> None:
    server = await serve(
        tmp_path, manifest_proxy, pods,
        auth_url=auth.url("/status/200?host=$host&uri=$escaped_request_uri&m=$request_method"),
    )  # fmt: skip
    assert (await ask(server, "/a b?c=d".replace(" ", "%20"))).status == 200
    assert auth.seen[-1].path_qs == "/status/200?host=auth&uri=%2Fa%2520b%3Fc%3Dd&m=GET"


# --- the auth service's answer ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("auth_status", "client_status"),
    [(200, 200), (204, 200), (299, 200), (401, 401), (403, 403), (302, 500), (404, 500),
     (500, 500), (503, 500)],
)  # fmt: skip
async def test_the_auth_services_status_decides(
    *,
    auth_status: int,
    client_status: int,
    auth: AuthService,
    pods: Pods,
    tmp_path: Path,
    manifest_proxy: StartManifestProxy,
) -> None:
    server = await serve(
        tmp_path, manifest_proxy, pods, auth_url=auth.url(f"/status/{auth_status}")
    )
    reply = await ask(server)
    assert reply.status == client_status
    assert (reply.pod_headers is not None) == (client_status == 200)


async def test_a_401_without_signin_passes_the_challenge_on(
    auth: AuthService, pods: Pods, tmp_path: Path, manifest_proxy: StartManifestProxy
) -> None:
    server = await serve(
        tmp_path, manifest_proxy, pods, auth_url=auth.url("/basic-auth/user/password")
    )
    reply = await ask(server, user=("user", "wrong"))
    assert reply.status == 401
    assert reply.headers["WWW-Authenticate"] == 'Basic realm="Fake Realm"'


async def test_a_403_is_not_sent_to_signin(
    auth: AuthService, pods: Pods, tmp_path: Path, manifest_proxy: StartManifestProxy
) -> None:
    server = await serve(
        tmp_path, manifest_proxy, pods,
        auth_url=auth.url("/status/403"), auth_signin="http://$host/auth/start",
    )  # fmt: skip
    reply = await ask(server)
    assert reply.status == 403
    assert "Location" not in reply.headers


async def test_an_unreachable_auth_service_is_a_500(
    pods: Pods, tmp_path: Path, manifest_proxy: StartManifestProxy
) -> None:
    with socket.socket() as closed:  # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    server = await serve(tmp_path, manifest_proxy, pods, auth_url=f"http://127.0.0.1:{port}/auth")
    assert (await ask(server)).status == 500


async def test_an_auth_service_that_does_not_answer_in_time_is_a_500(
    auth: AuthService, pods: Pods, tmp_path: Path, manifest_proxy: StartManifestProxy
) -> None:
    server = await serve(
        tmp_path, manifest_proxy, pods, auth_url=auth.url("/hold"), proxy_read_timeout="1"
    )
    assert (await ask(server)).status == 500


async def test_an_https_auth_url_is_not_verified(
    pods: Pods, tmp_path: Path, manifest_proxy: StartManifestProxy
) -> None:
    """A self-signed certificate for another name: ingress-nginx's auth location does not
    verify it (proxy_ssl_verify off), and neither does sticky-proxy."""
    chain, key = self_signed("auth.elsewhere")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    load_cert_chain(context, chain, key)
    tls_auth = await start_auth_service(context)
    try:
        server = await serve(
            tmp_path, manifest_proxy, pods,
            auth_url=tls_auth.url("/response-headers?X-User=tls", scheme="https"),
            auth_response_headers="X-User",
        )  # fmt: skip
        reply = await ask(server)
        assert reply.status == 200
        assert reply.pod_values("X-User") == ["tls"]
    finally:
        await tls_auth.runner.cleanup()


# --- waiting for the auth service -------------------------------------------------------------


async def test_a_request_waiting_on_auth_does_not_hold_up_others(
    auth: AuthService, pods: Pods, tmp_path: Path, manifest_proxy: StartManifestProxy
) -> None:
    await pods.start(1)
    manifest = tmp_path / "cluster.yaml"
    write_manifest(
        manifest,
        [
            ingress("held", rule(HOST), auth_url=auth.url("/hold")),
            ingress("open", rule(DIFFERENT_HOST)),
            service(),
            endpoint_slice(pods.started),
        ],
    )
    server = await manifest_proxy(manifest)
    first = asyncio.ensure_future(ask(server, "/first"))
    await until(lambda: auth.holding == 1, "the auth service holding the first request")
    second = asyncio.ensure_future(ask(server, "/second"))
    await until(lambda: auth.holding == 2, "both subrequests under way at once")
    assert (await ask(server, host=DIFFERENT_HOST)).status == 200  # served meanwhile
    assert not first.done() and not second.done()
    auth.release.set()
    assert [(await first).status, (await second).status] == [200, 200]


async def test_a_client_that_leaves_cancels_its_subrequest(
    auth: AuthService, pods: Pods, tmp_path: Path, manifest_proxy: StartManifestProxy
) -> None:
    server = await serve(tmp_path, manifest_proxy, pods, auth_url=auth.url("/hold"))
    _, writer = await connect(server)
    writer.write(f"GET / HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode())
    await until(lambda: auth.holding == 1, "the subrequest")
    writer.close()
    (transport,) = auth.transports
    await until(transport.is_closing, "the subrequest's connection closed")
    assert len(auth.seen) == 1  # (and no other subrequest was made)


async def test_pipelined_requests_keep_their_order_behind_a_slow_auth(
    auth: AuthService, pods: Pods, tmp_path: Path, manifest_proxy: StartManifestProxy
) -> None:
    server = await serve(tmp_path, manifest_proxy, pods, auth_url=auth.url("/hold"))
    reader, writer = await connect(server)
    writer.write(
        f"GET /first HTTP/1.1\r\nHost: {HOST}\r\n\r\n"
        f"GET /second HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode()
    )
    await until(lambda: auth.holding == 1, "the first subrequest")
    auth.release.set()
    answers = b""
    while answers.count(b'"path_qs"') < 2:
        data = await reader.read(65536)
        assert data, "the proxy closed the connection"
        answers += data
    writer.close()
    assert answers.index(b'"/first"') < answers.index(b'"/second"')
    assert [seen.path_qs for seen in auth.seen] == ["/hold", "/hold"]


async def test_a_request_the_canary_serves_is_asked_about_as_the_main_ingress_says(
    auth: AuthService, pods: Pods, tmp_path: Path, manifest_proxy: StartManifestProxy
) -> None:
    """A canary Ingress's own annotations other than its canary-* ones are ignored by
    ingress-nginx: the location's auth is the main Ingress's."""
    main, canary = await pods.start(2)
    manifest = tmp_path / "cluster.yaml"
    write_manifest(
        manifest,
        [
            ingress("web", rule(HOST), auth_url=auth.url("/basic-auth/user/password")),
            ingress(
                "web-canary",
                rule(HOST, path(service="canary")),
                canary="true",
                canary_weight="100",
                auth_url=auth.url("/status/403"),  # not the location's: ignored
            ),
            service("web"),
            service("canary"),
            endpoint_slice([main]),
            endpoint_slice([canary], service_name="canary"),
        ],
    )
    server = await manifest_proxy(manifest)
    assert (await ask(server)).status == 401
    before = canary.requests
    assert (await ask(server, user=USER)).status == 200
    assert canary.requests == before + 1
    assert [seen.path_qs for seen in auth.seen] == ["/basic-auth/user/password"] * 2


# --- "when external authentication with caching is configured" --------------------------------

THIS_HOST, THAT_HOST = HOST, DIFFERENT_HOST


async def caching_server(
    auth: AuthService, pods: Pods, tmp_path: Path, manifest_proxy: StartManifestProxy
) -> ProxyServer:
    """As the Go context: Ingresses for /foo and /bar on two hosts, all with the same auth and
    the fixed cache key."""
    await pods.start(1)
    annotations = {
        "auth_url": auth.url("/basic-auth/user/password"),
        "auth_signin": "http://$host/auth/start",
        "auth_cache_key": "fixed",
        "auth_cache_duration": "200 201 401 30m",
    }
    objects = [
        ingress(f"{name}-{host}-ing", rule(host, path(f"/{name}")), **annotations)
        for host in (THIS_HOST, THAT_HOST)
        for name in ("foo", "bar")
    ]
    manifest = tmp_path / "cluster.yaml"
    write_manifest(manifest, [*objects, service(), endpoint_slice(pods.started)])
    return await manifest_proxy(manifest)


async def test_should_return_status_code_200_when_signed_in_after_auth_backend_is_deleted(
    auth: AuthService, pods: Pods, tmp_path: Path, manifest_proxy: StartManifestProxy
) -> None:
    server = await caching_server(auth, pods, tmp_path, manifest_proxy)
    assert (await ask(server, "/foo", user=USER)).status == 200
    await auth.stop()
    assert (await ask(server, "/foo", user=USER)).status == 200
    assert len(auth.seen) == 1


async def test_should_deny_login_for_different_location_on_same_server(
    auth: AuthService, pods: Pods, tmp_path: Path, manifest_proxy: StartManifestProxy
) -> None:
    server = await caching_server(auth, pods, tmp_path, manifest_proxy)
    assert (await ask(server, "/foo", user=USER)).status == 200
    await auth.stop()
    assert (await ask(server, "/foo", user=USER)).status == 200
    assert (await ask(server, "/bar", user=USER)).status == 500  # no answer kept for /bar


async def test_should_deny_login_for_different_servers(
    auth: AuthService, pods: Pods, tmp_path: Path, manifest_proxy: StartManifestProxy
) -> None:
    server = await caching_server(auth, pods, tmp_path, manifest_proxy)
    assert (await ask(server, "/foo", user=USER)).status == 200
    await auth.stop()
    assert (await ask(server, "/foo", user=USER)).status == 200
    assert (await ask(server, "/foo", host=THAT_HOST, user=USER)).status == 500


async def test_should_redirect_to_signin_url_when_not_signed_in_with_caching(
    auth: AuthService, pods: Pods, tmp_path: Path, manifest_proxy: StartManifestProxy
) -> None:
    """The Go test asks for / (which its Ingresses do not route here); /foo is theirs."""
    server = await caching_server(auth, pods, tmp_path, manifest_proxy)
    reply = await ask(server, "/foo?a=b&c=d")
    assert reply.status == 302
    expected = f"http://{HOST}/auth/start?rd=http://{HOST}{quote('/foo?a=b&c=d', safe='')}"
    assert reply.headers["Location"] == expected


async def test_a_cache_key_of_the_credentials_keeps_users_apart(
    auth: AuthService, pods: Pods, tmp_path: Path, manifest_proxy: StartManifestProxy
) -> None:
    """ingress-nginx's documented key, `$remote_user$http_authorization`: one user's answer
    never stands for another's request, and a refusal is kept too (401 is in the default
    durations)."""
    server = await serve(
        tmp_path, manifest_proxy, pods,
        auth_url=auth.url("/basic-auth/user/password"),
        auth_cache_key="$remote_user$http_authorization",
    )  # fmt: skip
    assert (await ask(server, user=USER)).status == 200
    assert (await ask(server, user=("user", "wrong"))).status == 401
    assert (await ask(server)).status == 401
    assert len(auth.seen) == 3
    for _ in range(3):
        assert (await ask(server, user=USER)).status == 200
        assert (await ask(server, user=("user", "wrong"))).status == 401
    assert len(auth.seen) == 3  # all from the cache


async def test_answers_with_set_cookie_or_no_store_are_not_kept(
    auth: AuthService, pods: Pods, tmp_path: Path, manifest_proxy: StartManifestProxy
) -> None:
    """nginx's proxy cache keeps no answer with Set-Cookie or Cache-Control no-store, and one
    with max-age for that long, whatever the durations say."""
    await pods.start(1)
    answers = {"cookie": "Set-Cookie=a=1", "no-store": "Cache-Control=no-store",
               "max-age": "Cache-Control=max-age=60"}  # fmt: skip
    objects = [
        ingress(
            name,
            rule(HOST, path(f"/{name}")),
            auth_url=auth.url(f"/response-headers?{query}"),
            auth_cache_key="fixed",
            auth_cache_duration="200 1s",
        )
        for name, query in answers.items()
    ]
    manifest = tmp_path / "cluster.yaml"
    write_manifest(manifest, [*objects, service(), endpoint_slice(pods.started)])
    server = await manifest_proxy(manifest)
    for _ in range(2):
        for name in answers:
            assert (await ask(server, f"/{name}")).status == 200
    asked = [seen.path_qs.partition("?")[2] for seen in auth.seen]
    assert asked == [*answers.values(), answers["cookie"], answers["no-store"]]


async def test_a_body_sent_while_auth_is_asked_reaches_the_pod_whole(
    auth: AuthService, pods: Pods, tmp_path: Path, manifest_proxy: StartManifestProxy
) -> None:
    """1 MiB: more than the 256 KiB buffered before reading from the client stops, and
    reading resumes once the request goes upstream."""
    server = await serve(tmp_path, manifest_proxy, pods, auth_url=auth.url("/hold"))
    body = b"x" * (1024 * 1024)
    sent = asyncio.ensure_future(ask(server, "/upload", method="POST", data=body))
    await until(lambda: auth.holding == 1, "the subrequest")
    auth.release.set()
    reply = await sent
    assert reply.status == 200
    assert reply.pod_body_size == len(body)
    assert auth.seen[-1].body == b""


async def test_a_body_over_the_limit_while_auth_is_asked_is_a_413(
    auth: AuthService, pods: Pods, tmp_path: Path, manifest_proxy: StartManifestProxy
) -> None:
    server = await serve(
        tmp_path, manifest_proxy, pods, auth_url=auth.url("/hold"), proxy_body_size="1k"
    )
    reader, writer = await connect(server)
    writer.write(f"POST / HTTP/1.1\r\nHost: {HOST}\r\nTransfer-Encoding: chunked\r\n\r\n".encode())
    await until(lambda: auth.holding == 1, "the subrequest")
    writer.write(b"800\r\n" + b"x" * 2048 + b"\r\n")
    head = await reader.readuntil(b"\r\n\r\n")
    writer.close()
    assert head.startswith(b"HTTP/1.1 413 ")
    auth.release.set()  # (its answer then finds the request answered)


async def test_a_refusal_carries_cors_headers_and_a_preflight_is_not_asked_about(
    auth: AuthService, pods: Pods, tmp_path: Path, manifest_proxy: StartManifestProxy
) -> None:
    """As the basic auth e2e case "401 and cors headers": CORS comes in nginx's rewrite phase,
    before the access phase, so a preflight is answered without asking the auth service and a
    refusal has the CORS headers."""
    server = await serve(
        tmp_path, manifest_proxy, pods,
        auth_url=auth.url("/basic-auth/user/password"), enable_cors="true",
    )  # fmt: skip
    refused = await ask(server)
    assert refused.status == 401
    assert refused.headers["Access-Control-Allow-Origin"] == "*"
    preflight = await ask(server, method="OPTIONS", headers=[("Origin", "https://a.example")])
    assert preflight.status == 204
    assert len(auth.seen) == 1


async def test_utf_8_header_bytes_reach_the_auth_service_as_sent(
    auth: AuthService, pods: Pods, tmp_path: Path, manifest_proxy: StartManifestProxy
) -> None:
    server = await serve(tmp_path, manifest_proxy, pods, auth_url=auth.url("/status/200"))
    reader, writer = await connect(server)
    writer.write(
        f"GET / HTTP/1.1\r\nHost: {HOST}\r\nX-Name: café\r\nConnection: close\r\n\r\n".encode()
    )
    answer = await reader.read()
    writer.close()
    assert answer.startswith(b"HTTP/1.1 200 ")
    assert auth.headers()["x-name"] == "café"


# --- auth-proxy-set-headers -------------------------------------------------------------------

AUTH_HEADERS = "auth-headers"


def auth_headers_world(
    auth: AuthService, pods: Pods, data: dict[str, str] | None, ref: str = ""
) -> list[dict[str, object]]:
    """Ingress `web` (host `auth`) asking `auth` with auth-proxy-set-headers `ref` (default:
    the ConfigMap `auth-headers` of its namespace), that ConfigMap holding `data` (None: no
    ConfigMap), before the pods."""
    objects = web_app(
        pods.started,
        rule(HOST),
        auth_url=auth.url("/basic-auth/user/password"),
        auth_proxy_set_headers=ref or f"{NAMESPACE}/{AUTH_HEADERS}",
    )
    if data is not None:
        objects.append(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": AUTH_HEADERS, "namespace": NAMESPACE},
                "data": data,
            }
        )
    return objects


async def serve_auth_headers(
    auth: AuthService,
    pods: Pods,
    tmp_path: Path,
    manifest_proxy: StartManifestProxy,
    data: dict[str, str] | None,
    *,
    ref: str = "",
) -> ProxyServer:
    await pods.start(1)
    write_manifest(tmp_path / "cluster.yaml", auth_headers_world(auth, pods, data, ref))
    return await manifest_proxy(tmp_path / "cluster.yaml")


def warned_about(server: ProxyServer, fragment: str) -> bool:
    snapshot = server.publisher.current
    assert snapshot is not None
    return any(fragment in line for line in snapshot.warnings)


async def test_should_set_proxy_set_header_my_custom_header_42_when_auth_headers_are_set(
    auth: AuthService, pods: Pods, tmp_path: Path, manifest_proxy: StartManifestProxy
) -> None:
    # and beyond the Go test, which reads the nginx config: the client's own copy is replaced,
    # and a header set to "" is not sent at all (proxy_set_header's empty value)
    server = await serve_auth_headers(
        auth, pods, tmp_path, manifest_proxy, {"My-Custom-Header": "42", "X-Dropped": ""}
    )
    forged = [("my-custom-header", "forged"), ("X-Dropped", "forged")]
    reply = await ask(server, user=USER, headers=forged)
    assert reply.status == 200
    sent = [(name.lower(), value) for name, value in auth.seen[-1].headers]
    assert [value for name, value in sent if name == "my-custom-header"] == ["42"]
    assert [value for name, value in sent if name == "x-dropped"] == []
    # (only the auth subrequest carries them; the pod gets the client's request)
    assert reply.pod_values("My-Custom-Header") == ["forged"]


async def test_a_missing_auth_headers_config_map_denies_the_paths(
    auth: AuthService, pods: Pods, tmp_path: Path, manifest_proxy: StartManifestProxy
) -> None:
    """ingress-nginx denies the location ("unable to find configMap"): 503, nobody asked."""
    server = await serve_auth_headers(auth, pods, tmp_path, manifest_proxy, None)
    reply = await ask(server, user=USER)
    assert (reply.status, reply.pod_headers, auth.seen) == (503, None, [])
    assert warned_about(
        server, f"auth-proxy-set-headers ConfigMap {NAMESPACE}/{AUTH_HEADERS} not found"
    )


async def test_an_auth_headers_config_map_named_without_its_namespace_denies_the_paths(
    auth: AuthService, pods: Pods, tmp_path: Path, manifest_proxy: StartManifestProxy
) -> None:
    """ingress-nginx looks the annotation's text up as the ConfigMap's key, so a bare name
    finds nothing and the location is denied."""
    server = await serve_auth_headers(
        auth, pods, tmp_path, manifest_proxy, {"My-Custom-Header": "42"}, ref=AUTH_HEADERS
    )
    reply = await ask(server, user=USER)
    assert (reply.status, reply.pod_headers, auth.seen) == (503, None, [])


@pytest.mark.parametrize(
    "data",
    [{"X-Tenant": "a\r\nX-Admin: yes"}, {"X-Tenant": "a\nb"}, {"X-Tenant": "a\x00"},
     {"X Tenant": "a"}, {"X-Tenant:": "a"}, {"": "a"}],
    ids=["crlf", "lf", "nul", "space-in-name", "colon-in-name", "empty-name"],
)  # fmt: skip
async def test_an_invalid_auth_header_denies_the_paths_and_injects_nothing(
    auth: AuthService,
    pods: Pods,
    tmp_path: Path,
    manifest_proxy: StartManifestProxy,
    data: dict[str, str],
) -> None:
    server = await serve_auth_headers(auth, pods, tmp_path, manifest_proxy, data)
    reply = await ask(server, user=USER)
    assert (reply.status, reply.pod_headers, auth.seen) == (503, None, [])
    assert warned_about(server, f"auth-proxy-set-headers ConfigMap {NAMESPACE}/{AUTH_HEADERS}: ")


async def test_a_changed_auth_headers_config_map_takes_effect_at_the_next_table(
    auth: AuthService, pods: Pods, tmp_path: Path, manifest_proxy: StartManifestProxy
) -> None:
    manifest = tmp_path / "cluster.yaml"
    server = await serve_auth_headers(auth, pods, tmp_path, manifest_proxy, {"X-Tenant": "a"})
    assert (await ask(server, user=USER)).status == 200
    assert auth.headers()["x-tenant"] == "a"
    objects = auth_headers_world(auth, pods, {"X-Tenant": "b"})
    assert await reload_after(server, lambda: write_manifest(manifest, objects)) == "success"
    assert (await ask(server, user=USER)).status == 200
    assert auth.headers()["x-tenant"] == "b"
    asked = len(auth.seen)
    objects = auth_headers_world(auth, pods, None)  # the ConfigMap is gone: fail closed
    assert await reload_after(server, lambda: write_manifest(manifest, objects)) == "success"
    reply = await ask(server, user=USER)
    assert (reply.status, reply.pod_headers, len(auth.seen)) == (503, None, asked)

"""proxy-redirect-from/-to and proxy-cookie-domain/-path through a real proxy from manifest files:
ingress-nginx's e2e cases (the proxy-redirect and proxy-cookie parts of
test/e2e/annotations/proxy.go), each named after the Go test it mirrors, then upstreams that try
to break the headers (docs/behaviour.md, "Location and cookie rewrites"). The Go tests look for
the directive in nginx.conf; these look at what it does to the upstream's answer."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import quote

import pytest
from aiohttp import web
from multidict import CIMultiDict

from proxy.app.runtime import ProxyServer
from tests.integration.cluster import (
    Obj,
    endpoint_slice,
    ingress,
    path,
    rule,
    service,
)
from tests.integration.conftest import StartManifestProxy
from tests.integration.harness import Upstream, raw_request, start_app, start_raw_upstream
from tests.integration.test_upstream_tls import serve

HOST = "proxy.foo.com"  # the Go tests' host
Head = tuple[int, list[tuple[str, str]]]


@pytest.fixture
async def pod() -> AsyncIterator[Upstream]:
    """An upstream that answers with the Location, Refresh and Set-Cookie headers its query
    names (`?location=...&cookie=...&cookie=...`), 302 when there is a Location; `many=N` adds
    N cookies `nI=vI; Path=/app/I; Domain=internal`."""

    async def handler(request: web.Request) -> web.Response:
        headers: CIMultiDict[str] = CIMultiDict()
        for name in ("location", "refresh", "cookie"):
            for value in request.query.getall(name, ()):
                headers.add("Set-Cookie" if name == "cookie" else name.capitalize(), value)
        for i in range(int(request.query.get("many", "0"))):  # more than a target can hold
            headers.add("Set-Cookie", f"n{i}=v{i}; Path=/app/{i}; Domain=internal")
        return web.Response(status=302 if "location" in request.query else 200, headers=headers)

    started = await start_app("pod", handler, host="127.0.0.31")
    yield started
    await started.stop()


def world(pod: Upstream, *paths: Obj, **annotations: str) -> list[Obj]:
    return [
        ingress("proxy", rule(HOST, *paths), **annotations),
        service("web"),
        endpoint_slice([pod]),
    ]


async def head(server: ProxyServer, target: str, host: str = HOST) -> Head:
    """The status and headers of one answer, as they came on the wire."""
    request = f"GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    answer = await raw_request(server, request.encode())
    lines = answer.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    pairs = [line.split(": ", 1) for line in lines[1:]]
    return int(lines[0].split()[1]), [(name, value) for name, value in pairs]


def values(answer: Head, name: str) -> list[str]:
    return [value for key, value in answer[1] if key.lower() == name.lower()]


def asking(**headers: str | list[str]) -> str:
    """A target whose query asks the pod for `headers`."""
    query = [
        f"{name}={quote(value, safe='')}"
        for name, wanted in headers.items()
        for value in ([wanted] if isinstance(wanted, str) else wanted)
    ]
    return "/?" + "&".join(query)


# --- test/e2e/annotations/proxy.go ---------------------------------------------------------------


async def test_should_set_proxy_redirect_to_off(
    tmp_path: Path, manifest_proxy: StartManifestProxy, pod: Upstream
) -> None:
    objects = world(pod, proxy_redirect_from="off", proxy_redirect_to="goodbye.com")
    server = await serve(tmp_path, manifest_proxy, objects)
    for location in ("http://off/x", "http://upstream_balancer/x", "/relative"):
        answer = await head(server, asking(location=location))
        assert values(answer, "Location") == [location]


async def test_should_set_proxy_redirect_to_default(
    tmp_path: Path, manifest_proxy: StartManifestProxy, pod: Upstream
) -> None:
    objects = world(pod, proxy_redirect_from="default", proxy_redirect_to="goodbye.com")
    server = await serve(tmp_path, manifest_proxy, objects)
    answer = await head(server, asking(location="http://upstream_balancer/x?y=1"))
    assert values(answer, "Location") == [f"http://{HOST}/x?y=1"]  # proxy_pass's own address
    answer = await head(server, asking(location="http://hello.com/x"))
    assert values(answer, "Location") == ["http://hello.com/x"]


async def test_should_set_proxy_redirect_to_hello_com_goodbye_com(
    tmp_path: Path, manifest_proxy: StartManifestProxy, pod: Upstream
) -> None:
    objects = world(pod, proxy_redirect_from="hello.com", proxy_redirect_to="goodbye.com")
    server = await serve(tmp_path, manifest_proxy, objects)
    answer = await head(server, asking(location="hello.com/a", refresh="3; url=hello.com/b"))
    assert answer[0] == 302
    assert values(answer, "Location") == ["goodbye.com/a"]
    assert values(answer, "Refresh") == ["3; url=goodbye.com/b"]
    # a prefix only, and byte for byte
    answer = await head(server, asking(location="http://hello.com/a"))
    assert values(answer, "Location") == ["http://hello.com/a"]


async def test_should_setup_proxy_cookies(
    tmp_path: Path, manifest_proxy: StartManifestProxy, pod: Upstream
) -> None:
    """With affinity on `/one/`: the upstream's cookies are rewritten; the affinity cookie the
    proxy sets after them keeps its Path=/one/, as nginx's Lua sets it past proxy_cookie_path."""
    objects = world(
        pod,
        path("/one/"),
        proxy_cookie_domain="localhost example.org",
        proxy_cookie_path="/one/ /",
        affinity="cookie",
    )
    server = await serve(tmp_path, manifest_proxy, objects)
    cookies = ["a=1; Path=/one/x; Domain=localhost", "b=2;domain=.LOCALHOST;path=/two/"]
    answer = await head(server, "/one" + asking(cookie=cookies))
    assert answer[0] == 200
    sent = values(answer, "Set-Cookie")
    assert sent[:2] == ["a=1; Path=/x; Domain=example.org", "b=2; domain=.example.org; path=/two/"]
    (affinity,) = sent[2:]
    assert affinity.startswith("INGRESSCOOKIE=") and "Path=/one/" in affinity


# --- hostile upstreams and the rest of docs/behaviour.md, "Location and cookie rewrites" ---------


async def test_a_rewrite_to_a_path_becomes_absolute_on_the_request_s_host(
    tmp_path: Path, manifest_proxy: StartManifestProxy, pod: Upstream
) -> None:
    objects = world(pod, proxy_redirect_from="http://web.default.svc:8080/", proxy_redirect_to="/")
    server = await serve(tmp_path, manifest_proxy, objects)
    target = asking(location="http://web.default.svc:8080/login?next=%2F")
    answer = await head(server, target, host=f"{HOST.upper()}:8443")
    # nginx's absolute_redirect with ingress-nginx's port_in_redirect off: no port
    assert values(answer, "Location") == [f"http://{HOST}/login?next=%2F"]
    answer = await head(server, asking(location="/as-sent"))
    assert values(answer, "Location") == ["/as-sent"]


async def test_cookies_without_attributes_or_value_and_many_of_them(
    tmp_path: Path, manifest_proxy: StartManifestProxy, pod: Upstream
) -> None:
    objects = world(pod, proxy_cookie_path="/app/ /", proxy_cookie_domain="internal example.org")
    server = await serve(tmp_path, manifest_proxy, objects)
    plain = ["a=b", "flag", "c=d; HttpOnly", "=; Path=/app/x"]
    assert values(await head(server, asking(cookie=plain)), "Set-Cookie") == [
        "a=b", "flag", "c=d; HttpOnly", "=; Path=/x",
    ]  # fmt: skip
    sent = values(await head(server, "/?many=200"), "Set-Cookie")
    assert sent == [f"n{i}=v{i}; Path=/{i}; Domain=example.org" for i in range(200)]


async def test_a_huge_location_is_rewritten_whole(
    tmp_path: Path, manifest_proxy: StartManifestProxy, pod: Upstream
) -> None:
    objects = world(pod, proxy_redirect_from="http://internal/", proxy_redirect_to="https://shop/")
    server = await serve(tmp_path, manifest_proxy, objects)
    tail = "a" * 6000
    answer = await head(server, asking(location=f"http://internal/{tail}"))
    assert values(answer, "Location") == [f"https://shop/{tail}"]


async def test_a_location_with_a_carriage_return_splits_no_header(
    tmp_path: Path, manifest_proxy: StartManifestProxy
) -> None:
    """An upstream's raw Location with a bare CR inside, and a Set-Cookie with a bare LF: the
    client never sees an injected header line."""
    raw = await start_raw_upstream(
        b"HTTP/1.1 302 Found\r\nLocation: http://internal/a\rX-Injected: 1\r\n"
        b"Set-Cookie: s=1; Path=/app/\nX-Injected: 2\r\nContent-Length: 0\r\n\r\n"
    )
    try:
        slice_ = endpoint_slice([])
        slice_["ports"] = [{"name": "http", "port": raw.port, "protocol": "TCP"}]
        slice_["endpoints"] = [{"addresses": ["127.0.0.1"], "conditions": {"ready": True}}]
        objects = [
            ingress("proxy", rule(HOST), proxy_redirect_from="http://internal/",
                    proxy_redirect_to="/", proxy_cookie_path="/app/ /"),
            service("web"),
            slice_,
        ]  # fmt: skip
        server = await serve(tmp_path, manifest_proxy, objects)
        status, headers = await head(server, "/")
        assert not [name for name, _ in headers if name.lower() == "x-injected"]
        assert status == 502  # the upstream's head is refused whole
    finally:
        await raw.stop()

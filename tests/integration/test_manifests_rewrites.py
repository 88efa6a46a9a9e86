"""ingress-nginx's rewrite and redirect e2e cases (test/e2e/annotations/rewrite.go, approot.go,
redirect.go, xforwardedprefix.go, upstreamvhost.go, fromtowwwredirect.go), each named after the
Go test it mirrors, from manifest files through a real proxy to a real upstream; then hostile and
precedence cases.

The Go tests write their paths as Prefix; ingress-nginx then reads every path of a host with a
rewrite or use-regex as a regex. Here only ImplementationSpecific paths are regexes
(docs/behaviour.md, "Rewrites and redirects"), so the regex paths are written that way.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from proxy.app.runtime import ProxyServer
from tests.integration.cluster import (
    Obj,
    endpoint_slice,
    ingress,
    path,
    rule,
    service,
    write_manifest,
)
from tests.integration.conftest import StartManifestProxy
from tests.integration.harness import Upstream, url

REGEX = "ImplementationSpecific"


@dataclass(frozen=True)
class Reply:
    status: int
    location: str | None
    echo: dict[str, Any] | None  # what the upstream saw; None for the proxy's own answers

    @property
    def path_qs(self) -> str:
        assert self.echo is not None, f"answered {self.status} by the proxy"
        return str(self.echo["path_qs"])

    def header(self, name: str) -> list[str]:
        """The values of request header `name` as the upstream received it."""
        assert self.echo is not None, f"answered {self.status} by the proxy"
        return [value for key, value in self.echo["headers"] if key.lower() == name.lower()]


async def request(
    server: ProxyServer, target: str, host: str, headers: dict[str, str] | None = None
) -> Reply:
    """One GET, redirects not followed, so the proxy's own answers are seen as they are."""
    async with (
        aiohttp.ClientSession() as session,
        session.get(
            url(server, target), headers={"Host": host, **(headers or {})}, allow_redirects=False
        ) as response,
    ):
        json = response.content_type == "application/json"
        echo = await response.json() if json else None
        return Reply(response.status, response.headers.get("Location"), echo)


def world(pod: Upstream, *ingresses: Obj) -> list[Obj]:
    return [*ingresses, service(), endpoint_slice([pod])]


async def serve(
    manifest: Path, manifest_proxy: StartManifestProxy, pod: Upstream, *ingresses: Obj
) -> ProxyServer:
    write_manifest(manifest, world(pod, *ingresses))
    return await manifest_proxy(manifest)


# --- rewrite.go -------------------------------------------------------------------------------


async def test_should_use_correct_longest_path_match(
    pod: Upstream, manifest: Path, manifest_proxy: StartManifestProxy
) -> None:
    host = "rewrite.bar.com"
    acme = ingress("kube-lego", rule(host, path("/.well-known/acme/challenge")))
    index = ingress("rewrite-index", rule(host, path("/")), rewrite_target="/new/backend")
    server = await serve(manifest, manifest_proxy, pod, acme, index)
    reply = await request(server, "/.well-known/acme/challenge", host)
    assert reply.status == 200
    assert reply.path_qs == "/.well-known/acme/challenge"
    # and the rewriting Ingress's own path is rewritten, whole
    assert (await request(server, "/other/page", host)).path_qs == "/new/backend"


async def test_should_use_tilde_location_modifier_if_regex_annotation_is_present(
    pod: Upstream, manifest: Path, manifest_proxy: StartManifestProxy
) -> None:
    host = "rewrite.bar.com"
    foo = ingress("foo", rule(host, path("/foo")))
    regex = ingress("regex", rule(host, path("/foo.+", path_type=REGEX)), use_regex="true")
    server = await serve(manifest, manifest_proxy, pod, foo, regex)
    for target in ("/foo", "/foo/bar"):
        reply = await request(server, target, host)
        assert (reply.status, reply.path_qs) == (200, target)


async def test_should_fail_to_use_longest_match_for_documented_warning(
    pod: Upstream, manifest: Path, manifest_proxy: StartManifestProxy
) -> None:
    host = "rewrite.bar.com"
    plain = ingress("foo", rule(host, path("/foo/bar/bar")))
    regex = ingress(
        "regex", rule(host, path("/foo/bar/[a-z]{3}", path_type=REGEX)), use_regex="true"
    )
    server = await serve(manifest, manifest_proxy, pod, plain, regex)
    reply = await request(server, "/foo/bar/bar", host)
    assert (reply.status, reply.path_qs) == (200, "/foo/bar/bar")


async def test_should_allow_for_custom_rewrite_parameters(
    pod: Upstream, manifest: Path, manifest_proxy: StartManifestProxy
) -> None:
    host = "rewrite.bar.com"
    regex = ingress(
        "regex",
        rule(host, path("/foo/bar/(.+)", path_type=REGEX)),
        use_regex="true",
        rewrite_target="/new/backend/$1",
    )
    server = await serve(manifest, manifest_proxy, pod, regex)
    reply = await request(server, "/foo/bar/bar", host)
    assert (reply.status, reply.path_qs) == (200, "/new/backend/bar")


# --- approot.go -------------------------------------------------------------------------------


async def test_should_redirect_to_foo(
    pod: Upstream, manifest: Path, manifest_proxy: StartManifestProxy
) -> None:
    host = "approot.bar.com"
    server = await serve(
        manifest, manifest_proxy, pod, ingress(host, rule(host, path("/")), app_root="/foo")
    )
    reply = await request(server, "/", host)
    assert (reply.status, reply.location) == (302, "http://approot.bar.com/foo")
    # the app itself is served
    assert (await request(server, "/foo", host)).path_qs == "/foo"


# --- redirect.go ------------------------------------------------------------------------------


async def test_should_respond_with_a_standard_redirect_code(
    pod: Upstream, manifest: Path, manifest_proxy: StartManifestProxy
) -> None:
    host = "redirect"
    redirect = ingress(
        host, rule(host, path("/something")), permanent_redirect="http://redirect.example.com"
    )
    server = await serve(manifest, manifest_proxy, pod, redirect)
    reply = await request(server, "/something", host)
    assert (reply.status, reply.location) == (301, "http://redirect.example.com")
    assert pod.requests == 0


async def test_should_respond_with_a_custom_redirect_code(
    pod: Upstream, manifest: Path, manifest_proxy: StartManifestProxy
) -> None:
    host = "redirect"
    redirect = ingress(
        host,
        rule(host, path("/something")),
        permanent_redirect="http://redirect.example.com",
        permanent_redirect_code="302",
    )
    server = await serve(manifest, manifest_proxy, pod, redirect)
    reply = await request(server, "/something", host)
    assert (reply.status, reply.location) == (302, "http://redirect.example.com")


# --- xforwardedprefix.go ----------------------------------------------------------------------


async def test_should_set_the_x_forwarded_prefix_to_the_annotation_value(
    pod: Upstream, manifest: Path, manifest_proxy: StartManifestProxy
) -> None:
    host = "xfp.baz.com"
    xfp = ingress(
        host, rule(host, path("/")), x_forwarded_prefix="/test/value", rewrite_target="/foo"
    )
    server = await serve(manifest, manifest_proxy, pod, xfp)
    reply = await request(server, "/", host)
    assert reply.status == 200
    assert reply.header("X-Forwarded-Prefix") == ["/test/value"]


async def test_should_not_add_x_forwarded_prefix_if_the_annotation_value_is_empty(
    pod: Upstream, manifest: Path, manifest_proxy: StartManifestProxy
) -> None:
    host = "xfp.baz.com"
    xfp = ingress(host, rule(host, path("/")), x_forwarded_prefix="", rewrite_target="/foo")
    server = await serve(manifest, manifest_proxy, pod, xfp)
    reply = await request(server, "/", host)
    assert reply.status == 200
    assert reply.header("X-Forwarded-Prefix") == []


# --- upstreamvhost.go -------------------------------------------------------------------------


async def test_set_host_to_upstreamvhost_bar_com(
    pod: Upstream, manifest: Path, manifest_proxy: StartManifestProxy
) -> None:
    host = "upstreamvhost.foo.com"
    vhost = ingress(host, rule(host, path("/")), upstream_vhost="upstreamvhost.bar.com")
    server = await serve(manifest, manifest_proxy, pod, vhost)
    reply = await request(server, "/", host)
    assert reply.header("Host") == ["upstreamvhost.bar.com"]
    assert reply.header("X-Forwarded-Host") == [host]  # the client's, as ingress-nginx sends


# --- fromtowwwredirect.go ---------------------------------------------------------------------


async def test_should_redirect_from_www_http_to_http(
    pod: Upstream, manifest: Path, manifest_proxy: StartManifestProxy
) -> None:
    host = "fromtowwwredirect.bar.com"
    www = ingress(host, rule(host, path("/")), from_to_www_redirect="true")
    server = await serve(manifest, manifest_proxy, pod, www)
    port = url(server).rsplit(":", 1)[1].rstrip("/")  # the port the proxy listens on
    reply = await request(server, "/foo", f"www.{host}")
    assert (reply.status, reply.location) == (308, f"http://{host}:{port}/foo")
    assert (await request(server, "/foo", host)).path_qs == "/foo"
    assert pod.requests == 1


# --- precedence and hostile input -------------------------------------------------------------


async def test_capture_groups_keep_the_query_and_unmatched_groups_are_empty(
    pod: Upstream, manifest: Path, manifest_proxy: StartManifestProxy
) -> None:
    host = "app.test"
    rewrite = ingress(
        "rewrite",
        rule(host, path("/something(/|$)(.*)", path_type=REGEX)),
        rewrite_target="/$2",  # use-regex is implied, as in ingress-nginx
    )
    server = await serve(manifest, manifest_proxy, pod, rewrite)
    cases = {
        "/something": "/",
        "/something/": "/",
        "/something/new?a=1&b=2": "/new?a=1&b=2",
        "/SOMETHING/Case": "/Case",  # (?i), as nginx's rewrite
    }
    for target, seen in cases.items():
        reply = await request(server, target, host)
        assert (reply.status, reply.path_qs) == (200, seen), target


async def test_permanent_redirect_comes_before_the_https_redirect_and_app_root_before_both(
    pod: Upstream, manifest: Path, manifest_proxy: StartManifestProxy
) -> None:
    host = "app.test"
    both = ingress(
        "both",
        rule(host, path("/"), path("/shop")),
        force_ssl_redirect="true",
        permanent_redirect="https://elsewhere.example.com/shop?from=app",
        app_root="/shop",
    )
    server = await serve(manifest, manifest_proxy, pod, both)
    root = await request(server, "/?x=1", host)
    assert (root.status, root.location) == (302, "http://app.test/shop")
    shop = await request(server, "/shop/cart?x=1", host)  # the query is not carried over
    assert (shop.status, shop.location) == (301, "https://elsewhere.example.com/shop?from=app")
    assert pod.requests == 0


async def test_temporal_redirect_wins_over_permanent_and_bad_codes_take_the_default(
    pod: Upstream, manifest: Path, manifest_proxy: StartManifestProxy
) -> None:
    both = ingress(
        "both",
        rule("both.test", path("/")),
        permanent_redirect="http://permanent.example.com",
        temporal_redirect="http://temporal.example.com",
        temporal_redirect_code="308",  # above 307: the default, 302
    )
    bad = ingress(
        "bad",
        rule("bad.test", path("/")),
        permanent_redirect="http://permanent.example.com",
        permanent_redirect_code="redirect",
    )
    server = await serve(manifest, manifest_proxy, pod, both, bad)
    reply = await request(server, "/", "both.test")
    assert (reply.status, reply.location) == (302, "http://temporal.example.com")
    reply = await request(server, "/", "bad.test")
    assert (reply.status, reply.location) == (301, "http://permanent.example.com")


async def test_app_root_names_the_host_as_sent_and_redirects_only_the_root(
    pod: Upstream, manifest: Path, manifest_proxy: StartManifestProxy
) -> None:
    host = "approot.bar.com"
    root = ingress("root", rule(host, path("/app")), app_root="/app/main")
    # another Ingress's "/" on the host: app-root is the server's, so it still redirects
    other = ingress("other", rule(host, path("/", path_type="Exact")))
    server = await serve(manifest, manifest_proxy, pod, root, other)
    reply = await request(server, "/", f"{host}:8080")
    assert (reply.status, reply.location) == (302, f"http://{host}:8080/app/main")
    assert (await request(server, "/app", host)).path_qs == "/app"
    assert (await request(server, "//", host)).status == 404  # not "/": no redirect


async def test_hostile_values_are_refused_and_the_ingress_is_served_without_them(
    pod: Upstream, manifest: Path, manifest_proxy: StartManifestProxy
) -> None:
    host = "app.test"
    hostile = ingress(
        "hostile",
        rule(host, path("/")),
        rewrite_target="$host/$request_uri",  # nginx variables
        permanent_redirect="javascript:alert(1)",  # not http(s)
        app_root="http://evil.example.com/",  # only a path
        upstream_vhost="$http_x_target",  # a variable the client would control
        x_forwarded_prefix="/a$1",
    )
    server = await serve(manifest, manifest_proxy, pod, hostile)
    reply = await request(
        server, "/page?q=1", host, headers={"X-Target": "evil", "X-Forwarded-Prefix": "/mine"}
    )
    assert (reply.status, reply.path_qs) == (200, "/page?q=1")
    assert reply.header("Host") == [host]
    # no rewrite, so no header of the proxy's: the client's is passed on, as by ingress-nginx
    assert reply.header("X-Forwarded-Prefix") == ["/mine"]
    assert (await request(server, "/", host)).status == 200  # no app-root redirect


async def test_client_x_forwarded_prefix_is_replaced_with_the_rewrite(
    pod: Upstream, manifest: Path, manifest_proxy: StartManifestProxy
) -> None:
    host = "app.test"
    rewrite = ingress(
        "rewrite",
        rule(host, path("/api(/|$)(.*)", path_type=REGEX)),
        rewrite_target="/$2",
        x_forwarded_prefix="/api",
    )
    server = await serve(manifest, manifest_proxy, pod, rewrite)
    reply = await request(server, "/api/users", host, headers={"X-Forwarded-Prefix": "/forged"})
    assert reply.path_qs == "/users"
    assert reply.header("X-Forwarded-Prefix") == ["/api"]

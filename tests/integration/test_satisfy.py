"""`satisfy` through a real proxy from manifest files: ingress-nginx's e2e cases
(test/e2e/annotations/satisfy.go), each named after the Go test it mirrors, then the address
lists, basic and external authentication mixed as nginx's access phase mixes them, and clients
that try to get through with less (docs/behaviour.md, "satisfy"). Clients connect from other
loopback addresses (127.0.0.9, ...), so the peer address itself varies."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from urllib.parse import quote

import aiohttp
import pytest
from multidict import CIMultiDictProxy

from proxy.app.runtime import ProxyServer
from tests.integration.cluster import (
    Obj,
    endpoint_slice,
    ingress,
    reload_after,
    rule,
    service,
    write_manifest,
)
from tests.integration.conftest import StartManifestProxy
from tests.integration.harness import Upstream, url
from tests.integration.test_basic_auth import basic, build_secret
from tests.integration.test_external_auth import AuthService, start_auth_service
from tests.integration.test_manifests_custom_headers import serve

BASIC = {"auth_type": "basic", "auth_secret": "test", "auth_realm": "test basic auth"}
REALM = 'Basic realm="test basic auth"'


@pytest.fixture
async def auth() -> AsyncIterator[AuthService]:
    """httpbun's part in the Go tests: /basic-auth/user/password and /status/{code}."""
    started = await start_auth_service()
    yield started
    await started.stop()


@dataclass(frozen=True)
class Reply:
    status: int
    headers: CIMultiDictProxy[str]
    pod: dict[str, str] | None  # the headers the pod saw (lower-case names); None: not asked


async def ask(
    server: ProxyServer,
    host: str,
    target: str = "/",
    client: str = "127.0.0.1",
    user: tuple[str, str] | None = None,
) -> Reply:
    headers = {"Host": host, **({"Authorization": basic(*user)} if user else {})}
    connector = aiohttp.TCPConnector(local_addr=(client, 0))
    async with (
        aiohttp.ClientSession(connector=connector) as session,
        session.get(url(server, target), headers=headers, allow_redirects=False) as response,
    ):
        if response.content_type != "application/json":
            await response.read()
            return Reply(response.status, response.headers, None)
        seen = {name.lower(): value for name, value in (await response.json())["headers"]}
        return Reply(response.status, response.headers, seen)


def world(host: str, pod: Upstream, *extra: Obj, **annotations: str) -> list[Obj]:
    return [ingress(host, rule(host), **annotations), service(), endpoint_slice([pod]), *extra]


# --- test/e2e/annotations/satisfy.go -----------------------------------------------------------


async def test_should_configure_satisfy_directive_correctly(
    manifest: Path, manifest_proxy: StartManifestProxy, pod: Upstream
) -> None:
    host = "satisfy"
    server = await serve(manifest, manifest_proxy, world(host, pod, satisfy="all"))
    for value in ("any", "all"):
        change = world(host, pod, satisfy=value)
        await reload_after(server, partial(write_manifest, manifest, change))
        reply = await ask(server, host)
        assert reply.status == 200
        assert reply.pod is not None and reply.pod["host"] == host


async def test_should_allow_multiple_auth_with_satisfy_any(
    manifest: Path, manifest_proxy: StartManifestProxy, pod: Upstream, auth: AuthService
) -> None:
    host = "auth"
    objects = world(
        host,
        pod,
        build_secret("uname", "pwd"),
        **BASIC,
        auth_url=auth.url("/basic-auth/user/password"),
        auth_signin="http://$host/auth/start",
        satisfy="any",
    )
    server = await serve(manifest, manifest_proxy, objects)
    # with basic auth credentials: auth_basic lets it in, and the auth service is not asked
    assert (await ask(server, host, user=("uname", "pwd"))).status == 200
    assert auth.seen == []
    # without: both refuse with 401, which the sign-in's error_page turns into a redirect
    reply = await ask(server, host, "/?a=b&c=d")
    assert reply.status == 302
    rd = quote("/?a=b&c=d", safe="")
    assert reply.headers["Location"] == f"http://{host}/auth/start?rd=http://{host}{rd}"
    # the auth service's credentials, which basic auth refuses: the auth service lets it in
    reply = await ask(server, host, user=("user", "password"))
    assert reply.status == 200


# --- the access phase with satisfy any, and clients that try to get through with less ---------


async def test_any_with_a_denied_address_and_no_credentials_is_refused(
    manifest: Path, manifest_proxy: StartManifestProxy, pod: Upstream
) -> None:
    objects = world(
        "shop", pod, build_secret("uname", "pwd"), **BASIC,
        allowlist_source_range="127.0.0.8/29", satisfy="any",
    )  # fmt: skip
    server = await serve(manifest, manifest_proxy, objects)
    # not on the list, and no or wrong credentials: 401 (auth_basic's) wins over 403
    for user in (None, ("uname", "wrong"), ("nobody", "pwd")):
        reply = await ask(server, "shop", client="127.0.0.1", user=user)
        assert (reply.status, reply.headers.getall("WWW-Authenticate")) == (401, [REALM])
    # not on the list, with credentials: in, without them passed on
    reply = await ask(server, "shop", client="127.0.0.1", user=("uname", "pwd"))
    assert reply.status == 200 and reply.pod is not None and "authorization" not in reply.pod
    # on the list: in without credentials, and forged ones are not passed on either
    reply = await ask(server, "shop", client="127.0.0.9", user=("uname", "forged"))
    assert reply.status == 200 and reply.pod is not None and "authorization" not in reply.pod


async def test_all_still_asks_a_listed_client_for_credentials(
    manifest: Path, manifest_proxy: StartManifestProxy, pod: Upstream
) -> None:
    objects = world(
        "shop", pod, build_secret("uname", "pwd"), **BASIC, allowlist_source_range="127.0.0.8/29"
    )
    server = await serve(manifest, manifest_proxy, objects)
    assert (await ask(server, "shop", client="127.0.0.9")).status == 401
    assert (await ask(server, "shop", client="127.0.0.1", user=("uname", "pwd"))).status == 403
    assert (await ask(server, "shop", client="127.0.0.9", user=("uname", "pwd"))).status == 200


async def test_any_with_an_address_list_alone_refuses_as_all_does(
    manifest: Path, manifest_proxy: StartManifestProxy, pod: Upstream
) -> None:
    objects = world("shop", pod, allowlist_source_range="127.0.0.8/29", satisfy="any")
    server = await serve(manifest, manifest_proxy, objects)
    assert (await ask(server, "shop", client="127.0.0.1")).status == 403
    assert (await ask(server, "shop", client="127.0.0.9")).status == 200


async def test_any_with_a_deny_list_asks_the_others_and_lets_the_denied_in_with_credentials(
    manifest: Path, manifest_proxy: StartManifestProxy, pod: Upstream
) -> None:
    """`deny` alone decides nothing for the clients it does not name: they still need
    credentials; a denied client with credentials gets in, as one check is enough."""
    objects = world(
        "shop", pod, build_secret("uname", "pwd"), **BASIC,
        denylist_source_range="127.0.0.9", satisfy="any",
    )  # fmt: skip
    server = await serve(manifest, manifest_proxy, objects)
    assert (await ask(server, "shop", client="127.0.0.1")).status == 401
    assert (await ask(server, "shop", client="127.0.0.9")).status == 401
    assert (await ask(server, "shop", client="127.0.0.9", user=("uname", "pwd"))).status == 200


async def test_any_passes_both_challenges_on_and_an_auth_service_error_is_500(
    manifest: Path, manifest_proxy: StartManifestProxy, pod: Upstream, auth: AuthService
) -> None:
    objects = world(
        "shop", pod, build_secret("uname", "pwd"), **BASIC,
        auth_url=auth.url("/basic-auth/user/password"), satisfy="any",
    )  # fmt: skip
    server = await serve(manifest, manifest_proxy, objects)
    reply = await ask(server, "shop")
    assert reply.status == 401
    assert reply.headers.getall("WWW-Authenticate") == [REALM, 'Basic realm="Fake Realm"']
    for code, status in ((403, 401), (500, 500), (200, 200)):
        objects = world(
            "shop", pod, build_secret("uname", "pwd"), **BASIC,
            auth_url=auth.url(f"/status/{code}"), satisfy="any",
        )  # fmt: skip
        await reload_after(server, partial(write_manifest, manifest, objects))
        reply = await ask(server, "shop")
        assert reply.status == status, code
        if status == 401:  # auth_basic's 401 over the auth service's 403: its challenge alone
            assert reply.headers.getall("WWW-Authenticate") == [REALM]


async def test_any_with_a_denied_address_and_an_auth_service_that_refuses(
    manifest: Path, manifest_proxy: StartManifestProxy, pod: Upstream, auth: AuthService
) -> None:
    objects = world(
        "shop", pod, allowlist_source_range="127.0.0.8/29",
        auth_url=auth.url("/status/403"), satisfy="any",
    )  # fmt: skip
    server = await serve(manifest, manifest_proxy, objects)
    assert (await ask(server, "shop", client="127.0.0.1")).status == 403
    assert len(auth.seen) == 1
    assert (await ask(server, "shop", client="127.0.0.9")).status == 200
    assert len(auth.seen) == 1  # (the allow rule let it in: no subrequest)


async def test_an_invalid_value_is_satisfy_all(
    manifest: Path, manifest_proxy: StartManifestProxy, pod: Upstream
) -> None:
    objects = world(
        "shop", pod, build_secret("uname", "pwd"), **BASIC,
        allowlist_source_range="127.0.0.8/29", satisfy="ANY",
    )  # fmt: skip
    server = await serve(manifest, manifest_proxy, objects)
    assert (await ask(server, "shop", client="127.0.0.9")).status == 401
    snapshot = server.publisher.get()
    assert snapshot is not None
    assert any("satisfy: 'ANY' is not any or all; ignored" in line for line in snapshot.warnings)

"""Basic authentication through a real proxy from manifest files: ingress-nginx's e2e cases
(test/e2e/annotations/auth.go, the basic ones), each named after the Go test it mirrors, then
the hostile requests and Secrets of issue 18 (docs/behaviour.md, "Basic authentication").

The Go tests hash with bcrypt at cost 14 (over a second a check); these use cost 4, the same
algorithm, so the suite stays quick.
"""

from __future__ import annotations

import asyncio
import base64
import json
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import bcrypt
import pytest
from multidict import CIMultiDict, CIMultiDictProxy

from proxy.app.runtime import ProxyServer
from tests.integration.cluster import (
    NAMESPACE,
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
from tests.integration.harness import Upstream, connect, url

HOST = "auth"  # the Go tests' authHost
FOO = "foo"  # their fooHost, the user name
BASIC = {"auth_type": "basic", "auth_secret": "test", "auth_realm": "test auth"}
# hashes of "bar" as htpasswd (apache2-utils) and openssl write them
APR1 = "$apr1$0PEh1DDQ$71x2YO5y0c6WbY0gpn9go0"
SHA1 = "{SHA}Ys23Ag/5IOWqZCw9QGaVDdHwH00="
SHA512 = (
    "$6$EUW2ekMA7DjXeHo4$sIscPKerqJOlsR2Vzz.NuX88/GHZWvTC1CuSmN9Wl43PFKIIGy7OCzBHuZrFr61hyhmDqXdnif"
    "a/CXiOwEOXE."
)
DES = "Hx2xch68q/8oc"  # htpasswd -d: crypt(3) DES
YESCRYPT = "$y$j9T$F5Jx5fExrKuPp53xLKQ..1$X3DX6M94c7o7ybVBzzeoXbF7Y2o8Xfn4Jy3e3w6bxZ/"  # not here


def bcrypt_hash(password: str) -> str:
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(4)).decode()


def secret(name: str = "test", **data: str) -> Obj:
    """An Opaque Secret in the Ingresses' namespace with `data` (base64-encoded, as the API)."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "type": "Opaque",
        "data": {key: base64.b64encode(value.encode()).decode() for key, value in data.items()},
    }


def build_secret(user: str, password: str) -> Obj:
    """The Go tests' buildSecret: an htpasswd line under `auth`."""
    return secret(auth=f"{user}:{bcrypt_hash(password)}\n")


def build_map_secret(user: str, password: str) -> Obj:
    """Their buildMapSecret: the user as the key, the hash as its value."""
    return secret(**{user: bcrypt_hash(password)})


@dataclass(frozen=True)
class Reply:
    status: int
    headers: CIMultiDictProxy[str]
    body: str
    upstream: dict[str, str] | None  # the headers the pod saw (lower-case names); None: proxy


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


async def ask(server: ProxyServer, *headers: tuple[str, str]) -> Reply:
    sent = CIMultiDict([("Host", HOST), *headers])
    async with (
        aiohttp.ClientSession() as session,
        session.get(url(server), headers=sent) as response,
    ):
        if response.content_type == "application/json":
            echoed = await response.json()
            seen = {name.lower(): value for name, value in echoed["headers"]}
            return Reply(response.status, response.headers, "", seen)
        return Reply(response.status, response.headers, await response.text(), None)


def warnings(server: ProxyServer) -> tuple[str, ...]:
    snapshot = server.publisher.get()
    assert snapshot is not None
    return snapshot.warnings


@pytest.fixture
async def pod(pods: Pods) -> Upstream:
    return (await pods.start(1))[0]


@pytest.fixture
def manifest(tmp_path: Path) -> Path:
    return tmp_path / "cluster.yaml"


def world(pod: Upstream, *extra: Obj, **annotations: str) -> list[Obj]:
    return [ingress("auth", rule(HOST), **annotations), service(), endpoint_slice([pod]), *extra]


async def serve(
    manifest: Path,
    manifest_proxy: StartManifestProxy,
    pod: Upstream,
    *extra: Obj,
    **annotations: str,
) -> ProxyServer:
    write_manifest(manifest, world(pod, *extra, **annotations))
    return await manifest_proxy(manifest)


# --- ingress-nginx's e2e cases ---------------------------------------------------------------


async def test_should_return_status_code_200_when_no_authentication_is_configured(
    pod: Upstream, manifest: Path, manifest_proxy: StartManifestProxy
) -> None:
    server = await serve(manifest, manifest_proxy, pod)
    reply = await ask(server)
    assert reply.status == 200
    assert reply.upstream is not None and reply.upstream["host"] == HOST


async def test_should_return_status_code_503_when_authentication_is_configured_with_an_invalid_secret(  # noqa: E501 (the Go test's name)
    pod: Upstream, manifest: Path, manifest_proxy: StartManifestProxy
) -> None:
    server = await serve(manifest, manifest_proxy, pod, **{**BASIC, "auth_secret": "something"})
    reply = await ask(server, ("Authorization", basic(FOO, "bar")))
    assert reply.status == 503
    assert "503 Service Unavailable" in reply.body
    assert any("auth-secret default/something not found" in line for line in warnings(server))


async def test_should_return_status_code_401_when_authentication_is_configured_but_authorization_header_is_not_configured(  # noqa: E501 (the Go test's name)
    pod: Upstream, manifest: Path, manifest_proxy: StartManifestProxy
) -> None:
    server = await serve(manifest, manifest_proxy, pod, build_secret(FOO, "bar"), **BASIC)
    reply = await ask(server)
    assert reply.status == 401
    assert "401 Unauthorized" in reply.body  # nginx's page says "401 Authorization Required"
    assert reply.headers["WWW-Authenticate"] == 'Basic realm="test auth"'


async def test_should_return_status_code_401_when_authentication_is_configured_and_authorization_header_is_sent_with_invalid_credentials(  # noqa: E501 (the Go test's name)
    pod: Upstream, manifest: Path, manifest_proxy: StartManifestProxy
) -> None:
    server = await serve(manifest, manifest_proxy, pod, build_secret(FOO, "bar"), **BASIC)
    reply = await ask(server, ("Authorization", basic("user", "pass")))
    assert reply.status == 401
    assert reply.headers["WWW-Authenticate"] == 'Basic realm="test auth"'


async def test_should_return_status_code_401_and_cors_headers_when_authentication_and_cors_is_configured_but_authorization_header_is_not_configured(  # noqa: E501 (the Go test's name)
    pod: Upstream, manifest: Path, manifest_proxy: StartManifestProxy
) -> None:
    server = await serve(
        manifest, manifest_proxy, pod, build_secret(FOO, "bar"), **BASIC, enable_cors="true"
    )
    reply = await ask(server)
    assert reply.status == 401
    assert reply.headers["Access-Control-Allow-Origin"] == "*"


async def test_should_return_status_code_200_when_authentication_is_configured_and_authorization_header_is_sent(  # noqa: E501 (the Go test's name)
    pod: Upstream, manifest: Path, manifest_proxy: StartManifestProxy
) -> None:
    server = await serve(manifest, manifest_proxy, pod, build_secret(FOO, "bar"), **BASIC)
    reply = await ask(server, ("Authorization", basic(FOO, "bar")))
    assert reply.status == 200
    # ingress-nginx's `proxy_set_header Authorization ""`: the upstream does not see it
    assert reply.upstream is not None and "authorization" not in reply.upstream


async def test_should_return_status_code_200_when_authentication_is_configured_with_a_map_and_authorization_header_is_sent(  # noqa: E501 (the Go test's name)
    pod: Upstream, manifest: Path, manifest_proxy: StartManifestProxy
) -> None:
    server = await serve(
        manifest,
        manifest_proxy,
        pod,
        build_map_secret(FOO, "bar"),
        **BASIC,
        auth_secret_type="auth-map",
    )
    assert (await ask(server, ("Authorization", basic(FOO, "bar")))).status == 200
    assert (await ask(server, ("Authorization", basic(FOO, "baz")))).status == 401


async def test_should_return_status_code_401_when_authentication_is_configured_with_invalid_content_and_authorization_header_is_sent(  # noqa: E501 (the Go test's name)
    pod: Upstream, manifest: Path, manifest_proxy: StartManifestProxy
) -> None:
    server = await serve(manifest, manifest_proxy, pod, secret(auth="foo:"), **BASIC)
    assert (await ask(server, ("Authorization", basic(FOO, "bar")))).status == 401
    assert (await ask(server, ("Authorization", basic(FOO, "")))).status == 401


# --- hostile requests ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "Basic !!!not-base64!!!",  # bad base64
        "Basic " + base64.b64encode(b"foobar").decode(),  # no colon
        "Basic " + base64.b64encode(b":bar").decode(),  # no user
        "Basic Zm9vOmJhc",  # "foo:bar" cut short: 9 base64 characters are no whole bytes
        "Bearer " + base64.b64encode(b"foo:bar").decode(),  # another scheme
        "Basic",
        "Basic " + "A" * 7000,  # huge (within the proxy's head limit)
        basic("FOO", "bar"),  # user names are case-sensitive
        basic(FOO, "bar "),
    ],
)
async def test_malformed_or_wrong_credentials_get_401(
    value: str, pod: Upstream, manifest: Path, manifest_proxy: StartManifestProxy
) -> None:
    server = await serve(manifest, manifest_proxy, pod, build_secret(FOO, "bar"), **BASIC)
    reply = await ask(server, ("Authorization", value))
    assert reply.status == 401
    assert reply.upstream is None


async def test_the_scheme_is_any_case_and_padding_optional(
    pod: Upstream, manifest: Path, manifest_proxy: StartManifestProxy
) -> None:
    server = await serve(manifest, manifest_proxy, pod, build_secret(FOO, "bar!"), **BASIC)
    encoded = base64.b64encode(b"foo:bar!").decode()
    assert encoded.endswith("=")
    assert (await ask(server, ("Authorization", "bAsIc   " + encoded.rstrip("=")))).status == 200


async def test_a_header_over_the_head_limit_is_refused_before_authentication(
    pod: Upstream, manifest: Path, manifest_proxy: StartManifestProxy
) -> None:
    server = await serve(manifest, manifest_proxy, pod, build_secret(FOO, "bar"), **BASIC)
    reply = await ask(server, ("Authorization", "Basic " + "A" * 70_000))
    assert reply.status in (400, 431)
    assert reply.upstream is None


async def test_two_authorization_headers_are_a_bad_request(
    pod: Upstream, manifest: Path, manifest_proxy: StartManifestProxy
) -> None:
    """nginx refuses a duplicate Authorization header with 400 (a unique header line)."""
    server = await serve(manifest, manifest_proxy, pod, build_secret(FOO, "bar"), **BASIC)
    good = ("Authorization", basic(FOO, "bar"))
    assert (await ask(server, good, good)).status == 400


@pytest.mark.parametrize("hashed", [APR1, SHA1, SHA512, DES, "{PLAIN}bar"], ids=str.split)
async def test_htpasswd_hash_schemes(
    hashed: str, pod: Upstream, manifest: Path, manifest_proxy: StartManifestProxy
) -> None:
    server = await serve(manifest, manifest_proxy, pod, secret(auth=f"{FOO}:{hashed}\n"), **BASIC)
    assert (await ask(server, ("Authorization", basic(FOO, "bar")))).status == 200
    assert (await ask(server, ("Authorization", basic(FOO, "baz")))).status == 401


async def test_a_user_with_an_unknown_hash_scheme_never_matches(
    pod: Upstream, manifest: Path, manifest_proxy: StartManifestProxy
) -> None:
    text = f"# users\nold:{YESCRYPT}\n{FOO}:{APR1}\r\n"
    server = await serve(manifest, manifest_proxy, pod, secret(auth=text), **BASIC)
    assert (await ask(server, ("Authorization", basic("old", "bar")))).status == 401
    assert (await ask(server, ("Authorization", basic(FOO, "bar")))).status == 200
    unknown = "user 'old': the hash is of no scheme known here"
    assert any(unknown in line for line in warnings(server))


async def test_a_secret_without_the_auth_key_denies_the_paths(
    pod: Upstream, manifest: Path, manifest_proxy: StartManifestProxy
) -> None:
    server = await serve(manifest, manifest_proxy, pod, secret(users=f"{FOO}:{APR1}"), **BASIC)
    assert (await ask(server, ("Authorization", basic(FOO, "bar")))).status == 503


@pytest.mark.parametrize(
    "annotations",
    [
        {"auth_type": "digest"},
        {"auth_type": "Basic"},
        {"auth_secret_type": "htpasswd"},
        {"auth_secret": "other/test"},  # another namespace
        {"auth_secret": "a/b/c"},
        {"auth_secret": ""},
    ],
    ids=repr,
)
async def test_unusable_auth_annotations_deny_the_paths(
    annotations: dict[str, str], pod: Upstream, manifest: Path, manifest_proxy: StartManifestProxy
) -> None:
    """ingress-nginx serves some of these without authentication; here every path answers 503."""
    secrets = (
        build_secret(FOO, "bar"),
        {**secret(), "metadata": {"name": "test", "namespace": "other"}},
    )
    server = await serve(manifest, manifest_proxy, pod, *secrets, **{**BASIC, **annotations})
    assert (await ask(server, ("Authorization", basic(FOO, "bar")))).status == 503


async def test_an_invalid_realm_keeps_authentication_with_the_default_realm(
    pod: Upstream, manifest: Path, manifest_proxy: StartManifestProxy
) -> None:
    server = await serve(
        manifest, manifest_proxy, pod, build_secret(FOO, "bar"), **{**BASIC, "auth_realm": 'a"b'}
    )
    reply = await ask(server)
    assert reply.status == 401
    assert reply.headers["WWW-Authenticate"] == 'Basic realm=""'


async def test_acme_challenges_are_served_without_authentication(
    pod: Upstream, manifest: Path, manifest_proxy: StartManifestProxy
) -> None:
    """ingress-nginx's no-auth-locations default, for a solver path added to the Ingress."""
    acme = "/.well-known/acme-challenge/"
    paths = rule(HOST, path("/"), path(acme + "token", path_type="Exact"))
    objects = [ingress("auth", paths, **BASIC), service(), endpoint_slice([pod])]
    write_manifest(manifest, [*objects, build_secret(FOO, "bar")])
    server = await manifest_proxy(manifest)
    async with aiohttp.ClientSession() as session:
        for target, status in ((acme + "token", 200), ("/", 401), (acme + "other", 401)):
            async with session.get(url(server, target), headers={"Host": HOST}) as response:
                assert response.status == status, target


async def test_a_changed_secret_takes_effect_and_remembered_credentials_do_not_outlive_it(
    pod: Upstream, manifest: Path, manifest_proxy: StartManifestProxy
) -> None:
    server = await serve(manifest, manifest_proxy, pod, build_secret(FOO, "bar"), **BASIC)
    old, new = ("Authorization", basic(FOO, "bar")), ("Authorization", basic(FOO, "new"))
    assert (await ask(server, old)).status == 200
    assert (await ask(server, old)).status == 200  # remembered
    change = world(pod, build_secret(FOO, "new"), **BASIC)
    assert await reload_after(server, lambda: write_manifest(manifest, change)) == "success"
    assert (await ask(server, old)).status == 401
    assert (await ask(server, new)).status == 200


async def read_answer(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """One HTTP/1.1 answer with a Content-Length: (status, body)."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    return int(head.split(b" ")[1]), await reader.readexactly(length)


async def test_pipelined_requests_and_a_body_wait_for_a_bcrypt_check(
    pod: Upstream, manifest: Path, manifest_proxy: StartManifestProxy
) -> None:
    """The check runs in a thread: the body that arrives meanwhile, and the request behind it on
    the same connection, go on once it is done, in order."""
    server = await serve(manifest, manifest_proxy, pod, build_secret(FOO, "bar"), **BASIC)
    credentials = basic(FOO, "bar").encode()
    post = (
        b"POST /first HTTP/1.1\r\nHost: auth\r\nAuthorization: %s\r\nContent-Length: 5\r\n\r\nhello"
        % credentials
    )
    wrong = (
        b"GET /second HTTP/1.1\r\nHost: auth\r\nAuthorization: %s\r\n\r\n"
        % basic(FOO, "baz").encode()
    )
    get = b"GET /third HTTP/1.1\r\nHost: auth\r\nAuthorization: %s\r\n\r\n" % credentials
    reader, writer = await connect(server)
    try:
        writer.write(post + wrong + get)
        answers = [await read_answer(reader) for _ in range(3)]
    finally:
        writer.close()
    first, second, third = answers
    assert first[0] == 200 and json.loads(first[1])["path_qs"] == "/first"
    assert json.loads(first[1])["body_size"] == 5
    assert second[0] == 401
    assert third[0] == 200 and json.loads(third[1])["path_qs"] == "/third"
    assert pod.requests == 2


async def test_a_client_gone_during_the_check_reaches_no_pod(
    pod: Upstream, manifest: Path, manifest_proxy: StartManifestProxy
) -> None:
    slow = bcrypt.hashpw(b"bar", bcrypt.gensalt(13)).decode()  # ~0.6 s: gone long before
    server = await serve(manifest, manifest_proxy, pod, secret(auth=f"{FOO}:{slow}\n"), **BASIC)
    _, writer = await connect(server)
    request = (
        b"GET / HTTP/1.1\r\nHost: auth\r\nAuthorization: %s\r\n\r\n" % basic(FOO, "bar").encode()
    )
    writer.write(request)
    await writer.drain()
    writer.close()
    await writer.wait_closed()
    # the proxy goes on serving; the check of a new connection, remembered afterwards, succeeds
    assert (await ask(server, ("Authorization", basic(FOO, "bar")))).status == 200
    assert pod.requests == 1

"""Access by client address through a real proxy: ingress-nginx's e2e cases
(test/e2e/annotations/ipallowlist.go, ipdenylist.go), each named after the Go test it mirrors,
and clients that try to talk their way past a list with forwarded headers
(docs/behaviour.md, "Access by client address"). Clients connect from other loopback
addresses (127.0.0.9, ...), so the peer address itself varies."""

from __future__ import annotations

from pathlib import Path

import aiohttp

from proxy.app.runtime import ProxyServer
from proxy.core.access import DEFAULT_TRUSTED, RealIp, parse_ranges
from tests.integration.cluster import Pods, web_app, write_manifest
from tests.integration.conftest import StartManifestProxy
from tests.integration.harness import Upstream, url

FORWARDED_HEADERS = RealIp(b"x-forwarded-for", parse_ranges(DEFAULT_TRUSTED))


async def serve(
    tmp_path: Path,
    manifest_proxy: StartManifestProxy,
    pods: Pods,
    real_ip: RealIp | None = None,
    **annotations: str,
) -> ProxyServer:
    manifest = tmp_path / "cluster.yaml"
    write_manifest(manifest, web_app(pods.started, **annotations))
    return await manifest_proxy(manifest, real_ip=real_ip)


async def ask(
    server: ProxyServer, client: str = "127.0.0.1", **headers: str
) -> tuple[int, dict[str, str]]:
    """The status of one request from `client`, and the headers the pod saw with its name as
    "pod" (none when the proxy answered itself)."""
    sent = {"Host": "app.test", **{name.replace("_", "-"): v for name, v in headers.items()}}
    connector = aiohttp.TCPConnector(local_addr=(client, 0))
    async with (
        aiohttp.ClientSession(connector=connector) as session,
        session.get(url(server), headers=sent) as response,
    ):
        if response.content_type != "application/json":
            return response.status, {}
        echoed = await response.json()
        seen = {name.lower(): value for name, value in echoed["headers"]}
        return response.status, {**seen, "pod": echoed["name"]}


async def test_should_set_valid_ip_allowlist_range(
    pod: Upstream, pods: Pods, tmp_path: Path, manifest_proxy: StartManifestProxy
) -> None:
    """The Go test checks the nginx config for `allow ...; deny all;`; here, what it does."""
    server = await serve(
        tmp_path, manifest_proxy, pods, allowlist_source_range="18.0.0.0/8, 127.0.0.8/29"
    )
    assert (await ask(server, "127.0.0.9"))[0] == 200
    assert (await ask(server, "127.0.0.15"))[0] == 200
    assert (await ask(server, "127.0.0.1"))[0] == 403
    assert (await ask(server, "127.0.0.16"))[0] == 403


async def test_only_deny_explicitly_denied_ips_allow_all_others(
    pod: Upstream, pods: Pods, tmp_path: Path, manifest_proxy: StartManifestProxy
) -> None:
    server = await serve(
        tmp_path,
        manifest_proxy,
        pods,
        FORWARDED_HEADERS,
        denylist_source_range="18.0.0.0/8, 56.0.0.1",
    )
    # sending request from an explicitly denied IP range, then address
    assert (await ask(server, X_Forwarded_For="18.0.0.1"))[0] == 403
    assert (await ask(server, X_Forwarded_For="56.0.0.1"))[0] == 403
    # sending request from an implicitly allowed IP range
    status, seen = await ask(server, X_Forwarded_For="56.0.0.2")
    assert status == 200
    assert seen["x-real-ip"] == "56.0.0.2"  # what was checked is what the pod is told
    assert seen["x-forwarded-for"] == "56.0.0.2, 127.0.0.1"


async def test_only_allow_explicitly_allowed_ips_deny_all_others(
    pod: Upstream, pods: Pods, tmp_path: Path, manifest_proxy: StartManifestProxy
) -> None:
    server = await serve(
        tmp_path,
        manifest_proxy,
        pods,
        FORWARDED_HEADERS,
        denylist_source_range="18.1.0.0/16, 56.0.0.0/8",
        whitelist_source_range="18.0.0.0/8, 55.0.0.0/8",
    )
    assert (await ask(server, X_Forwarded_For="18.1.0.1"))[0] == 403  # explicitly denied
    assert (await ask(server, X_Forwarded_For="10.10.10.10"))[0] == 403  # implicitly denied
    assert (await ask(server, X_Forwarded_For="18.4.0.1"))[0] == 200  # explicitly allowed
    assert (await ask(server, X_Forwarded_For="55.55.55.55"))[0] == 200


async def test_forwarded_headers_do_not_move_the_client_without_use_forwarded_headers(
    pod: Upstream, pods: Pods, tmp_path: Path, manifest_proxy: StartManifestProxy
) -> None:
    """The hostile case: a client naming an allowed address in every header that could carry
    one is still the address it connects from."""
    server = await serve(tmp_path, manifest_proxy, pods, allowlist_source_range="10.0.0.0/8")
    spoofs = {
        "X_Forwarded_For": "10.1.2.3",
        "X_Real_IP": "10.1.2.3",
        "Forwarded": "for=10.1.2.3",
        "X_Original_Forwarded_For": "10.1.2.3",
    }
    assert (await ask(server, **spoofs))[0] == 403
    denied = await serve(tmp_path, manifest_proxy, pods, denylist_source_range="127.0.0.1")
    assert (await ask(denied, X_Forwarded_For="8.8.8.8"))[0] == 403
    status, seen = await ask(denied, "127.0.0.9", X_Forwarded_For="127.0.0.1", X_Real_IP="1.1.1.1")
    assert status == 200
    assert seen["x-real-ip"] == "127.0.0.9"


async def test_only_hops_added_by_trusted_proxies_count(
    pod: Upstream, pods: Pods, tmp_path: Path, manifest_proxy: StartManifestProxy
) -> None:
    """With trusted proxies, a client's own X-Forwarded-For entries stay behind the address its
    proxy appended; an untrusted peer's header is not read at all; nor is Forwarded."""
    trusted = RealIp(b"x-forwarded-for", parse_ranges("127.0.0.1/32"))
    server = await serve(
        tmp_path, manifest_proxy, pods, trusted, allowlist_source_range="10.0.0.0/8"
    )
    assert (await ask(server, X_Forwarded_For="10.1.2.3"))[0] == 200
    # the client sent "10.1.2.3"; the trusted proxy appended the address it came from
    assert (await ask(server, X_Forwarded_For="10.1.2.3, 203.0.113.7"))[0] == 403
    assert (await ask(server, "127.0.0.9", X_Forwarded_For="10.1.2.3"))[0] == 403
    assert (await ask(server, Forwarded="for=10.1.2.3"))[0] == 403
    assert (await ask(server, X_Real_IP="10.1.2.3"))[0] == 403


async def test_ipv6_ranges_against_a_forwarded_ipv6_client(
    pod: Upstream, pods: Pods, tmp_path: Path, manifest_proxy: StartManifestProxy
) -> None:
    server = await serve(
        tmp_path,
        manifest_proxy,
        pods,
        FORWARDED_HEADERS,
        allowlist_source_range="2001:db8::/32",
        denylist_source_range="2001:db8:dead::/48",
    )
    status, seen = await ask(server, X_Forwarded_For="2001:db8::5")
    assert status == 200
    assert seen["x-real-ip"] == "2001:db8::5"
    assert (await ask(server, X_Forwarded_For="2001:db9::5"))[0] == 403
    assert (await ask(server, X_Forwarded_For="2001:db8:dead::1"))[0] == 403


async def test_an_invalid_list_answers_503_instead_of_serving_everyone(
    pod: Upstream, pods: Pods, tmp_path: Path, manifest_proxy: StartManifestProxy
) -> None:
    server = await serve(
        tmp_path, manifest_proxy, pods, whitelist_source_range="10.0.0.0/8, 300.0.0.1"
    )
    assert (await ask(server))[0] == 503
    assert (await ask(server, "127.0.0.9"))[0] == 503


async def test_hash_by_remote_addr_hashes_the_forwarded_client(
    pods: Pods, tmp_path: Path, manifest_proxy: StartManifestProxy
) -> None:
    """$remote_addr is the client address use-forwarded-headers takes, as in nginx: every
    request arrives from 127.0.0.1 here, yet clients spread over the pods, each kept on one."""
    await pods.start(3)
    server = await serve(
        tmp_path, manifest_proxy, pods, FORWARDED_HEADERS, upstream_hash_by="$remote_addr"
    )
    chosen: dict[str, set[str]] = {}
    for number in range(20):
        client = f"198.51.100.{number}"
        for _ in range(3):
            _, seen = await ask(server, X_Forwarded_For=client)
            chosen.setdefault(client, set()).add(seen["pod"])
    assert all(len(pods_seen) == 1 for pods_seen in chosen.values())
    assert len(set().union(*chosen.values())) > 1  # all 20 on one of 3 pods: odds of 3^-19

"""ingress-nginx's own cookie-affinity e2e cases (test/e2e/annotations/affinity.go), here run
from manifest files through a real proxy to real upstreams."""

from __future__ import annotations

import calendar
import logging
import time
from pathlib import Path

import pytest

from tests.integration.cluster import (
    endpoint_slice,
    get,
    ingress,
    path,
    reload_after,
    rule,
    service,
    web_app,
    write_manifest,
)
from tests.integration.conftest import StartManifestProxy
from tests.integration.harness import Upstream


async def test_cookie_name_comes_from_the_annotation_and_follows_edits(
    pod: Upstream, manifest: Path, manifest_proxy: StartManifestProxy
) -> None:
    write_manifest(manifest, web_app([pod], affinity="cookie", session_cookie_name="SERVERID"))
    server = await manifest_proxy(manifest)
    answer = await get(server)
    assert answer.status == 200
    assert answer.cookie("SERVERID")

    new_name = web_app([pod], affinity="cookie", session_cookie_name="OTHERCOOKIENAME")
    assert await reload_after(server, lambda: write_manifest(manifest, new_name)) == "success"
    answer = await get(server)
    assert answer.cookie("OTHERCOOKIENAME")
    assert not any(c.startswith("SERVERID=") for c in answer.set_cookies)


async def test_path_of_the_cookie_is_the_ingress_path(
    pod: Upstream, manifest: Path, manifest_proxy: StartManifestProxy
) -> None:
    write_manifest(
        manifest,
        web_app([pod], rule("app.test", path("/something")), affinity="cookie"),
    )
    server = await manifest_proxy(manifest)
    answer = await get(server, "/something")
    assert "; Path=/something;" in answer.cookie("INGRESSCOOKIE")


async def test_two_paths_to_one_service_each_get_their_own_path(
    pod: Upstream, manifest: Path, manifest_proxy: StartManifestProxy
) -> None:
    paths = rule("app.test", path("/something"), path("/somewhereelse"))
    write_manifest(manifest, web_app([pod], paths, affinity="cookie"))
    server = await manifest_proxy(manifest)
    for prefix in ("/something", "/somewhereelse"):
        answer = await get(server, prefix + "/page")
        assert f"; Path={prefix};" in answer.cookie("INGRESSCOOKIE"), prefix


async def test_expires_and_max_age_together(
    pod: Upstream, manifest: Path, manifest_proxy: StartManifestProxy
) -> None:
    write_manifest(
        manifest,
        web_app(
            [pod],
            affinity="cookie",
            session_cookie_expires="172800",
            session_cookie_max_age="259200",
        ),
    )
    server = await manifest_proxy(manifest)
    before = int(time.time())
    cookie = (await get(server)).cookie("INGRESSCOOKIE")
    after = int(time.time())
    attributes = dict(
        part.strip().partition("=")[::2] for part in cookie.split(";")[1:] if "=" in part
    )
    assert attributes["Max-Age"] == "259200"
    # nginx's cookie date: `Wdy, DD-Mon-YY HH:MM:SS GMT`, whole seconds.
    expires = calendar.timegm(time.strptime(attributes["Expires"], "%a, %d-%b-%y %H:%M:%S GMT"))
    assert before + 172800 <= expires <= after + 172800
    assert cookie.index("Expires=") < cookie.index("Max-Age=")


async def test_domain_only_when_annotated(
    pod: Upstream, tmp_path: Path, manifest_proxy: StartManifestProxy
) -> None:
    with_domain = tmp_path / "with"
    without = tmp_path / "without"
    for directory in (with_domain, without):
        directory.mkdir()
    write_manifest(
        with_domain / "app.yaml",
        web_app([pod], affinity="cookie", session_cookie_domain="foo.bar"),
    )
    write_manifest(without / "app.yaml", web_app([pod], affinity="cookie"))
    annotated, plain = await manifest_proxy(with_domain), await manifest_proxy(without)
    assert "; Domain=foo.bar;" in (await get(annotated)).cookie("INGRESSCOOKIE")
    assert "Domain=" not in (await get(plain)).cookie("INGRESSCOOKIE")


async def test_use_regex_with_session_cookie_path(
    pod: Upstream, manifest: Path, manifest_proxy: StartManifestProxy
) -> None:
    regex = rule("app.test", path("/foo/.*", path_type="ImplementationSpecific"))
    write_manifest(
        manifest,
        web_app([pod], regex, affinity="cookie", use_regex="true", session_cookie_path="/foo/bar"),
    )
    server = await manifest_proxy(manifest)
    answer = await get(server, "/foo/bar")
    assert answer.status == 200
    assert "; Path=/foo/bar;" in answer.cookie("INGRESSCOOKIE")


async def test_use_regex_without_session_cookie_path_warns_once(
    pod: Upstream,
    manifest: Path,
    manifest_proxy: StartManifestProxy,
    caplog: pytest.LogCaptureFixture,
) -> None:
    def said(text: str) -> list[str]:
        return [r.getMessage() for r in caplog.records if text in r.getMessage()]

    caplog.set_level(logging.INFO, "sticky_proxy")
    regex = rule("app.test", path("/foo/.*", path_type="ImplementationSpecific"))
    objects = web_app([pod], regex, affinity="cookie", use_regex="true")
    write_manifest(manifest, objects)
    server = await manifest_proxy(manifest)
    (warning,) = said("session-cookie-path")
    assert warning.startswith("Ingress default/web: ")
    # A new snapshot with the same warning (here a pod renamed) does not say it again.
    objects[2]["endpoints"][0]["targetRef"]["name"] = "renamed"
    assert await reload_after(server, lambda: write_manifest(manifest, objects)) == "success"
    assert len(said("routing updated")) == 2
    assert said("session-cookie-path") == [warning]


async def test_no_cookie_on_a_path_whose_ingress_has_no_affinity_on_a_shared_host(
    pod: Upstream, manifest: Path, manifest_proxy: StartManifestProxy
) -> None:
    write_manifest(
        manifest,
        [
            ingress("sticky", rule("app.test", path("/")), affinity="cookie"),
            ingress("plain", rule("app.test", path("/foo"))),
            service(),
            endpoint_slice([pod]),
        ],
    )
    server = await manifest_proxy(manifest)
    assert (await get(server, "/")).cookie("INGRESSCOOKIE")
    plain = await get(server, "/foo")
    assert plain.status == 200
    assert plain.set_cookies == ()


async def test_no_host_rule_serves_every_host_with_cookies(
    pod: Upstream, manifest: Path, manifest_proxy: StartManifestProxy
) -> None:
    write_manifest(manifest, web_app([pod], rule(None), affinity="cookie"))
    server = await manifest_proxy(manifest)
    for host in ("app.test", "anything.example", "127.0.0.1"):
        answer = await get(server, host=host)
        assert answer.status == 200, host
        assert answer.cookie("INGRESSCOOKIE"), host


async def test_server_alias_gets_the_same_routes_and_cookie(
    pod: Upstream, manifest: Path, manifest_proxy: StartManifestProxy
) -> None:
    write_manifest(
        manifest, web_app([pod], affinity="cookie", server_alias="alias.test, other.test")
    )
    server = await manifest_proxy(manifest)
    for host in ("app.test", "alias.test", "other.test"):
        answer = await get(server, host=host)
        assert answer.status == 200, host
        assert answer.cookie("INGRESSCOOKIE"), host
    assert (await get(server, host="unknown.test")).status == 404


@pytest.mark.parametrize(("annotation", "secure"), [("true", True), ("false", False)])
async def test_secure_follows_the_annotation_on_plain_http(
    pod: Upstream,
    manifest: Path,
    manifest_proxy: StartManifestProxy,
    annotation: str,
    secure: bool,
) -> None:
    write_manifest(manifest, web_app([pod], affinity="cookie", session_cookie_secure=annotation))
    server = await manifest_proxy(manifest)
    cookie = (await get(server)).cookie("INGRESSCOOKIE")
    assert ("; Secure" in cookie) is secure
    assert cookie.endswith("; HttpOnly")

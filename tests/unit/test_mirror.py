"""mirror-target, mirror-host and mirror-request-body: the annotations, and the copy's URL and
headers (docs/behaviour.md, "Mirroring")."""

from __future__ import annotations

import pytest

from proxy.control.translate.annotations import PREFIX
from proxy.core.external_auth import Facts, parse_template
from proxy.core.headers import scan_request
from proxy.core.mirror import MIRRORED, Mirror, mirrored
from tests.unit.kube_fixtures import parsed


def facts(request_uri: str) -> Facts:
    return Facts("app.test", "app.test:8080", "https", request_uri, "POST", "10.0.0.1")


def mirror_of(target: str, host: str = "shadow") -> Mirror:
    return Mirror(parse_template(target), parse_template(host))


# --- the annotations ---------------------------------------------------------------------------


def test_target_host_and_body() -> None:
    settings = parsed(mirror_target="http://shadow.test:8080/mirror")
    assert settings.mirror == mirror_of("http://shadow.test:8080/mirror", "shadow.test")
    assert settings.warnings == ()
    off = parsed(mirror_target="https://x.test$request_uri", mirror_request_body="off")
    assert off.mirror == Mirror(parse_template("https://x.test$request_uri"),
                                parse_template("x.test"), body=False)  # fmt: skip
    hosted = parsed(mirror_target="http://10.0.0.9/m", mirror_host="$host")
    assert hosted.mirror is not None
    assert hosted.mirror.host.expand(facts("/").values()) == "app.test"


def test_request_body_other_than_on_or_off_is_on() -> None:
    """ingress-nginx's OnOffRegex refuses it with a warning; then anything but off is on."""
    settings = parsed(mirror_target="http://shadow/", mirror_request_body="no")
    assert settings.mirror is not None and settings.mirror.body
    assert settings.warnings == (f"{PREFIX}mirror-request-body: 'no' is not on or off; on",)


@pytest.mark.parametrize(
    ("target", "complaint"),
    [
        ("/mirror", "'/mirror' is not an http or https URL; ignored"),
        ("shadow.test", "'shadow.test' is not an http or https URL; ignored"),
        ("http://$host/x", "invalid url host in 'http://$host/x'; ignored"),
        ("http://a..b/x", "invalid url host in 'http://a..b/x'; ignored"),
        ("http://shadow:99999/", "invalid port in 'http://shadow:99999/'; ignored"),
        ("http://shadow/%2e", "holds characters ingress-nginx refuses in a server name"),
        ("http://shadow/$remote_user", "$remote_user is not a variable known here"),
    ],
)
def test_an_unusable_target_mirrors_nothing(target: str, complaint: str) -> None:
    settings = parsed(mirror_target=target)
    assert settings.mirror is None
    (warning,) = settings.warnings
    assert warning.startswith(f"{PREFIX}mirror-target: ")
    assert complaint in warning


def test_host_and_body_without_a_target_are_ignored() -> None:
    settings = parsed(mirror_host="shadow", mirror_request_body="off")
    assert settings.mirror is None
    assert settings.warnings == (
        f"{PREFIX}mirror-host is ignored without {PREFIX}mirror-target",
        f"{PREFIX}mirror-request-body is ignored without {PREFIX}mirror-target",
    )


def test_an_invalid_host_takes_the_target_s() -> None:
    settings = parsed(mirror_target="http://shadow.test/m", mirror_host="bad host!")
    assert settings.mirror == mirror_of("http://shadow.test/m", "shadow.test")
    assert len(settings.warnings) == 1


# --- the copy ----------------------------------------------------------------------------------


def test_url_with_a_path_takes_the_query() -> None:
    mirror = mirror_of("http://shadow/mirror")
    assert mirror.url(facts("/x/y?a=1&b=2")) == "http://shadow/mirror?a=1&b=2"
    assert mirror.url(facts("/x/y")) == "http://shadow/mirror"
    assert mirror_of("http://shadow/m?k=v").url(facts("/x?a=1")) == "http://shadow/m?k=v&a=1"


def test_url_without_a_path_takes_the_request_uri() -> None:
    assert mirror_of("http://shadow:8080").url(facts("/x?a=1")) == "http://shadow:8080/x?a=1"


def test_url_with_variables_is_the_expansion() -> None:
    assert mirror_of("https://shadow$request_uri").url(facts("/x?a=1")) == "https://shadow/x?a=1"
    assert mirror_of("https://shadow/$request_uri").url(facts("/x")) == "https://shadow//x"
    assert (
        mirror_of("http://shadow/$scheme/$host").url(facts("/")) == "http://shadow/https/app.test"
    )


def test_headers_are_the_client_s_with_host_and_the_mark() -> None:
    request = scan_request(
        b"POST",
        b"/x",
        True,
        [
            (b"Host", b"app.test"),
            (b"Content-Length", b"3"),
            (b"X-Forwarded-For", b"192.0.2.7"),
            (b"X-Real-IP", b"192.0.2.8"),
            (b"Accept", b"text/plain"),
            (b"Connection", b"keep-alive"),
        ],
    )
    assert mirror_of("http://shadow/m").headers(request, facts("/x")) == [
        ("Accept", "text/plain"),
        ("Host", "shadow"),
        ("X-Forwarded-For", "192.0.2.7"),
        (MIRRORED, "1"),
    ]
    assert not mirrored(request)
    again = scan_request(b"GET", b"/", True, [(b"Host", b"a"), (b"x-sticky-proxy-mirror", b"1")])
    assert mirrored(again)

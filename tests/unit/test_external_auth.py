"""External auth without I/O: the auth-* annotations as ingress-nginx's authreq parser reads them
(authreq/main.go), the subrequest's headers, the verdict on the auth service's status, the
sign-in URL, and the headers the upstream gets (docs/behaviour.md, "External authentication")."""

from __future__ import annotations

import pytest

from proxy.control.translate.annotations import IngressSettings
from proxy.control.translate.auth_headers import with_auth_headers
from proxy.core.external_auth import (
    AuthCache,
    ExternalAuth,
    Facts,
    Template,
    answer_lines,
    cache_seconds,
    escape_uri,
    forwarded_with,
    parse_cache_durations,
    parse_template,
    refusal,
    signin_join,
    signin_location,
    subrequest_headers,
)
from proxy.core.hash_key import HashKey
from tests.unit.kube_fixtures import parsed

P = "nginx.ingress.kubernetes.io/"
FACTS = Facts(
    host="app.test",
    http_host="app.test:8080",
    scheme="https",
    request_uri="/a b/?x=1&y=2",
    method="POST",
    client="10.0.0.7",
)


# --- the annotations --------------------------------------------------------------------------


def test_auth_url_alone_asks_with_get_and_no_signin() -> None:
    settings = parsed(auth_url="http://auth.example/check?x=1")
    assert settings.external_auth == ExternalAuth(Template(("http://auth.example/check?x=1",)))
    assert settings.denied is None
    assert settings.warnings == ()


def test_every_annotation_is_taken() -> None:
    settings = parsed(
        auth_url="https://auth.example:8443/$host/check",
        auth_method="POST",
        auth_signin="https://login.example/start?next=1",
        auth_signin_redirect_param="back",
        auth_response_headers="X-User, X-Email ,X-Groups",
        auth_request_redirect="https://app.example/return?x=1",
        auth_always_set_cookie="true",
    )
    assert settings.external_auth == ExternalAuth(
        url=Template(("https://auth.example:8443/", "host", "/check")),
        method="POST",
        signin=Template(("https://login.example/start?next=1",)),
        signin_join="&back=",
        response_headers=("X-User", "X-Email", "X-Groups"),
        request_redirect="https://app.example/return?x=1",
        always_set_cookie=True,
    )
    assert settings.warnings == ()


def test_without_auth_url_the_others_are_warned_about() -> None:
    settings = parsed(auth_signin="http://login/", auth_response_headers="X-User")
    assert settings.external_auth is None
    assert settings.warnings == (
        f"{P}auth-signin is ignored without {P}auth-url",
        f"{P}auth-response-headers is ignored without {P}auth-url",
    )


@pytest.mark.parametrize(
    ("annotations", "why"),
    [
        ({"auth_url": "https://invalid..auth.url"}, "invalid url host"),  # the e2e case
        ({"auth_url": "/relative"}, "not an http or https URL"),
        ({"auth_url": "ftp://auth/x"}, "not an http or https URL"),
        ({"auth_url": "http://auth:http/x"}, "invalid port"),
        ({"auth_url": "http://auth/#frag"}, "characters other than"),
        ({"auth_url": "http://auth/%41"}, "characters other than"),
        ({"auth_url": "http://auth/$cookie_session"}, "$cookie_session is not a variable"),
        ({"auth_method": "FETCH"}, "not an HTTP method"),
        ({"auth_method": "get"}, "not an HTTP method"),
        ({"auth_response_headers": "X-User, X.Dot"}, "not a comma-separated list"),
        ({"auth_response_headers": "X-User, X User"}, "'X User' is not a header name"),
        ({"auth_request_redirect": "http://x/$host"}, "characters other than"),
        ({"auth_always_set_cookie": "yes"}, "not a boolean"),
    ],
)
def test_values_ingress_nginx_denies_or_would_open_deny_the_paths(
    annotations: dict[str, str], why: str
) -> None:
    settings = parsed(**{"auth_url": "http://auth/check", **annotations})
    assert settings.external_auth is None
    assert settings.denied is not None and why in settings.denied
    assert len(settings.warnings) == 1
    assert settings.warnings[0].endswith("; its paths answer 503")


def test_headers_the_proxy_sets_itself_are_not_copied_from_the_auth_service() -> None:
    """A Content-Length or Transfer-Encoding of the auth service's beside the proxy's own
    framing would smuggle a request; a Host it does not send would leave none."""
    settings = parsed(
        auth_url="http://auth/check",
        auth_response_headers="Content-Length, X-User, transfer-encoding, Host, X_Forwarded_For",
    )
    assert settings.external_auth is not None
    assert settings.external_auth.response_headers == ("X-User",)
    assert settings.warnings == (
        f"{P}auth-response-headers: Content-Length, transfer-encoding, Host, X_Forwarded_For set"
        " by the proxy itself; not copied",
    )


def test_an_invalid_signin_or_redirect_param_is_ignored_with_a_warning() -> None:
    settings = parsed(
        auth_url="http://auth/check", auth_signin="http://x/#y", auth_signin_redirect_param="a b!"
    )
    assert settings.denied is None
    assert settings.external_auth == ExternalAuth(Template(("http://auth/check",)))
    assert [line.split(":")[0] for line in settings.warnings] == [
        f"{P}auth-signin",
        f"{P}auth-signin-redirect-param",
    ]


def test_keepalive_annotations_have_no_effect() -> None:
    settings = parsed(auth_url="http://auth/check", auth_keepalive="10")
    assert settings.external_auth is not None
    assert settings.warnings == (
        f"{P}auth-keepalive has no effect here (connections to auth services are kept alive per"
        " worker anyway); ignored",
    )


def test_a_cache_key_takes_ingress_nginx_s_default_durations() -> None:
    settings = parsed(auth_url="http://auth/check", auth_cache_key="$remote_user${http_x_id}")
    assert settings.external_auth is not None
    cache = settings.external_auth.cache
    assert cache is not None
    assert cache.key == HashKey("$remote_user${http_x_id}")
    assert cache.valid == ((frozenset({200, 202, 401}), 300.0),)
    assert settings.warnings == ()


def test_a_cache_key_with_a_variable_not_known_here_caches_nothing() -> None:
    """Read as empty, it would let one user's answer stand for another's request."""
    settings = parsed(auth_url="http://auth/check", auth_cache_key="$ssl_client_s_dn")
    assert settings.external_auth is not None and settings.external_auth.cache is None
    assert settings.warnings == (
        f"{P}auth-cache-key: $ssl_client_s_dn not known here; answers are not cached; ignored",
    )


def test_answers_to_subrequests_other_than_get_or_head_are_not_cached() -> None:
    settings = parsed(auth_url="http://auth/check", auth_method="POST", auth_cache_key="k")
    assert settings.external_auth is not None and settings.external_auth.cache is None
    assert settings.warnings == (
        f"{P}auth-cache-key: answers to POST subrequests are not cached; ignored",
    )
    head = parsed(auth_url="http://auth/check", auth_method="HEAD", auth_cache_key="k")
    assert head.external_auth is not None and head.external_auth.cache is not None


@pytest.mark.parametrize(
    ("text", "valid"),
    [
        ("200 202 401 5m", ((frozenset({200, 202, 401}), 300.0),)),
        ("30s", ((frozenset({200, 301, 302}), 30.0),)),  # proxy_cache_valid's default codes
        ("200 1h, 401 500ms, any 2d", ((frozenset({200}), 3600.0), (frozenset({401}), 0.5),
                                       (frozenset(), 172800.0))),
    ],
)  # fmt: skip
def test_cache_durations_are_proxy_cache_valid_lines(
    text: str, valid: tuple[tuple[frozenset[int], float], ...]
) -> None:
    assert parse_cache_durations(text) == valid


@pytest.mark.parametrize("text", ["200", "200 5 m", "2000 5m", "abc 5m", "5m 200", "200 5x"])
def test_invalid_cache_durations_deny_the_paths(text: str) -> None:
    settings = parsed(auth_url="http://auth/check", auth_cache_key="k", auth_cache_duration=text)
    assert settings.external_auth is None
    assert settings.denied is not None and "auth-cache-duration" in settings.denied


def test_what_nginx_s_proxy_cache_keeps_and_for_how_long() -> None:
    cache = AuthCache(HashKey("k"), ((frozenset({200, 401}), 60.0),))
    assert cache_seconds(cache, 200, []) == 60.0
    assert cache_seconds(cache, 401, [(b"WWW-Authenticate", b"Basic")]) == 60.0
    assert cache_seconds(cache, 403, []) == 0.0  # not a listed status
    assert cache_seconds(cache, 0, []) == 0.0  # no answer at all
    assert cache_seconds(cache, 200, [(b"Set-Cookie", b"a=1")]) == 0.0
    assert cache_seconds(cache, 200, [(b"Vary", b"*")]) == 0.0
    assert cache_seconds(cache, 200, [(b"cache-control", b"private, max-age=9")]) == 0.0
    assert cache_seconds(cache, 200, [(b"Cache-Control", b"public, max-age=9")]) == 9.0
    assert cache_seconds(cache, 403, [(b"Cache-Control", b"s-maxage=9")]) == 9.0
    assert cache_seconds(cache, 200, [(b"X-Accel-Expires", b"0")]) == 0.0
    assert (
        cache_seconds(cache, 200, [(b"Cache-Control", b"max-age=9"), (b"X-Accel-Expires", b"20")])
        == 20.0
    )


# --- templates and the sign-in URL ------------------------------------------------------------


def test_a_template_expands_its_variables() -> None:
    template = parse_template("http://$host:9000/check?u=$escaped_request_uri&m=$request_method")
    assert template.expand(FACTS.values()) == (
        "http://app.test:9000/check?u=%2Fa%20b%2F%3Fx%3D1%26y%3D2&m=POST"
    )


def test_escape_uri_keeps_only_unreserved_characters() -> None:
    assert escape_uri("/?a=b&c=d") == "%2F%3Fa%3Db%26c%3Dd"  # the e2e test's url.QueryEscape
    assert escape_uri("AZaz09-._~ \xe9") == "AZaz09-._~%20%E9"  # one byte as received


@pytest.mark.parametrize(
    ("signin", "join"),
    [
        ("http://login/start", "?rd="),
        ("http://login/start?a=1", "&rd="),
        ("http://login/start?rd=http://fixed", ""),  # already names it: as written
        ("http://login/start?rd=", "&rd="),  # named but empty (Go's q.Get is "")
    ],
)
def test_the_original_url_joins_the_signin_url_as_ingress_nginx_s_build_auth_sign_url(
    signin: str, join: str
) -> None:
    assert signin_join(signin, "rd") == join


def test_the_signin_location_carries_the_original_url_escaped() -> None:
    auth = ExternalAuth(
        url=parse_template("http://auth/"),
        signin=parse_template("https://$host/login"),
        signin_join="?rd=",
    )
    assert signin_location(auth, FACTS) == (
        "https://app.test/login?rd=https://app.test:8080%2Fa%20b%2F%3Fx%3D1%26y%3D2"
    )


# --- the subrequest, the verdict, the upstream's headers -------------------------------------


def test_the_subrequest_passes_the_clients_headers_but_replaces_the_auth_locations() -> None:
    forward = [
        (b"Host", b"app.test:8080"),
        (b"Cookie", b"s=1"),
        (b"x-real-ip", b"6.6.6.6"),
        (b"X-Original-URL", b"http://evil/"),
        (b"Expect", b"100-continue"),
        (b"Content-Length", b"5"),
        (b"Authorization", b"Bearer t"),
    ]
    auth = ExternalAuth(url=parse_template("http://auth/"))
    assert subrequest_headers(auth, forward, FACTS, "rid", "auth") == [
        ("Cookie", "s=1"),
        ("Authorization", "Bearer t"),
        ("Host", "auth"),
        ("X-Original-URL", "https://app.test:8080/a b/?x=1&y=2"),
        ("X-Original-Method", "POST"),
        ("X-Sent-From", "nginx-ingress-controller"),
        ("X-Real-IP", "10.0.0.7"),
        ("X-Forwarded-For", "10.0.0.7"),
        ("X-Auth-Request-Redirect", "/a b/?x=1&y=2"),
        ("X-Request-ID", "rid"),
    ]


def test_utf_8_in_the_clients_headers_and_target_reaches_the_auth_service_unchanged() -> None:
    """aiohttp writes header text as UTF-8: what it is given must give the bytes received."""
    auth = ExternalAuth(url=parse_template("http://auth/"))
    facts = Facts("h", "h", "http", "/caf\xc3\xa9", "GET", "10.0.0.7")  # (bytes read as latin-1)
    headers = dict(subrequest_headers(auth, [(b"X-Name", "é".encode())], facts, "r", "auth"))
    assert headers["X-Name"].encode() == "é".encode()
    assert headers["X-Original-URL"].encode() == "http://h/café".encode()


def test_with_auth_method_the_subrequest_also_names_the_uri_and_scheme() -> None:
    auth = ExternalAuth(url=parse_template("http://auth/"), method="PUT", request_redirect="/r")
    headers = dict(subrequest_headers(auth, [], FACTS, "rid", "auth"))
    assert headers["X-Original-URI"] == "/a b/?x=1&y=2"
    assert headers["X-Scheme"] == "https"
    assert headers["X-Auth-Request-Redirect"] == "/r"


@pytest.mark.parametrize(
    ("status", "refused"),
    [(200, 0), (202, 0), (299, 0), (401, 401), (403, 403), (0, 500), (100, 500), (301, 500),
     (404, 500), (500, 500), (502, 500)],
)  # fmt: skip
def test_the_verdict_is_auth_request_s(status: int, refused: int) -> None:
    assert refusal(status) == refused


def test_named_headers_are_the_auth_services_whatever_the_client_sent() -> None:
    forward = [(b"X-User", b"admin"), (b"x-user", b"root"), (b"X-Keep", b"1"), (b"X-GONE", b"1"),
               (b"X_User", b"twin")]  # fmt: skip
    answer = [(b"x-user", b"alice"), (b"X-User", b"bob"), (b"X-Other", b"o")]
    assert forwarded_with(forward, ("X-User", "X-Gone"), answer) == [
        (b"X-Keep", b"1"),
        (b"X-User", b"alice, bob"),
    ]


def test_a_name_with_underscores_matches_its_dashed_twins() -> None:
    forward = [(b"X-Tenant", b"forged"), (b"x_tenant", b"forged")]
    assert forwarded_with(forward, ("X_Tenant",), [(b"X-Tenant", b"t1")]) == [(b"X_Tenant", b"t1")]


def test_answer_lines_keeps_each_set_cookie() -> None:
    answer = [(b"Set-Cookie", b"a=1"), (b"X", b"y"), (b"set-cookie", b"b=2; Path=/")]
    assert answer_lines(answer, b"set-cookie") == b"Set-Cookie: a=1\r\nset-cookie: b=2; Path=/\r\n"


# --- auth-proxy-set-headers -------------------------------------------------------------------


def test_set_headers_replace_the_clients_and_an_empty_value_sends_none() -> None:
    auth = ExternalAuth(
        url=parse_template("http://auth/"),
        set_headers=(("X-Tenant", "shop"), ("x-drop", ""), ("X-Sent-From", "edge")),
    )
    forward = [(b"x-tenant", b"forged"), (b"X-Drop", b"forged"), (b"Cookie", b"s=1")]
    headers = subrequest_headers(auth, forward, FACTS, "rid", "auth")
    assert [value for name, value in headers if name.lower() == "x-tenant"] == ["shop"]
    assert [value for name, value in headers if name.lower() == "x-drop"] == []
    assert [value for name, value in headers if name.lower() == "x-sent-from"] == ["edge"]
    assert ("Cookie", "s=1") in headers


def _with_config_map(
    data: dict[str, str] | None, ref: str = "default/auth-headers"
) -> IngressSettings:
    settings = parsed(auth_url="http://auth/", auth_proxy_set_headers=ref)
    maps = {} if data is None else {("default", "auth-headers"): data}
    return with_auth_headers(settings, "default", maps)


def test_the_config_map_s_headers_join_the_external_auth_sorted() -> None:
    settings = _with_config_map({"X-B": "2", "X-A": "1", "Content-Length": "0"})
    assert settings.denied is None and settings.external_auth is not None
    assert settings.external_auth.set_headers == (("X-A", "1"), ("X-B", "2"))
    assert any("Content-Length is the proxy's own" in line for line in settings.warnings)


@pytest.mark.parametrize(
    ("data", "ref"),
    [(None, "default/auth-headers"), ({"X-A": "1"}, "auth-headers"),
     ({"X-A": "1"}, "other/auth-headers"), ({"X-A": "1\r\nX-B: 2"}, "default/auth-headers"),
     ({"X A": "1"}, "default/auth-headers")],
    ids=["missing", "bare-name", "other-namespace", "crlf", "bad-name"],
)  # fmt: skip
def test_an_unusable_config_map_denies_and_asks_nobody(
    data: dict[str, str] | None, ref: str
) -> None:
    settings = _with_config_map(data, ref)
    assert settings.denied is not None and settings.external_auth is None
    assert any(line.endswith("; its paths answer 503") for line in settings.warnings)


def test_an_invalid_config_map_reference_is_ignored_with_a_warning() -> None:
    """ingress-nginx: the annotation fails validation and auth goes on without the headers."""
    settings = parsed(auth_url="http://auth/", auth_proxy_set_headers="a b")
    assert settings.external_auth is not None and settings.external_auth.set_headers_from is None
    assert settings.denied is None
    assert any("auth-proxy-set-headers: 'a b'" in line for line in settings.warnings)


def test_auth_proxy_set_headers_without_auth_url_is_ignored() -> None:
    settings = parsed(auth_proxy_set_headers="default/auth-headers")
    assert settings.external_auth is None
    assert any("auth-proxy-set-headers" in line for line in settings.warnings)

"""Basic authentication without I/O: Authorization values as nginx reads them, the 401 answer,
the annotations as ingress-nginx parses them (annotations/auth/main.go), the users of a Secret,
and the per-process memory of verified credentials."""

from __future__ import annotations

import base64

import bcrypt
import pytest

from proxy.control.translate.auth_secrets import with_basic_auth
from proxy.control.translate.basic_auth import AUTH_MAP, AuthSecret, basic_auth, named_secrets
from proxy.core.basic_auth import BasicAuth, credentials, without_authorization
from proxy.core.headers import Request
from proxy.dataplane.basic_auth import ALLOW, CHECK, DENY, Verified, check
from tests.unit.kube_fixtures import parsed

APR1 = b"$apr1$0PEh1DDQ$71x2YO5y0c6WbY0gpn9go0"  # "bar"


def header(text: bytes) -> bytes:
    return b"Basic " + base64.b64encode(text)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (header(b"foo:bar"), (b"foo", b"bar")),
        (header(b"foo:"), (b"foo", b"")),
        (header(b"foo:b:a:r"), (b"foo", b"b:a:r")),  # the first colon ends the user
        (b"basic   " + base64.b64encode(b"foo:bar!").rstrip(b"="), (b"foo", b"bar!")),
        (b"BASIC " + base64.b64encode(b"foo:bar!") + b"ignored", (b"foo", b"bar!")),
    ],
)
def test_credentials_as_nginx_reads_them(value: bytes, expected: tuple[bytes, bytes]) -> None:
    assert credentials(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        b"",
        b"Basic",
        b"Basic ",
        b"Basic    ",
        b"Basicfoo",
        b"Digest " + base64.b64encode(b"foo:bar"),
        b"Basic Zm9vOmJhc",  # 9 characters: no whole bytes
        b"Basic Zm9v!mJhcg",  # not the base64 alphabet
        b"Basic Zm9v-mJhcg",  # URL-safe base64 is not Basic's
        header(b"foobar"),  # no colon
        header(b":bar"),  # no user
    ],
)
def test_malformed_credentials(value: bytes) -> None:
    assert credentials(value) is None


def test_the_401_answer() -> None:
    auth = BasicAuth("test auth", ((b"foo", APR1),))
    kept, closed = auth.answer(False), auth.answer(True)
    assert kept.startswith(
        b'HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm="test auth"'
    )
    assert b"Connection: keep-alive" in kept and b"Connection: close" in closed
    assert kept.endswith(b"\r\n\r\n401 Unauthorized\n")
    assert auth.stored(b"foo") == APR1 and auth.stored(b"bar") is None


def test_the_upstream_gets_no_authorization() -> None:
    request = Request(
        method=b"GET", target=b"/", http11=True, spliced=b"GET / HTTP/1.1\r\n...",
        forward=[(b"Host", b"a"), (b"AUTHORIZATION", b"Basic x"), (b"X-A", b"1")],
        host="a", host_header=b"a", cookie=None, user_agent=None, forwarded_for=None,
        request_id=None, content_length=None, chunked=False, upgrade=None,
    )  # fmt: skip
    forwarded = without_authorization(request)
    assert forwarded.forward == [(b"Host", b"a"), (b"X-A", b"1")]
    assert forwarded.spliced is None  # written anew from `forward`
    assert len(request.forward) == 3  # the client's request is left as it came


# --- annotations ---------------------------------------------------------------------------


def test_auth_annotations_parse() -> None:
    settings = parsed(auth_type="basic", auth_secret="ns/test", auth_realm="test auth")
    assert settings.auth_secret == AuthSecret("ns/test", "auth-file", "test auth")
    assert settings.denied is None and settings.warnings == ()
    mapped = parsed(auth_type="basic", auth_secret="test", auth_secret_type="auth-map")
    assert mapped.auth_secret == AuthSecret("test", AUTH_MAP, "")


def test_without_auth_type_the_others_are_ignored_with_a_warning() -> None:
    settings = parsed(auth_secret="test", auth_realm="r")
    assert settings.auth_secret is None and settings.denied is None
    assert any("auth-secret is ignored without" in line for line in settings.warnings)


@pytest.mark.parametrize(
    ("annotations", "reason"),
    [
        ({"auth_type": "digest"}, "digest is not supported here"),
        ({"auth_type": "Basic"}, "'Basic' is not basic or digest"),
        ({"auth_secret": ""}, "auth-secret is missing"),
        ({"auth_secret": "a b"}, "is not name or namespace/name"),
        ({"auth_secret": "a/b/c"}, "is not name or namespace/name"),
        ({"auth_secret_type": "file"}, "'file' is not auth-file or auth-map"),
    ],
)
def test_unusable_annotations_deny(annotations: dict[str, str], reason: str) -> None:
    settings = parsed(**{"auth_type": "basic", "auth_secret": "test", **annotations})
    assert settings.auth_secret is None
    assert settings.denied is not None and reason in settings.denied
    assert any(reason in line and "its paths answer 503" in line for line in settings.warnings)


def test_an_invalid_realm_is_the_default_one() -> None:
    settings = parsed(auth_type="basic", auth_secret="test", auth_realm='say "hi"')
    assert settings.auth_secret == AuthSecret("test", "auth-file", "")
    assert any("auth-realm" in line and "ignored" in line for line in settings.warnings)


# --- the users of a Secret -----------------------------------------------------------------


def test_users_of_an_auth_file_and_an_auth_map() -> None:
    secrets = {
        ("ns", "file"): {"auth": b"foo:" + APR1 + b"\nbar:{PLAIN}x\n", "other": b"y"},
        ("ns", "map"): {"foo": APR1, "bar": b"{PLAIN}x"},
    }
    auth, _, warnings = basic_auth(AuthSecret("file", realm="r"), "ns", secrets)
    assert auth is not None and auth.users == ((b"foo", APR1), (b"bar", b"{PLAIN}x"))
    assert auth.source == "Secret ns/file" and warnings == []
    auth, _, _ = basic_auth(AuthSecret("ns/map", AUTH_MAP), "ns", secrets)
    assert auth is not None and auth.users == ((b"bar", b"{PLAIN}x"), (b"foo", APR1))


@pytest.mark.parametrize(
    ("spec", "reason"),
    [
        (AuthSecret("missing"), "auth-secret ns/missing not found"),
        (AuthSecret("other/file"), "Secrets of other namespaces are not allowed"),
        (AuthSecret("map"), "auth-secret ns/map has no auth key"),
    ],
)
def test_unusable_secrets(spec: AuthSecret, reason: str) -> None:
    secrets = {("ns", "map"): {"foo": APR1}, ("other", "file"): {"auth": b"foo:" + APR1}}
    auth, problem, _ = basic_auth(spec, "ns", secrets)
    assert auth is None and reason in problem


def test_a_denied_ingress_says_why() -> None:
    settings = with_basic_auth(parsed(auth_type="basic", auth_secret="gone"), "ns", {})
    assert settings.basic_auth is None and settings.denied == "auth-secret ns/gone not found"
    assert "auth-secret ns/gone not found; its paths answer 503" in settings.warnings


def test_users_no_password_matches_are_warned_about() -> None:
    secrets = {
        ("ns", "s"): {"auth": b"yes:$y$j9T$salt$hash\nempty:\n"},
        ("ns", "none"): {"auth": b""},
    }
    _, _, warnings = basic_auth(AuthSecret("s"), "ns", secrets)
    assert len(warnings) == 2 and "user 'yes'" in warnings[0] and "user 'empty'" in warnings[1]
    auth, _, warnings = basic_auth(AuthSecret("none"), "ns", secrets)
    assert auth is not None and auth.users == ()
    assert warnings == ["auth-secret ns/none lists no user; every request answers 401"]


# --- verified credentials ------------------------------------------------------------------


def test_fast_hashes_are_checked_at_once_and_remembered() -> None:
    verified = Verified()
    auth = BasicAuth("", ((b"foo", APR1),))
    good = header(b"foo:bar")
    assert verified.decide(auth, good)[0] == ALLOW
    assert verified.decide(auth, good)[0] == ALLOW
    assert verified.decide(auth, header(b"foo:baz"))[0] == DENY
    assert verified.decide(auth, header(b"bob:bar"))[0] == DENY
    assert verified.decide(auth, None)[0] == DENY
    assert verified.decide(auth, b"Basic !")[0] == DENY


def test_a_slow_hash_is_checked_once_then_remembered() -> None:
    verified = Verified()
    auth = BasicAuth("", ((b"foo", bcrypt.hashpw(b"bar", bcrypt.gensalt(4))),))
    good = header(b"foo:bar")
    decision, digest = verified.decide(auth, good)
    assert decision == CHECK and check(auth, good)
    assert b"bar" not in digest and good not in digest
    verified.remember(digest)
    assert verified.decide(auth, good) == (ALLOW, digest)
    # a wrong password is checked every time: failures are not remembered
    wrong = header(b"foo:baz")
    assert verified.decide(auth, wrong)[0] == CHECK and not check(auth, wrong)
    assert verified.decide(auth, wrong)[0] == CHECK


def test_remembered_credentials_do_not_outlive_the_hash() -> None:
    verified = Verified()
    good = header(b"foo:bar")
    before = BasicAuth("", ((b"foo", APR1),))
    assert verified.decide(before, good)[0] == ALLOW
    changed = BasicAuth("", ((b"foo", b"{PLAIN}new"),))
    assert verified.decide(changed, good)[0] == DENY


def test_the_memory_is_bounded_least_recently_used_out() -> None:
    verified = Verified(size=2)
    auth = BasicAuth("", tuple((b"u%d" % i, b"{PLAIN}p") for i in range(3)))
    first, second, third = (header(b"u%d:p" % i) for i in range(3))
    digests = [verified.decide(auth, value)[1] for value in (first, second)]
    verified.decide(auth, first)  # used again: the second is now the oldest
    verified.decide(auth, third)
    assert set(verified._digests) == {digests[0], verified.decide(auth, third)[1]}


def test_the_secrets_ingresses_name() -> None:
    def ingress(namespace: str | None, secret: object) -> dict[str, object]:
        annotations = {"nginx.ingress.kubernetes.io/auth-secret": secret}
        return {"metadata": {"namespace": namespace, "annotations": annotations}}

    objects = [
        ingress("a", "users"),
        ingress("a", " b/users "),
        ingress(None, "users"),  # the default namespace
        ingress("a", "bad name"),
        ingress("a", 7),
        {"metadata": {"namespace": "a"}},
        {"metadata": None},
        "not an object",
    ]
    assert named_secrets(objects) == {("a", "users"), ("b", "users"), ("default", "users")}

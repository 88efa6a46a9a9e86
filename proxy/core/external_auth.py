"""External authentication as ingress-nginx's `auth-url` does it with nginx's auth_request
(docs/behaviour.md, "External authentication"): what the auth service is asked, what its
answer means, and what the upstream and the client then get.

Pure: the data plane makes the subrequest (proxy/dataplane/external_auth.py) and applies what
these functions decide.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final
from urllib.parse import quote

from proxy.core.hash_key import HashKey

# The nginx variables an auth-url or auth-signin may name here (ingress-nginx lets nginx expand
# any; these are the ones that make sense in a URL). Another name is refused at translation.
VARIABLES: Final = frozenset(
    {
        "host",
        "http_host",
        "scheme",
        "pass_access_scheme",
        "request_uri",
        "escaped_request_uri",
        "request_method",
        "remote_addr",
    }
)
_VARIABLE = re.compile(r"\$([A-Za-z0-9_]*)")
# add_header without `always` adds the auth service's Set-Cookie to answers of these statuses
# only (nginx's ngx_http_headers_filter)
COOKIE_STATUSES: Final = frozenset({200, 201, 204, 206, 301, 302, 303, 304, 307, 308})
# What the client sent that the subrequest does not pass on: the body's framing (nginx's
# `proxy_pass_request_body off; proxy_set_header Content-Length ""` and its proxy module's
# defaults), and each header the auth location sets itself (nginx.tmpl, `location =
# /_external-auth-...`)
_NOT_PASSED: Final = frozenset(
    {
        "host",
        "content-length",
        "transfer-encoding",
        "expect",
        "x-forwarded-proto",
        "x-request-id",
        "x-original-url",
        "x-original-method",
        "x-original-uri",
        "x-scheme",
        "x-sent-from",
        "x-real-ip",
        "x-forwarded-for",
        "x-auth-request-redirect",
    }
)
SENT_FROM: Final = "nginx-ingress-controller"  # X-Sent-From, as ingress-nginx sends it
# nginx's time units (ngx_parse_time), as auth-cache-duration's durations use them
_TIME = re.compile(r"([0-9]+)(ms|s|m|h|d|w|M|y)")
_UNITS: Final = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800,
                 "M": 2592000, "y": 31536000}  # fmt: skip
_CODE = re.compile(r"[0-9]{3}")
_MAX_AGE = re.compile(rb"(?:^|[,\s])(?:s-maxage|max-age)=([0-9]+)", re.IGNORECASE)
_NOT_STORED = re.compile(rb"no-cache|no-store|private", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Template:
    """A URL with nginx variables: literal text and variable names, alternately."""

    parts: tuple[str, ...]

    @property
    def text(self) -> str:
        """As written."""
        return "".join(part if i % 2 == 0 else f"${part}" for i, part in enumerate(self.parts))

    def expand(self, values: Mapping[str, str]) -> str:
        parts = self.parts
        return "".join(part if i % 2 == 0 else values[part] for i, part in enumerate(parts))


def parse_template(text: str) -> Template:
    """`text` with its `$name` variables found; ValueError names one not known here."""
    parts: list[str] = []
    last = 0
    for found in _VARIABLE.finditer(text):
        name = found.group(1)
        if name not in VARIABLES:
            raise ValueError(
                f"${name} is not a variable known here ({', '.join(sorted(VARIABLES))})"
            )
        parts += [text[last : found.start()], name]
        last = found.end()
    parts.append(text[last:])
    return Template(tuple(parts))


@dataclass(frozen=True, slots=True)
class AuthCache:
    """auth-cache-key and auth-cache-duration: for how long which answers stand for the
    requests with the same key (nginx's proxy_cache in the auth location)."""

    key: HashKey
    # (statuses, seconds) in order, as proxy_cache_valid lines; no statuses: any status
    valid: tuple[tuple[frozenset[int], float], ...]


def parse_cache_durations(text: str) -> tuple[tuple[frozenset[int], float], ...]:
    """auth-cache-duration: comma-separated `[code ...] time` (time in nginx units; without
    codes, 200, 301 and 302 as proxy_cache_valid; `any` for every status)."""
    valid = []
    for entry in text.split(","):
        words = entry.split()
        if not words:
            continue
        time = _TIME.fullmatch(words[-1])
        codes = words[:-1]
        if time is None or not all(_CODE.fullmatch(code) or code == "any" for code in codes):
            raise ValueError(f"{entry.strip()!r} is not [code ...] time (as 200 202 5m)")
        statuses = frozenset(int(code) for code in codes if code != "any")
        if not codes:
            statuses = frozenset({200, 301, 302})
        seconds = int(time.group(1)) * _UNITS[time.group(2)]
        valid.append((frozenset() if "any" in codes else statuses, seconds))
    if not valid:
        raise ValueError(f"{text!r} names no duration")
    return tuple(valid)


def cache_seconds(cache: AuthCache, status: int, answer: list[tuple[bytes, bytes]]) -> float:
    """How long an auth answer stands (0: not kept), as nginx's proxy cache decides: never
    with Set-Cookie, `Vary: *` or Cache-Control no-cache, no-store or private; else for
    X-Accel-Expires or Cache-Control's max-age seconds if given, else the status's duration."""
    if not status:
        return 0.0  # no answer: nothing to keep
    accel = control = None
    for name, value in answer:
        lower = name.lower()
        if lower == b"set-cookie" or (lower == b"vary" and value.strip() == b"*"):
            return 0.0
        if lower == b"cache-control":
            if _NOT_STORED.search(value):
                return 0.0
            control = control or _MAX_AGE.search(value)
        elif lower == b"x-accel-expires" and value.strip().isdigit():
            accel = int(value)
    if accel is not None:
        return float(accel)
    if control is not None:
        return float(int(control.group(1)))
    for statuses, seconds in cache.valid:
        if not statuses or status in statuses:
            return seconds
    return 0.0


@dataclass(frozen=True, slots=True)
class ExternalAuth:
    """One Ingress's auth-url and the annotations beside it."""

    url: Template
    method: str | None = None  # auth-method; None: GET, without X-Original-URI and X-Scheme
    signin: Template | None = None  # auth-signin: where a 401 redirects instead
    # how the original URL joins the sign-in URL: "?rd=", "&rd=", or "" when its query already
    # names the parameter (ingress-nginx's buildAuthSignURL, decided on the text as written)
    signin_join: str = ""
    response_headers: tuple[str, ...] = ()  # auth-response-headers, as written
    request_redirect: str | None = None  # auth-request-redirect: X-Auth-Request-Redirect
    always_set_cookie: bool = False  # auth-always-set-cookie
    cache: AuthCache | None = None  # auth-cache-key and auth-cache-duration; None: none
    # auth-proxy-set-headers: the ConfigMap named (namespace/name), and the headers read from it
    # that the subrequest carries instead of any of their names; "" as a value: none sent
    set_headers_from: str | None = None
    set_headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Facts:
    """What the variables and the subrequest headers are made of, for one request."""

    host: str  # nginx's $host: the request's host name, lower case, without port
    http_host: str  # the Host header as sent
    scheme: str  # of the client's connection to the proxy
    request_uri: str  # the request target as sent
    method: str
    client: str  # the client address ($remote_addr)

    def values(self) -> dict[str, str]:
        return {
            "host": self.host,
            "http_host": self.http_host,
            "scheme": self.scheme,
            "pass_access_scheme": self.scheme,
            "request_uri": self.request_uri,
            "escaped_request_uri": escape_uri(self.request_uri),
            "request_method": self.method,
            "remote_addr": self.client,
        }


def escape_uri(text: str) -> str:
    """set-misc's set_escape_uri: every byte but letters, digits and -._~ as %XX (`text` holds
    the bytes as received, read as latin-1)."""
    return quote(text.encode("latin-1"), safe="-._~")


def signin_join(signin: str, param: str) -> str:
    """How ingress-nginx's buildAuthSignURL appends the original URL to `signin`."""
    query = signin.partition("?")[2].partition("#")[0]
    if not query:
        return f"?{param}="
    for pair in query.split("&"):
        name, _, value = pair.partition("=")
        if name == param and value:
            return ""  # already there: the URL is used as written
    return f"&{param}="


def signin_location(auth: ExternalAuth, facts: Facts) -> str:
    """The sign-in redirect's Location: the URL with the original request's appended."""
    assert auth.signin is not None
    values = facts.values()
    location = auth.signin.expand(values)
    if auth.signin_join:
        location += f"{auth.signin_join}{facts.scheme}://{facts.http_host}"
        location += values["escaped_request_uri"]
    return location


def subrequest_headers(
    auth: ExternalAuth, forward: list[tuple[bytes, bytes]], facts: Facts, request_id: str,
    auth_host: str,
) -> list[tuple[str, str]]:  # fmt: skip
    """The subrequest's headers: the client's, without its body's framing, then the ones the
    auth location sets (nginx.tmpl's `location = /_external-auth-...`). As text the HTTP
    client writes back as the bytes received (`wire`)."""
    headers = [
        (name.decode("latin-1"), wire(value))
        for name, value in forward
        if name.decode("latin-1").lower() not in _NOT_PASSED
    ]
    added = [
        ("Host", auth_host),
        ("X-Original-URL", f"{facts.scheme}://{facts.http_host}{facts.request_uri}"),
        ("X-Original-Method", facts.method),
        ("X-Sent-From", SENT_FROM),
        ("X-Real-IP", facts.client),
        ("X-Forwarded-For", facts.client),
        ("X-Auth-Request-Redirect", auth.request_redirect or facts.request_uri),
        ("X-Request-ID", request_id),
    ]
    if auth.method is not None:
        added += [("X-Original-URI", facts.request_uri), ("X-Scheme", facts.scheme)]
    headers += [(name, wire(value.encode("latin-1"))) for name, value in added]
    if auth.set_headers:
        # proxy_set_header: a client's own copy never reaches the auth service
        names = {name.lower() for name, _ in auth.set_headers}
        headers = [(name, value) for name, value in headers if name.lower() not in names]
        headers += [(name, value) for name, value in auth.set_headers if value]
    return headers


def wire(value: bytes) -> str:
    """`value` as aiohttp's client takes it: it writes header text as UTF-8, so bytes that are
    UTF-8 go through unchanged; others (rare, and not text anyway) are read as latin-1."""
    try:
        return value.decode()
    except UnicodeDecodeError:
        return value.decode("latin-1")


def refusal(status: int) -> int:
    """The status the client gets for the auth service's `status` (0: no answer at all), or 0
    when the request goes on: 2xx passes, 401 and 403 refuse, anything else is 500, as nginx's
    auth_request module decides."""
    if 200 <= status < 300:
        return 0
    if status in {401, 403}:
        return status
    return 500


def forwarded_with(
    forward: list[tuple[bytes, bytes]], names: tuple[str, ...], answer: list[tuple[bytes, bytes]]
) -> list[tuple[bytes, bytes]]:
    """The client's headers for the upstream, each of `names` replaced by the auth service's
    (`proxy_set_header 'Name' $authHeaderN`): a client's own copy never gets through, and
    when the auth service sends none, none is sent. A client's twin spelled with `_` for `-`
    goes too (with --enable-underscores-in-headers it would reach the pod, and many read
    `X_User` as `X-User`)."""
    wanted = {_dashed(name.encode("latin-1")): name for name in names}
    kept = [(name, value) for name, value in forward if _dashed(name) not in wanted]
    for dashed, name in wanted.items():
        # (nginx's $upstream_http_x_user is the auth answer's X-User, or X_User)
        values = [value for key, value in answer if _dashed(key) == dashed]
        if values:  # (several: nginx's $upstream_http_ variable joins them)
            kept.append((name.encode("latin-1"), b", ".join(values)))
    return kept


def _dashed(name: bytes) -> bytes:
    return name.lower().replace(b"_", b"-")


def answer_lines(answer: list[tuple[bytes, bytes]], name: bytes) -> bytes:
    """The auth answer's headers called `name` (lower case), as header lines."""
    return b"".join(b"%s: %s\r\n" % (key, value) for key, value in answer if key.lower() == name)

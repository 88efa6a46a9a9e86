"""The external authentication annotations (auth-url and the ones beside it), validated as
ingress-nginx's authreq parser does (internal/ingress/annotations/authreq/main.go), into the
route's `ExternalAuth` (docs/behaviour.md, "External authentication"). Pure.

A value ingress-nginx refuses by denying the location (503) denies it here too. Where it would
instead drop the whole auth config and serve the paths to everyone (an invalid
auth-request-redirect or auth-always-set-cookie), or drop the Ingress (an auth-url of other
characters), the paths answer 503 here: open is not a safe way to fail
(docs/ingress-nginx-compat.md, "External authentication").
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Protocol, TypeVar
from urllib.parse import SplitResult, urlsplit

from proxy.core.external_auth import (
    AuthCache,
    ExternalAuth,
    parse_cache_durations,
    parse_template,
    signin_join,
)
from proxy.core.hash_key import HashKey
from proxy.core.headers import SET_BY_PROXY

PREFIX = "nginx.ingress.kubernetes.io/"
URL = "auth-url"
# the annotations that mean something only beside auth-url, and are honoured
WITH_URL = (
    "auth-method",
    "auth-signin",
    "auth-signin-redirect-param",
    "auth-response-headers",
    "auth-request-redirect",
    "auth-always-set-cookie",
    "auth-cache-key",
    "auth-cache-duration",
    "auth-proxy-set-headers",
)
ANNOTATIONS = (URL, *WITH_URL)
DEFAULT_REDIRECT_PARAM = "rd"  # ingress-nginx's defaultGlobalAuthRedirectParam
DEFAULT_CACHE_DURATION = "200 202 401 5m"  # ingress-nginx's DefaultCacheDuration

# ingress-nginx's validators (annotations/parser/validators.go), checked with spaces removed:
# URLWithNginxVariableRegex (auth-url, auth-signin), URLIsValidRegex (auth-signin-redirect-param,
# auth-request-redirect), HeadersVariable (auth-response-headers); and authreq's own
_URL_WITH_VARIABLES = re.compile(r"[-._~a-zA-Z0-9/:, ?&=$]*")
_URL_CHARS = re.compile(r"[-._~a-zA-Z0-9/:,?&=]*")
_HEADERS = re.compile(r"[A-Za-z0-9\-_, ]*")
_HEADER = re.compile(r"[a-zA-Z0-9\-_]+")
_NGINX_VARIABLE = re.compile(r"[A-Za-z0-9\-_${}]*")  # NGINXVariable (auth-cache-key)
_BASIC_CHARS = re.compile(r"[-._~a-zA-Z0-9/:]+")  # BasicCharsRegex (auth-proxy-set-headers)
_EXTENDED_CHARS = re.compile(r"[/\-._~a-zA-Z0-9:, ]*")  # ExtendedCharsRegex (its duration)
_METHODS = frozenset(
    {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "CONNECT", "OPTIONS", "TRACE"}
)

T = TypeVar("T")


class Annotations(Protocol):
    """What is read of one Ingress's annotations (annotations.py's reader)."""

    warnings: list[str]

    def value(self, name: str, parse: Callable[[str], T]) -> T | None: ...
    def text(self, name: str) -> str | None: ...
    def ignored_without(self, name: str, needed: str) -> None: ...


def external_auth(
    reader: Annotations, go_bool: Callable[[str], bool]
) -> tuple[ExternalAuth | None, str | None]:
    """The route's external auth (None without auth-url), and why its paths answer 503 when a
    value ingress-nginx denies the location for is invalid (None when none is); `go_bool`
    reads booleans as the other annotations are read."""
    text = reader.text(URL)
    if text is None:
        for name in WITH_URL:
            reader.ignored_without(name, URL)
        return None, None
    invalid: list[str] = []
    url = _checked(URL, text, _auth_url, invalid)
    method = _checked("auth-method", reader.text("auth-method"), _method, invalid)
    headers = _checked(
        "auth-response-headers", reader.text("auth-response-headers"), _header_names, invalid
    )
    redirect = _checked(
        "auth-request-redirect", reader.text("auth-request-redirect"), _url_chars, invalid
    )
    always = _checked(
        "auth-always-set-cookie", reader.text("auth-always-set-cookie"), go_bool, invalid
    )
    durations = _checked(
        "auth-cache-duration",
        reader.text("auth-cache-duration") or DEFAULT_CACHE_DURATION,
        _durations,
        invalid,
    )
    # ingress-nginx warns about these and goes on without them
    signin = reader.value("auth-signin", _signin)
    param = reader.value("auth-signin-redirect-param", _redirect_param) or DEFAULT_REDIRECT_PARAM
    key = reader.value("auth-cache-key", _cache_key)
    # (its ConfigMap is read by auth_headers.py, once the world is known)
    set_headers_from = reader.value("auth-proxy-set-headers", _config_map)
    if key is not None and method not in {None, "GET", "HEAD"}:
        # nginx's proxy_cache_methods: GET and HEAD
        reader.warnings.append(
            f"{PREFIX}auth-cache-key: answers to {method} subrequests are not cached; ignored"
        )
        key = None
    if headers:
        headers = _copyable(headers, reader.warnings)
    if invalid or url is None:
        reader.warnings.extend(f"{line}; its paths answer 503" for line in invalid)
        return None, "; ".join(invalid)
    return (
        ExternalAuth(
            url=parse_template(url),
            method=method,
            signin=parse_template(signin) if signin is not None else None,
            signin_join=signin_join(signin, param) if signin is not None else "",
            response_headers=headers or (),
            request_redirect=redirect,
            always_set_cookie=bool(always),
            cache=AuthCache(key, durations) if key is not None and durations else None,
            set_headers_from=set_headers_from,
        ),
        None,
    )


def _checked(
    name: str, text: str | None, parse: Callable[[str], T], invalid: list[str]
) -> T | None:
    """`text` parsed, None when absent; a refused value is noted in `invalid`."""
    if text is None:
        return None
    try:
        return parse(text)
    except ValueError as error:
        invalid.append(f"{PREFIX}{name}: {error}")
        return None


def _auth_url(text: str) -> str:
    if not _URL_WITH_VARIABLES.fullmatch(text.replace(" ", "")):
        raise ValueError(f"{text!r} holds characters other than letters, digits, -._~/:,?&=$")
    http_url(text, urlsplit(text), URL)
    parse_template(text)  # (its variables must be known here)
    return text


def http_url(text: str, parts: SplitResult, name: str) -> None:
    """Refuse `text` (annotation `name`, split as `parts`) unless it is an http or https URL
    with a host, as ingress-nginx's parser.StringToURL and nginx's proxy_pass want it."""
    if parts.scheme not in {"http", "https"}:
        # (ingress-nginx requires a scheme; nginx's proxy_pass then takes http and https only)
        raise ValueError(f"{text!r} is not an http or https URL")
    if not parts.netloc or ".." in parts.netloc:
        raise ValueError(f"could not parse {name} annotation: invalid url host in {text!r}")
    try:
        _ = "$" in parts.netloc or parts.port  # (refused as Go's url.Parse refuses it)
    except ValueError:
        raise ValueError(f"could not parse {name} annotation: invalid port in {text!r}") from None


def _config_map(text: str) -> str:
    if not _BASIC_CHARS.fullmatch(text):
        raise ValueError(f"{text!r} is not a ConfigMap's namespace/name")
    return text


def _method(text: str) -> str:
    if text.replace(" ", "") not in _METHODS:
        raise ValueError(f"{text!r} is not an HTTP method ingress-nginx allows")
    return text.replace(" ", "")


def _header_names(text: str) -> tuple[str, ...]:
    if not _HEADERS.fullmatch(text.replace(" ", "")):
        raise ValueError(f"{text!r} is not a comma-separated list of header names")
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    for name in names:
        if not _HEADER.fullmatch(name):
            raise ValueError(f"{name!r} is not a header name")
    return names


def _url_chars(text: str) -> str:
    if not _URL_CHARS.fullmatch(text.replace(" ", "")):
        raise ValueError(f"{text!r} holds characters other than letters, digits, -._~/:,?&=")
    return text


def _signin(text: str) -> str:
    if not _URL_WITH_VARIABLES.fullmatch(text.replace(" ", "")):
        raise ValueError(f"{text!r} holds characters other than letters, digits, -._~/:,?&=$")
    parse_template(text)
    return text


def _redirect_param(text: str) -> str:
    if not _URL_CHARS.fullmatch(text.replace(" ", "")):
        raise ValueError(f"{text!r} holds characters other than letters, digits, -._~/:,?&=")
    return text


def _durations(text: str) -> tuple[tuple[frozenset[int], float], ...]:
    if not _EXTENDED_CHARS.fullmatch(text):
        raise ValueError(f"{text!r} holds characters other than letters, digits, -._~/:, ")
    return parse_cache_durations(text)


def _cache_key(text: str) -> HashKey:
    """A key of nginx variables, each known here: one read as empty would let requests of
    different users share an answer."""
    if not _NGINX_VARIABLE.fullmatch(text.replace(" ", "")):
        raise ValueError(f"{text!r} holds characters other than letters, digits, -_${{}}")
    key = HashKey(text.replace(" ", ""))
    if key.unknown:
        names = ", ".join(f"${name}" for name in key.unknown)
        raise ValueError(f"{names} not known here; answers are not cached")
    return key


def _copyable(names: tuple[str, ...], warnings: list[str]) -> tuple[str, ...]:
    """The names whose header an auth service may set for the upstream: not the framing, Host
    or the forwarded headers the proxy writes itself (copied, they would stand beside its own,
    or leave the request without Host)."""
    refused = [name for name in names if name.lower().replace("_", "-").encode() in SET_BY_PROXY]
    if refused:
        warnings.append(
            f"{PREFIX}auth-response-headers: {', '.join(refused)} set by the proxy itself;"
            " not copied"
        )
    return tuple(name for name in names if name not in refused)

"""One Ingress's `nginx.ingress.kubernetes.io/*` annotations: text in, settings and warnings out.

Names, defaults and validation follow ingress-nginx's annotation parsers (sessionaffinity, proxy,
rewrite, alias): an invalid value is ignored with a warning and the default applies, as there.
Where ingress-nginx's validation is looser than what it then emits correctly (`Max-Age=abc5`, inner
spaces in cookie names) the value is refused here instead. Pure: no I/O, no logging.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

from proxy.control.translate.auth_tls import ANNOTATIONS as _AUTH_TLS_ANNOTATIONS
from proxy.control.translate.auth_tls import AuthTls
from proxy.control.translate.auth_tls import parse as auth_tls
from proxy.control.translate.basic_auth import (
    AUTH_FILE,
    AuthSecret,
    parse_auth_type,
    parse_realm,
    parse_secret_name,
    parse_secret_type,
)
from proxy.control.translate.cors import (
    parse_expose,
    parse_headers,
    parse_max_age,
    parse_methods,
    parse_origins,
)
from proxy.control.translate.coverage import Support, verdict
from proxy.control.translate.error_annotations import parse_codes, parse_service_name
from proxy.control.translate.external_auth import ANNOTATIONS as _EXTERNAL_AUTH_ANNOTATIONS
from proxy.control.translate.external_auth import external_auth
from proxy.control.translate.mirror import ANNOTATIONS as _MIRROR_ANNOTATIONS
from proxy.control.translate.mirror import mirror
from proxy.control.translate.proxy_ssl import (
    ProxySsl,
    parse_backend_protocol,
    parse_ciphers,
    parse_on_off,
    parse_protocols,
    parse_secret,
)
from proxy.control.translate.response_edits import (
    parse_cookie_domain,
    parse_cookie_path,
    parse_redirect_value,
    redirect_rule,
    response_edits,
)
from proxy.control.translate.rewrite_annotations import (
    PERMANENT_CODES,
    PERMANENT_DEFAULT,
    TEMPORAL_CODES,
    TEMPORAL_DEFAULT,
    RewriteSettings,
    parse_app_root,
    parse_prefix,
    parse_redirect_url,
    parse_rewrite_target,
    parse_vhost,
)
from proxy.core.access import AccessList, Network, parse_ranges
from proxy.core.balancing import DEFAULT_SUBSET_SIZE, Balancing, HashBy, LoadBalance
from proxy.core.basic_auth import BasicAuth
from proxy.core.canary import CanaryPolicy, variable_name
from proxy.core.cookies import CookieSettings
from proxy.core.cors import CorsPolicy
from proxy.core.custom_headers import ResponseHeaders
from proxy.core.external_auth import ExternalAuth
from proxy.core.hash_key import HashKey
from proxy.core.mirror import Mirror
from proxy.core.model import AffinityMode, UpstreamPolicy
from proxy.core.ratelimit import RateLimits, per_minute, per_second
from proxy.core.response_edits import ResponseEdits
from proxy.core.rewrites import FixedRedirect
from proxy.core.send_rate import SendRate
from proxy.core.values import (
    parse_count,
    parse_next_upstream,
    parse_positive,
    parse_size,
    parse_timeout,
)

PREFIX = "nginx.ingress.kubernetes.io/"
# sticky-proxy's own annotations, beyond ingress-nginx (docs/behaviour.md, "Outlier ejection")
OWN_PREFIX = "sticky-proxy.io/"

_COOKIE_ANNOTATIONS = (
    "session-cookie-name",
    "session-cookie-path",
    "session-cookie-domain",
    "session-cookie-samesite",
    "session-cookie-conditional-samesite-none",
    "session-cookie-secure",
    "session-cookie-max-age",
    "session-cookie-expires",
    "session-cookie-change-on-failure",
)
_CANARY_ANNOTATIONS = (
    "canary-by-header",
    "canary-by-header-value",
    "canary-by-header-pattern",
    "canary-by-cookie",
    "canary-weight",
    "canary-weight-total",
)
_PROXY_SSL_ANNOTATIONS = (
    "proxy-ssl-verify",
    "proxy-ssl-name",
    "proxy-ssl-server-name",
    "proxy-ssl-protocols",
    "proxy-ssl-ciphers",
)
_BALANCING_ANNOTATIONS = (
    "upstream-hash-by",
    "upstream-hash-by-subset",
    "upstream-hash-by-subset-size",
    "load-balance",
)
_REWRITE_ANNOTATIONS = (
    "rewrite-target",
    "app-root",
    "permanent-redirect",
    "permanent-redirect-code",
    "temporal-redirect",
    "temporal-redirect-code",
    "x-forwarded-prefix",
    "upstream-vhost",
    "from-to-www-redirect",
)
_CORS_ANNOTATIONS = (
    "cors-allow-origin",
    "cors-allow-methods",
    "cors-allow-headers",
    "cors-allow-credentials",
    "cors-expose-headers",
    "cors-max-age",
)
# allowlist-source-range is read first; whitelist-source-range is its older name
_ALLOW = "allowlist-source-range"
_ACCESS_ANNOTATIONS = ("allowlist-source-range", "whitelist-source-range", "denylist-source-range")
# limit-whitelist is limit-allowlist's older name, read when that one is unset or empty
_LIMITS = ("limit-rps", "limit-rpm", "limit-connections")
_LIMIT_ANNOTATIONS = (*_LIMITS, "limit-burst-multiplier", "limit-allowlist", "limit-whitelist")
_BURST_MULTIPLIER = 5  # ingress-nginx's defBurst
_ERROR_ANNOTATIONS = ("custom-http-errors", "default-backend", "disable-proxy-intercept-errors")
_RESPONSE_ANNOTATIONS = (*_ERROR_ANNOTATIONS, "custom-headers")
_BASIC_AUTH_ANNOTATIONS = ("auth-type", "auth-secret", "auth-secret-type", "auth-realm")
_EDIT_ANNOTATIONS = (
    "proxy-redirect-from", "proxy-redirect-to", "proxy-cookie-domain", "proxy-cookie-path",
)  # fmt: skip
_HONOURED = frozenset(
    {
        "affinity",
        "affinity-mode",
        "affinity-canary-behavior",
        "canary",
        *_CANARY_ANNOTATIONS,
        *_COOKIE_ANNOTATIONS,
        "use-regex",
        "server-alias",
        "proxy-connect-timeout",
        "proxy-read-timeout",
        "proxy-send-timeout",
        "proxy-body-size",
        "proxy-next-upstream",
        "proxy-next-upstream-tries",
        "proxy-next-upstream-timeout",
        "proxy-ssl-secret",
        "ssl-redirect",
        "force-ssl-redirect",
        "preserve-trailing-slash",
        "service-upstream",
        "backend-protocol",
        *_PROXY_SSL_ANNOTATIONS,
        *_BALANCING_ANNOTATIONS,
        *_REWRITE_ANNOTATIONS,
        "enable-cors",
        *_CORS_ANNOTATIONS,
        *_ACCESS_ANNOTATIONS,
        *_LIMIT_ANNOTATIONS,
        "limit-rate",
        "limit-rate-after",
        *_MIRROR_ANNOTATIONS,
        *_EXTERNAL_AUTH_ANNOTATIONS,
        *_RESPONSE_ANNOTATIONS,
        *_BASIC_AUTH_ANNOTATIONS,
        *_EDIT_ANNOTATIONS,
        "satisfy",
        *_AUTH_TLS_ANNOTATIONS,
    }
)

# ingress-nginx's BasicCharsRegex and URLIsValidRegex (annotations/parser/validators.go): a value
# it accepts must give the same cookie here, or migrated sessions would not find their cookie.
_BASIC_CHARS = re.compile(r"[-._~a-zA-Z0-9/:]+")
_URL_CHARS = re.compile(r"[-._~a-zA-Z0-9/:,?&=]+")
_PATTERN_CHARS = re.compile(r"[-._~a-zA-Z0-9/:^$\[\](){}*+?|&=\\]+")  # and IsValidRegex
_SECONDS = re.compile(r"-?[0-9]+")  # ingress-nginx passes 0 and negative numbers through
_HASH_BY = re.compile(r"[-A-Za-z0-9_${}]+")  # ingress-nginx's hashByRegex (upstreamhashby)
# load-balance values ingress-nginx accepts that only mean something there with a cookie or a
# hash-by key, which are annotations of their own here
# (docs/ingress-nginx-compat.md, "Load balancing")
_OTHER_BALANCERS = frozenset({"chash", "chashsubset", "sticky_balanced", "sticky_persistent"})
# Go's strconv.ParseBool, which ingress-nginx's boolean annotations use.
_GO_BOOLS = {
    **dict.fromkeys(("1", "t", "T", "TRUE", "true", "True"), True),
    **dict.fromkeys(("0", "f", "F", "FALSE", "false", "False"), False),
}
# Any case passes; the cookie writer then emits only the exact spellings Strict, Lax and None.
_SAMESITE = frozenset({"none", "lax", "strict"})
SAMESITE_SPELLINGS = frozenset({"Strict", "Lax", "None"})  # as core/cookies.py emits them
# An Ingress host: an RFC 1123 subdomain, optionally behind one leading `*.` label.
_DNS_LABEL = r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?"
_SERVER_NAME = re.compile(rf"(?:\*\.)?{_DNS_LABEL}(?:\.{_DNS_LABEL})*")

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class IngressSettings:
    """What one Ingress's annotations ask for. `warnings` are lines without the Ingress's name."""

    affinity: bool  # `affinity: cookie`
    mode: AffinityMode | None  # None when unset or invalid: a shared backend takes the first set
    cookie: CookieSettings  # the defaults unless `affinity` is on
    use_regex: bool
    aliases: tuple[str, ...]  # server-alias host names, sorted and lower-case
    upstream: UpstreamPolicy
    ssl_redirect: bool  # default true: hosts with TLS redirect plain HTTP
    force_ssl_redirect: bool  # redirect even without TLS configured here (TLS ends elsewhere)
    preserve_trailing_slash: bool  # else a redirect drops the target's last "/", as ingress-nginx
    # canary: true: how this Ingress's backends share its main Ingress's locations (None: it is
    # no canary), and whether they take the main backend's affinity (affinity-canary-behavior
    # sticky, the default) or none (legacy)
    canary: CanaryPolicy | None
    canary_sticky: bool
    balancing: Balancing | None  # upstream-hash-by* and load-balance; None: none set
    warnings: tuple[str, ...]
    service_upstream: bool = False  # dial the Service's cluster IP, not its endpoints
    backend_protocol: str = "HTTP"  # upper-case, as ingress-nginx's options
    proxy_ssl: ProxySsl | None = None  # only with a proxy-ssl-secret
    denied: str | None = None  # why its paths answer 503: a bad access list, or a Secret
    rewrites: RewriteSettings | None = None  # rewrite-target, redirects and the like; None: none
    cors: CorsPolicy | None = None  # enable-cors and the cors-* annotations; None: off
    access: AccessList | None = None  # *-source-range; None: every client
    limits: RateLimits | None = None  # limit-rps, limit-rpm, limit-connections; None: none
    send_rate: SendRate | None = None  # limit-rate and limit-rate-after; None: full speed
    mirror: Mirror | None = None  # mirror-target and the like; None: no copies
    external_auth: ExternalAuth | None = None  # auth-url and the like; None: none
    # custom-http-errors (none: no error pages), disable-proxy-intercept-errors (inverted) and
    # default-backend (a Service name) (docs/behaviour.md, "Custom error pages")
    error_codes: frozenset[int] = frozenset()
    intercept_errors: bool = True
    default_backend: str | None = None
    # custom-headers: the ConfigMap's `namespace/name`, then what is read of it
    # (docs/behaviour.md, "Custom response headers")
    custom_headers: str | None = None
    response_headers: ResponseHeaders | None = None
    auth_secret: AuthSecret | None = None  # auth-type basic's Secret, looked up later
    basic_auth: BasicAuth | None = None  # its users, once looked up; None: no authentication
    # proxy-redirect-*, proxy-cookie-*: the upstream's Location and cookies rewritten; None: off
    # (docs/behaviour.md, "Location and cookie rewrites")
    response_edits: ResponseEdits | None = None
    satisfy_any: bool = False  # satisfy: any (docs/behaviour.md, "satisfy"); else all
    auth_tls: AuthTls | None = None  # auth-tls-*: its hosts' client certificates, looked up later


def parse_server_name(text: str) -> str:
    """An Ingress host or server alias, lower-cased: `shop.example.com` or `*.example.com`."""
    name = text.lower()
    if len(name) > 253 or not _SERVER_NAME.fullmatch(name):
        raise ValueError(f"{text!r} is not a host name or a *.domain wildcard")
    return name


def parse_annotations(annotations: Mapping[str, str], defaults: UpstreamPolicy) -> IngressSettings:
    """The settings `annotations` (one Ingress's, values already text) ask for over `defaults`."""
    reader = _Reader(annotations)
    affinity = reader.value("affinity", _affinity_type) or False
    if affinity:
        cookie = _cookie_settings(reader)
    else:
        cookie = CookieSettings()
        for name in _COOKIE_ANNOTATIONS:
            reader.ignored_without_affinity(name)
    # ingress-nginx reads the mode even without affinity: a backend shared with an affinity
    # Ingress takes the mode of the first Ingress that sets one, whichever that is.
    mode = reader.value("affinity-mode", _affinity_mode)
    use_regex = reader.value("use-regex", _go_bool) or False
    aliases = reader.value("server-alias", _server_aliases) or ()
    own = _Reader(annotations, OWN_PREFIX)
    upstream = _upstream_policy(reader, own, defaults)
    ssl_redirect = reader.value("ssl-redirect", _go_bool)
    force_ssl_redirect = reader.value("force-ssl-redirect", _go_bool) or False
    preserve_trailing_slash = reader.value("preserve-trailing-slash", _go_bool) or False
    canary = _canary_policy(reader)
    # ingress-nginx accepts exactly "sticky" and "legacy"; anything else acts as sticky
    behaviour = reader.value("affinity-canary-behavior", _canary_behaviour)
    if behaviour is not None and canary is None:
        reader.warnings.append(
            f'{PREFIX}affinity-canary-behavior has effect only with {PREFIX}canary: "true"'
        )
    service_upstream = reader.value("service-upstream", _go_bool) or False
    backend_protocol = reader.value("backend-protocol", parse_backend_protocol) or "HTTP"
    proxy_ssl = _proxy_ssl(reader)
    balancing = _balancing(reader)
    rewrites = _rewrites(reader)
    cors_policy = _cors(reader)
    access, denied = _access_list(reader)
    limits, limits_denied = _rate_limits(reader)
    send_rate = _send_rate(reader)
    mirrored_to = mirror(reader)
    auth, auth_denied = external_auth(reader, _go_bool)
    error_codes = reader.value("custom-http-errors", parse_codes) or frozenset()
    intercept_errors = not reader.value("disable-proxy-intercept-errors", _go_bool)
    default_backend = reader.value("default-backend", parse_service_name)
    custom_headers = reader.value("custom-headers", _config_map_name)
    auth_secret, secret_denied = _auth_secret(reader)
    edits = response_edits(
        redirect_rule(
            reader.value("proxy-redirect-from", parse_redirect_value),
            reader.value("proxy-redirect-to", parse_redirect_value),
            backend_protocol,
            reader.warnings,
        ),
        reader.value("proxy-cookie-domain", parse_cookie_domain),
        reader.value("proxy-cookie-path", parse_cookie_path),
    )
    satisfy_any = reader.value("satisfy", _satisfy) == "any"
    client_certificates = auth_tls(reader, _go_bool)
    denied = (
        "; ".join(why for why in (denied, limits_denied, auth_denied, secret_denied) if why) or None
    )
    reader.unsupported()
    return IngressSettings(
        affinity=affinity,
        mode=mode,
        cookie=cookie,
        use_regex=use_regex,
        aliases=aliases,
        upstream=upstream,
        ssl_redirect=_or(ssl_redirect, True),
        force_ssl_redirect=force_ssl_redirect,
        preserve_trailing_slash=preserve_trailing_slash,
        canary=canary,
        canary_sticky=behaviour != "legacy",
        warnings=(*reader.warnings, *own.warnings),
        service_upstream=service_upstream,
        backend_protocol=backend_protocol,
        proxy_ssl=proxy_ssl,
        balancing=balancing,
        access=access,
        limits=limits,
        send_rate=send_rate,
        mirror=mirrored_to,
        denied=denied,
        auth_secret=auth_secret,
        rewrites=rewrites,
        cors=cors_policy,
        external_auth=auth,
        error_codes=error_codes,
        intercept_errors=intercept_errors,
        default_backend=default_backend,
        custom_headers=custom_headers,
        response_edits=edits,
        satisfy_any=satisfy_any,
        auth_tls=client_certificates,
    )


def _cors(reader: _Reader) -> CorsPolicy | None:
    """enable-cors and the cors-* annotations, with ingress-nginx's defaults for values it
    refuses (docs/behaviour.md, "CORS"); None without `enable-cors: true`."""
    if not reader.value("enable-cors", _go_bool):
        for name in _CORS_ANNOTATIONS:
            reader.ignored_without(name, 'enable-cors: "true"')
        return None
    skipped: list[str] = []
    origins = reader.value("cors-allow-origin", lambda text: parse_origins(text, skipped))
    if skipped:
        reader.warnings.append(
            f"{PREFIX}cors-allow-origin: {', '.join(map(repr, skipped))} not scheme://host[:port],"
            " null or *; skipped"
        )
    default = CorsPolicy()
    return CorsPolicy(
        origins=origins,  # None (absent, invalid or with `*`): every origin
        methods=_or(reader.value("cors-allow-methods", parse_methods), default.methods),
        headers=_or(reader.value("cors-allow-headers", parse_headers), default.headers),
        credentials=_or(reader.value("cors-allow-credentials", _go_bool), True),
        expose=_or(reader.value("cors-expose-headers", parse_expose), ""),
        max_age=_or(reader.value("cors-max-age", parse_max_age), default.max_age),
    )


def _access_list(reader: _Reader) -> tuple[AccessList | None, str | None]:
    """The *-source-range annotations, and why the Ingress's paths answer 503 when a list is
    invalid: ingress-nginx refuses such an Ingress, and serving it to every client instead
    would open what it closes (docs/ingress-nginx-compat.md, "Access by client address")."""
    ranges: dict[str, tuple[Network, ...]] = {}  # by annotation name
    invalid = []
    for name in _ACCESS_ANNOTATIONS:
        text = reader.text(name)
        if text is None or (name == "whitelist-source-range" and _ALLOW in ranges):
            continue  # (the older name counts only when the newer one is unset or empty)
        try:
            ranges[name] = parse_ranges(text)
        except ValueError as error:
            invalid.append(f"{PREFIX}{name}: {error}")
    if invalid:
        reader.warnings.extend(f"{line}; its paths answer 503" for line in invalid)
        return None, "; ".join(invalid)
    allow = ranges.get(_ALLOW) or ranges.get("whitelist-source-range", ())
    deny = ranges.get("denylist-source-range", ())
    return (AccessList(deny=deny, allow=allow) if allow or deny else None), None


def _rate_limits(reader: _Reader) -> tuple[RateLimits | None, str | None]:
    """limit-rps, limit-rpm, limit-connections, limit-burst-multiplier and limit-allowlist
    (docs/behaviour.md, "Rate and connection limits"), and why the Ingress's paths answer 503:
    ingress-nginx refuses an Ingress whose limit or allowlist is not valid, and serving it
    without the limit instead would open what it closes."""
    counts: dict[str, int] = {}
    invalid = []
    for name in _LIMITS:
        text = reader.value(name, str)
        if text is None:
            continue
        try:
            counts[name] = _integer(text)
        except ValueError as error:
            invalid.append(f"{PREFIX}{name}: {error}")
    allow_name = "limit-allowlist"
    allow_text = reader.text(allow_name)
    if allow_text is None:  # (the older name counts only when the newer one is unset or empty)
        allow_name = "limit-whitelist"
        allow_text = reader.text(allow_name)
    exempt: tuple[Network, ...] = ()
    if allow_text is not None:
        try:
            exempt = parse_ranges(allow_text)
        except ValueError as error:
            invalid.append(f"{PREFIX}{allow_name}: {error}")
    if invalid:
        reader.warnings.extend(f"{line}; its paths answer 503" for line in invalid)
        return None, "; ".join(invalid)
    multiplier = reader.value("limit-burst-multiplier", _burst_multiplier)
    burst = _or(multiplier, _BURST_MULTIPLIER)
    # (ingress-nginx writes no limit_req or limit_conn for 0 or a negative number)
    rps, rpm, connections = (max(counts.get(name, 0), 0) for name in _LIMITS)
    requests = (
        *((per_second(rps, rps * burst),) if rps else ()),
        *((per_minute(rpm, rpm * burst),) if rpm else ()),
    )
    if not requests and not connections:
        for name in ("limit-burst-multiplier", "limit-allowlist", "limit-whitelist"):
            reader.ignored_without(name, "limit-rps, limit-rpm or limit-connections")
        return None, None
    if not requests:
        reader.ignored_without("limit-burst-multiplier", "limit-rps or limit-rpm")
    return RateLimits(requests=requests, connections=connections, exempt=exempt), None


def _send_rate(reader: _Reader) -> SendRate | None:
    """limit-rate and limit-rate-after, in KB (docs/behaviour.md, "Response rate"): an invalid
    value is ignored with a warning and 0 (ingress-nginx's default) applies; ingress-nginx writes
    no limit_rate for 0 or less, and limit_rate_after means nothing without it."""
    rate = max(reader.value("limit-rate", _integer) or 0, 0)
    after = max(reader.value("limit-rate-after", _integer) or 0, 0)
    if not rate:
        reader.ignored_without("limit-rate-after", "limit-rate above 0")
        return None
    return SendRate(rate * 1024, after * 1024)


def _burst_multiplier(text: str) -> int:
    """A whole number from 1: nginx refuses `burst=0`, so ingress-nginx's reload would fail."""
    multiplier = _integer(text)
    if multiplier < 1:
        raise ValueError(f"{text!r} is not a whole number from 1")
    return multiplier


def _auth_secret(reader: _Reader) -> tuple[AuthSecret | None, str | None]:
    """auth-type basic and its Secret (docs/behaviour.md, "Basic authentication"), and why the
    Ingress's paths answer 503 when they cannot be read: never served without the asked-for
    authentication (docs/ingress-nginx-compat.md, "Basic authentication")."""
    if reader.text("auth-type") is None:
        for name in _BASIC_AUTH_ANNOTATIONS[1:]:
            reader.ignored_without(name, "auth-type")
        return None, None
    problems: list[str] = []
    _required(reader, "auth-type", parse_auth_type, problems)
    secret = _required(reader, "auth-secret", parse_secret_name, problems)
    secret_type = AUTH_FILE
    if reader.text("auth-secret-type") is not None:
        secret_type = _required(reader, "auth-secret-type", parse_secret_type, problems) or ""
    if problems or secret is None:
        reader.warnings.extend(f"{line}; its paths answer 503" for line in problems)
        return None, "; ".join(problems)
    realm = _or(reader.value("auth-realm", parse_realm), "")
    return AuthSecret(secret, secret_type, realm), None


def _required(
    reader: _Reader, name: str, parse: Callable[[str], str], problems: list[str]
) -> str | None:
    """The parsed value of `name`, or None with a problem noted when it is missing or invalid."""
    text = reader.text(name)
    if text is None:
        problems.append(f"{PREFIX}{name} is missing")
        return None
    try:
        return parse(text)
    except ValueError as error:
        problems.append(f"{PREFIX}{name}: {error}")
        return None


def _canary_policy(reader: _Reader) -> CanaryPolicy | None:
    """The canary-* annotations (docs/ingress-nginx-compat.md, "Canaries"); None without
    `canary: true`, when ingress-nginx ignores the others."""
    if not reader.value("canary", _go_bool):
        for name in _CANARY_ANNOTATIONS:
            if reader.present(name):
                reader.warnings.append(f'{PREFIX}{name} is ignored without {PREFIX}canary: "true"')
        return None
    header = reader.value("canary-by-header", _canary_name)
    pattern_text = reader.value("canary-by-header-pattern", _canary_pattern_text)
    pattern, pattern_error = None, False
    if pattern_text is not None:
        try:
            pattern = re.compile(pattern_text)
        except re.error as error:
            pattern_error = True
            reader.warnings.append(
                f"{PREFIX}canary-by-header-pattern: {pattern_text!r} is not a valid regular"
                f" expression ({error}); a request with the header goes to the main backend,"
                " as with ingress-nginx"
            )
    total = reader.value("canary-weight-total", _integer)
    if total is not None and total < 100:
        reader.warnings.append(
            f"{PREFIX}canary-weight-total: {total} is below 100, which ingress-nginx's balancer"
            " does not use; weights are out of 100"
        )
    return CanaryPolicy(
        header=variable_name(header) if header else "",
        header_value=reader.value("canary-by-header-value", _canary_name) or "",
        header_pattern=pattern,
        pattern_error=pattern_error,
        cookie=(reader.value("canary-by-cookie", _canary_name) or "").lower(),
        weight=reader.value("canary-weight", _integer) or 0,
        weight_total=_or(total, 100),
    )


def _canary_behaviour(text: str) -> str:
    if text not in ("sticky", "legacy"):
        raise ValueError(f"{text!r} is not sticky or legacy")
    return text


def _integer(text: str) -> int:
    """Go's strconv.Atoi: an optional sign and decimal digits."""
    if not _SECONDS.fullmatch(text.removeprefix("+")):
        raise ValueError(f"{text!r} is not a whole number")
    return int(text)


def _cookie_settings(reader: _Reader) -> CookieSettings:
    samesite = reader.value("session-cookie-samesite", _samesite)
    if samesite is not None and samesite not in SAMESITE_SPELLINGS:
        # ingress-nginx accepts the value, then silently sends no SameSite at all
        # (docs/ingress-nginx-compat.md, "Attributes")
        reader.warnings.append(
            f"{PREFIX}session-cookie-samesite: {samesite!r} is sent as no SameSite at all, as by"
            f" ingress-nginx; write {samesite.capitalize()}"
        )
    return CookieSettings(
        name=_or(reader.value("session-cookie-name", _cookie_name), CookieSettings().name),
        path=reader.value("session-cookie-path", _cookie_path),
        domain=reader.value("session-cookie-domain", _cookie_domain),
        samesite=samesite,
        conditional_samesite_none=bool(
            reader.value("session-cookie-conditional-samesite-none", _go_bool)
        ),
        secure=bool(reader.value("session-cookie-secure", _go_bool)),
        max_age=reader.value("session-cookie-max-age", _cookie_seconds),
        expires=reader.value("session-cookie-expires", _cookie_seconds),
        change_on_failure=bool(reader.value("session-cookie-change-on-failure", _go_bool)),
    )


def _balancing(reader: _Reader) -> Balancing | None:
    """upstream-hash-by* and load-balance (docs/ingress-nginx-compat.md, "Hash-by keys")."""
    key = reader.value("upstream-hash-by", _hash_key)
    subset = reader.value("upstream-hash-by-subset", _go_bool) or False
    size = reader.value("upstream-hash-by-subset-size", _subset_size)
    algorithm = reader.value("load-balance", _load_balance)
    hash_by = None
    if key is None:
        for name in ("upstream-hash-by-subset", "upstream-hash-by-subset-size"):
            reader.ignored_without(name, "upstream-hash-by")
    else:
        if key.unknown:
            names = ", ".join(f"${name}" for name in key.unknown)
            reader.warnings.append(
                f"{PREFIX}upstream-hash-by: {names} not known here, read as empty text"
            )
        hash_by = HashBy(key, (size or DEFAULT_SUBSET_SIZE) if subset else 0)
    if hash_by is None and algorithm is None:
        return None
    return Balancing(algorithm, hash_by)


def _rewrites(reader: _Reader) -> RewriteSettings | None:
    """rewrite-target, the redirects, app-root, x-forwarded-prefix, upstream-vhost and
    from-to-www-redirect (docs/behaviour.md, "Rewrites and redirects"); None when none is set."""
    redirect = None
    temporal = reader.value("temporal-redirect", parse_redirect_url)
    permanent = reader.value("permanent-redirect", parse_redirect_url)
    if temporal is not None:
        # ingress-nginx reads temporal-redirect first and then no permanent-redirect
        code = reader.value("temporal-redirect-code", _integer)
        redirect = FixedRedirect(temporal, _code(code, TEMPORAL_CODES, TEMPORAL_DEFAULT))
        if permanent is not None:
            reader.warnings.append(
                f"{PREFIX}permanent-redirect is ignored: {PREFIX}temporal-redirect comes first"
            )
    else:
        reader.ignored_without("temporal-redirect-code", "temporal-redirect")
    if temporal is None and permanent is not None:
        code = reader.value("permanent-redirect-code", _integer)
        redirect = FixedRedirect(permanent, _code(code, PERMANENT_CODES, PERMANENT_DEFAULT))
    elif permanent is None:
        reader.ignored_without("permanent-redirect-code", "permanent-redirect")
    settings = RewriteSettings(
        target=reader.value("rewrite-target", parse_rewrite_target),
        redirect=redirect,
        app_root=reader.value("app-root", parse_app_root),
        x_forwarded_prefix=reader.value("x-forwarded-prefix", parse_prefix),
        upstream_vhost=reader.value("upstream-vhost", parse_vhost),
        from_to_www=reader.value("from-to-www-redirect", _go_bool) or False,
    )
    return None if settings == RewriteSettings() else settings


def _code(code: int | None, allowed: range, default: int) -> int:
    """ingress-nginx keeps a redirect code in its range and takes the default for any other."""
    return code if code is not None and code in allowed else default


def _upstream_policy(reader: _Reader, own: _Reader, defaults: UpstreamPolicy) -> UpstreamPolicy:
    policy = UpstreamPolicy(
        connect_timeout=_or(
            reader.value("proxy-connect-timeout", _whole_seconds), defaults.connect_timeout
        ),
        read_timeout=_or(reader.value("proxy-read-timeout", _whole_seconds), defaults.read_timeout),
        send_timeout=_or(reader.value("proxy-send-timeout", _whole_seconds), defaults.send_timeout),
        body_size=_or(reader.value("proxy-body-size", parse_size), defaults.body_size),
        next_upstream=_or(
            reader.value("proxy-next-upstream", parse_next_upstream), defaults.next_upstream
        ),
        next_upstream_tries=_or(
            reader.value("proxy-next-upstream-tries", parse_count), defaults.next_upstream_tries
        ),
        next_upstream_timeout=_or(
            reader.value("proxy-next-upstream-timeout", parse_count), defaults.next_upstream_timeout
        ),
        eject_after_failures=_or(
            own.value("eject-after-failures", parse_count), defaults.eject_after_failures
        ),
        eject_seconds=_or(own.value("eject-seconds", parse_timeout), defaults.eject_seconds),
    )
    return defaults if policy == defaults else policy  # shared, so snapshots compare cheaply


def _proxy_ssl(reader: _Reader) -> ProxySsl | None:
    """As ingress-nginx: the other proxy-ssl-* annotations count only next to a secret."""
    secret = reader.value("proxy-ssl-secret", parse_secret)
    if secret is None:
        for name in _PROXY_SSL_ANNOTATIONS:
            reader.ignored_without(name, "proxy-ssl-secret")
        return None
    defaults = ProxySsl(secret)
    return ProxySsl(
        secret=secret,
        verify=_or(reader.value("proxy-ssl-verify", parse_on_off), defaults.verify),
        name=reader.value("proxy-ssl-name", _proxy_ssl_name),
        sni=_or(reader.value("proxy-ssl-server-name", parse_on_off), defaults.sni),
        protocols=_or(reader.value("proxy-ssl-protocols", parse_protocols), defaults.protocols),
        ciphers=_or(reader.value("proxy-ssl-ciphers", parse_ciphers), defaults.ciphers),
    )


def _or(value: T | None, default: T) -> T:
    return default if value is None else value


class _Reader:
    """Reads annotation values by short name and keeps one warning per refused annotation."""

    def __init__(self, annotations: Mapping[str, str], prefix: str = PREFIX) -> None:
        self._prefix = prefix
        self._values = {
            key.removeprefix(prefix): value
            for key, value in annotations.items()
            if key.startswith(prefix)
        }
        self.warnings: list[str] = []

    def value(self, name: str, parse: Callable[[str], T]) -> T | None:
        """The parsed value of annotation `name`; None when absent, empty or invalid."""
        raw = self._values.get(name)
        if raw is None:
            return None
        text = raw.strip()  # ingress-nginx trims string annotations
        if not text:
            self.warnings.append(f"{self._prefix}{name} is empty; ignored")
            return None
        try:
            return parse(text)
        except ValueError as error:
            self.warnings.append(f"{self._prefix}{name}: {error}; ignored")
            return None

    def text(self, name: str) -> str | None:
        """The trimmed text of annotation `name`; None when absent or empty."""
        return self.value(name, str)

    def present(self, name: str) -> bool:
        return name in self._values

    def ignored_without_affinity(self, name: str) -> None:
        self.ignored_without(name, "affinity: cookie")

    def ignored_without(self, name: str, needed: str) -> None:
        if name in self._values:
            self.warnings.append(f"{PREFIX}{name} is ignored without {PREFIX}{needed}")

    def unsupported(self) -> None:
        """A warning for each annotation this proxy does not act on; one honoured with a
        difference is reported by `routes` only
        (docs/ingress-nginx-compat.md, "Annotation coverage")."""
        for name in sorted(self._values.keys() - _HONOURED):
            support, why = verdict(name)
            if support is Support.NO_EFFECT:
                self.warnings.append(f"{PREFIX}{name} has no effect here ({why}); ignored")
            elif support is Support.NOT_SUPPORTED:
                because = f" ({why})" if why else ""
                self.warnings.append(f"{PREFIX}{name} is not supported{because}; ignored")


def _affinity_type(text: str) -> bool:
    if text != "cookie":
        raise ValueError(f"{text!r} is not cookie, the only affinity type")
    return True


def _affinity_mode(text: str) -> AffinityMode:
    try:
        return AffinityMode(text)  # case-sensitive, as in ingress-nginx
    except ValueError:
        raise ValueError(f"{text!r} is not balanced or persistent") from None


def _hash_key(text: str) -> HashKey:
    if not _HASH_BY.fullmatch(text):
        raise ValueError(f"{text!r} holds characters other than letters, digits and -_${{}}")
    return HashKey(text)


def _subset_size(text: str) -> int:
    size = int(text) if _SECONDS.fullmatch(text) else 0
    if size < 1:
        raise ValueError(f"{text!r} is not a positive number")
    return size


def _load_balance(text: str) -> LoadBalance:
    if text in _OTHER_BALANCERS:
        raise ValueError(
            f"{text!r} is chosen here by affinity or upstream-hash-by, not by load-balance"
        )
    try:
        return LoadBalance(text)
    except ValueError:
        raise ValueError(f"{text!r} is not round_robin or ewma") from None


def _go_bool(text: str) -> bool:
    value = _GO_BOOLS.get(text)
    if value is None:
        raise ValueError(f"{text!r} is not a boolean (true or false)")
    return value


def _matching(pattern: re.Pattern[str], what: str) -> Callable[[str], str]:
    """A parser accepting the texts `pattern` matches whole; `what` names them in the error."""

    def parse(text: str) -> str:
        if not pattern.fullmatch(text):
            raise ValueError(f"{text!r} is not {what}")
        return text

    return parse


_cookie_name = _matching(_BASIC_CHARS, "a cookie name (letters, digits and -._~/:)")
_cookie_path = _matching(_URL_CHARS, "a cookie path (letters, digits and -._~/:,?&=)")
_cookie_domain = _matching(_BASIC_CHARS, "a cookie domain (letters, digits and -._~/:)")
_config_map_name = _matching(_BASIC_CHARS, "a ConfigMap's namespace/name")
_canary_name = _matching(_BASIC_CHARS, "made of letters, digits and -._~/:")
# ingress-nginx's IsValidRegex: the characters a path regex may use (compiled afterwards)
_canary_pattern_text = _matching(_PATTERN_CHARS, "made of the characters a path regex may use")


def _satisfy(text: str) -> str:
    if text not in ("any", "all"):  # (case-sensitive, as ingress-nginx's)
        raise ValueError(f"{text!r} is not any or all")
    return text


def _samesite(text: str) -> str:
    if text.lower() not in _SAMESITE:
        raise ValueError(f"{text!r} is not None, Lax or Strict")
    return text


def _cookie_seconds(text: str) -> int:
    if not _SECONDS.fullmatch(text):
        raise ValueError(f"{text!r} is not a number of seconds")
    return int(text)


def _whole_seconds(text: str) -> float:
    """ingress-nginx's proxy timeouts are whole seconds (`30`, not `30s` or `0.5`)."""
    return float(parse_positive(text))


def _proxy_ssl_name(text: str) -> str:
    """A host name; nginx variables such as `$host` are refused (one name per Ingress here)."""
    if not _SERVER_NAME.fullmatch(text.lower()):
        raise ValueError(f"{text!r} is not a host name (nginx variables are not supported)")
    return text.lower()


def _server_aliases(text: str) -> tuple[str, ...]:
    """Comma-separated host names; like ingress-nginx, one bad name refuses the annotation."""
    names = {parse_server_name(name.strip()) for name in text.split(",") if name.strip()}
    return tuple(sorted(names))

"""Every `nginx.ingress.kubernetes.io/*` annotation ingress-nginx documents, and what this proxy
does with it (docs/ingress-nginx-compat.md, "Annotation coverage"): honoured, honoured with a
stated difference, without effect here (and why), or not supported.

`sticky-proxy routes` reports each Ingress's annotations from this table, and the README's table
is checked against it, so the two cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum


class Support(StrEnum):
    HONOURED = "honoured"
    DIFFERENT = "honoured, with a difference"
    NO_EFFECT = "no effect here"
    NOT_SUPPORTED = "not supported"


_BUFFERS = "the proxy streams bodies both ways and has no nginx buffers to size"
# refused, not just without effect: a snippet is nginx configuration, and there is no
# nginx here; the Ingress is served without it (docs/ingress-nginx-compat.md, "Snippets")
_SNIPPET = "refused, there is no nginx here; move what it does into annotations or the application"
_MODSECURITY = "there is no ModSecurity here"
_TRACING = "the proxy does not trace requests"
_TLS_GLOBAL = "TLS settings are the proxy's own (Python's ssl defaults), not per Ingress"
_COOKIE = "as ingress-nginx sets the cookie, byte for byte"
_PER_WORKER = "per client address and worker process: --workers N allows N times the limit"

# name -> (support, why or how); the ingress-nginx user guide's list, every name it mentions.
ANNOTATIONS: dict[str, tuple[Support, str]] = {
    "affinity": (Support.HONOURED, "cookie, the only type"),
    "affinity-mode": (Support.HONOURED, "balanced and persistent"),
    "affinity-canary-behavior": (
        Support.HONOURED,
        "sticky: a cookie of either side keeps its client there; legacy: the canary sets none",
    ),
    "app-root": (Support.HONOURED, "302 from / of the host, before any location"),
    "auth-snippet": (Support.NOT_SUPPORTED, _SNIPPET),
    # external auth (docs/behaviour.md, "External authentication")
    "auth-url": (
        Support.DIFFERENT,
        "http and https; 2xx passes, 401 and 403 refuse, else 500; of nginx's variables only"
        " $host, $http_host, $scheme, $request_uri, $escaped_request_uri, $request_method and"
        " $remote_addr",
    ),
    "auth-method": (Support.HONOURED, "the subrequest's method, default GET"),
    "auth-signin": (
        Support.DIFFERENT,
        "a 401 becomes a 302 there with the original URL; auth-url's variables only",
    ),
    "auth-signin-redirect-param": (Support.HONOURED, "default rd"),
    "auth-response-headers": (
        Support.DIFFERENT,
        "the auth service's values replace the client's, never sent through; not Host, framing"
        " or X-Forwarded-* headers, which the proxy sets itself",
    ),
    "auth-request-redirect": (Support.HONOURED, "sent as X-Auth-Request-Redirect"),
    "auth-proxy-set-headers": (
        Support.DIFFERENT,
        "a namespace/name ConfigMap's headers on the auth subrequest; missing or invalid: 503,"
        " a value with control characters too; framing headers are dropped",
    ),
    "auth-always-set-cookie": (
        Support.HONOURED,
        "the auth service's Set-Cookie on every answer, not only 2xx and 3xx",
    ),
    "auth-cache-key": (
        Support.DIFFERENT,
        "answers kept per worker; the variables of upstream-hash-by, another refuses the key",
    ),
    "auth-cache-duration": (Support.HONOURED, "as proxy_cache_valid, default 200 202 401 5m"),
    **dict.fromkeys(
        ("auth-keepalive", "auth-keepalive-requests", "auth-keepalive-timeout"),
        (Support.NO_EFFECT, "connections to auth services are kept alive per worker anyway"),
    ),
    "auth-keepalive-share-vars": (Support.NO_EFFECT, "there are no nginx variables to share"),
    "auth-realm": (Support.DIFFERENT, "an invalid realm is the default one, not auth turned off"),
    "auth-secret": (
        Support.HONOURED,
        "htpasswd hashes bcrypt, $apr1$, $1$, $5$, $6$, {SHA}, {SSHA}, {PLAIN}, DES crypt",
    ),
    "auth-secret-type": (Support.HONOURED, "auth-file and auth-map"),
    # client certificates (docs/behaviour.md, "Client certificate authentication")
    "auth-tls-secret": (
        Support.DIFFERENT,
        "ca.crt and ca.crl of a Secret of the Ingress's namespace, per host (the first Ingress"
        " of the host); a missing Secret or ca.crt makes the host answer 403",
    ),
    "auth-tls-verify-client": (
        Support.DIFFERENT,
        "on, off, optional; optional_no_ca acts as optional (a certificate of another CA ends"
        " the handshake)",
    ),
    "auth-tls-verify-depth": (
        Support.NOT_SUPPORTED,
        "read, but Python's ssl cannot set the verification depth: any chain to the CA is taken",
    ),
    "auth-tls-error-page": (
        Support.DIFFERENT,
        "an http(s) URL gets the 302 for a missing certificate; a path (an nginx internal"
        " redirect) is warned about and the 400 answers",
    ),
    "auth-tls-pass-certificate-to-upstream": (
        Support.HONOURED,
        "ssl-client-cert, the URL-encoded PEM of the client's certificate",
    ),
    "auth-tls-match-cn": (
        Support.DIFFERENT,
        "Python regular expressions searched in the RFC 2253 subject; an invalid value makes"
        " the host answer 403",
    ),
    "auth-type": (
        Support.DIFFERENT,
        "basic; digest and invalid values answer 503 instead of serving without authentication",
    ),
    "backend-protocol": (
        Support.DIFFERENT,
        "HTTP and HTTPS; the paths of GRPC, GRPCS, AUTO_HTTP and FCGI answer 503",
    ),
    "allowlist-source-range": (
        Support.HONOURED,
        "IPv4 and IPv6 CIDRs and addresses; others get 403; an invalid list answers 503",
    ),
    "denylist-source-range": (Support.HONOURED, "checked before the allow list, 403"),
    "whitelist-source-range": (Support.HONOURED, "allowlist-source-range's older name"),
    "canary": (Support.HONOURED, "merged into the main Ingress's route of the same path"),
    "canary-by-cookie": (Support.HONOURED, "always and never"),
    "canary-by-header": (Support.HONOURED, "always and never, after the affinity cookie"),
    "canary-by-header-pattern": (Support.DIFFERENT, "Python regular expressions, not PCRE"),
    "canary-by-header-value": (Support.HONOURED, "an exact match"),
    "canary-weight": (Support.HONOURED, "out of canary-weight-total"),
    "canary-weight-total": (Support.HONOURED, "below 100 counts as 100, as in ingress-nginx"),
    "client-body-buffer-size": (Support.NO_EFFECT, _BUFFERS),
    "cors-allow-credentials": (Support.HONOURED, "default true"),
    "cors-allow-headers": (Support.HONOURED, "sent on every answer to an allowed origin"),
    "cors-allow-methods": (Support.HONOURED, "sent on every answer to an allowed origin"),
    "cors-allow-origin": (
        Support.DIFFERENT,
        "lists, null and one-label *. wildcards; an origin must match whole, not just its end",
    ),
    "cors-expose-headers": (Support.HONOURED, "sent on every answer to an allowed origin"),
    "cors-max-age": (Support.HONOURED, "default 1728000 seconds"),
    "custom-headers": (
        Support.DIFFERENT,
        "a ConfigMap of the Ingress's namespace; no global-allowed-response-headers list: any"
        " valid header but those the proxy writes",
    ),
    "custom-http-errors": (
        Support.DIFFERENT,
        "the default backend answers, its status kept, else 404; it is not sent the request body",
    ),
    "default-backend": (
        Support.DIFFERENT,
        "its Service's first port, for error pages and a Service without ready endpoints;"
        " without session affinity",
    ),
    "disable-proxy-intercept-errors": (
        Support.HONOURED,
        "the upstream's answers pass; the proxy's own errors still go to the error pages",
    ),
    "configuration-snippet": (Support.NOT_SUPPORTED, _SNIPPET),
    "connection-proxy-header": (
        Support.NO_EFFECT,
        "the proxy writes the upstream's Connection header itself (keep-alive, or upgrade)",
    ),
    "enable-cors": (Support.HONOURED, "preflight OPTIONS requests are answered 204 here"),
    "enable-access-log": (Support.NO_EFFECT, "the access log is on or off for the whole proxy"),
    "enable-global-auth": (Support.NO_EFFECT, "there is no global external auth to opt out of"),
    "enable-modsecurity": (Support.NO_EFFECT, _MODSECURITY),
    "enable-opentelemetry": (Support.NO_EFFECT, _TRACING),
    "enable-owasp-core-rules": (Support.NO_EFFECT, _MODSECURITY),
    "enable-rewrite-log": (Support.NO_EFFECT, "there are no nginx rewrites to log"),
    "force-ssl-redirect": (Support.HONOURED, "308 to https even without TLS configured here"),
    "from-to-www-redirect": (
        Support.DIFFERENT,
        "308 from the other name; its TLS certificate must be listed in spec.tls",
    ),
    "http2-push-preload": (Support.NO_EFFECT, "clients speak HTTP/1.1 to the proxy"),
    "limit-allowlist": (Support.HONOURED, "CIDRs and addresses no limit counts"),
    "limit-burst-multiplier": (Support.HONOURED, "default 5; burst = limit x multiplier"),
    "limit-connections": (Support.DIFFERENT, f"requests in flight, {_PER_WORKER}"),
    # docs/behaviour.md, "Response rate"
    "limit-rate": (
        Support.DIFFERENT,
        "KB a second per answer, sent a tenth of a second's worth at a time (nginx: up to a"
        " second's worth, then a wait)",
    ),
    "limit-rate-after": (Support.HONOURED, "KB of the answer, its head included, at full speed"),
    "limit-rpm": (Support.DIFFERENT, _PER_WORKER),
    "limit-rps": (Support.DIFFERENT, _PER_WORKER),
    "limit-whitelist": (Support.HONOURED, "limit-allowlist's older name"),
    "load-balance": (
        Support.DIFFERENT,
        "round_robin and ewma; EWMA averages per worker; a retry skips tried endpoints",
    ),
    # docs/behaviour.md, "Mirroring"
    "mirror-target": (
        Support.DIFFERENT,
        "http and https, auth-url's variables; the request never waits for the copy; at most 64"
        " copies in flight per worker (more are dropped); a copy is not mirrored again",
    ),
    "mirror-host": (Support.HONOURED, "the copy's Host; default the target's host name"),
    "mirror-request-body": (Support.HONOURED, "on (the default, up to 1 MiB) or off"),
    "modsecurity-snippet": (Support.NOT_SUPPORTED, _SNIPPET),
    "modsecurity-transaction-id": (Support.NO_EFFECT, _MODSECURITY),
    "opentelemetry-trust-incoming-span": (Support.NO_EFFECT, _TRACING),
    "permanent-redirect": (Support.HONOURED, "an http or https URL, without the query"),
    "permanent-redirect-code": (Support.HONOURED, "300 to 308, else 301"),
    "preserve-trailing-slash": (
        Support.HONOURED,
        "without it a redirect to https drops the target's last /, as ingress-nginx does",
    ),
    "proxy-body-size": (Support.HONOURED, "nginx size units; 0 is unlimited"),
    "proxy-buffer-size": (Support.NO_EFFECT, _BUFFERS),
    "proxy-buffering": (Support.NO_EFFECT, _BUFFERS),
    "proxy-buffers-number": (Support.NO_EFFECT, _BUFFERS),
    "proxy-busy-buffers-size": (Support.NO_EFFECT, _BUFFERS),
    "proxy-connect-timeout": (Support.HONOURED, "whole seconds"),
    # docs/behaviour.md, "Location and cookie rewrites"
    "proxy-cookie-domain": (
        Support.HONOURED,
        "off or `from to`, as proxy_cookie_domain; the affinity cookie is never rewritten",
    ),
    "proxy-cookie-path": (Support.HONOURED, "off or `from to`: a prefix or a ~ regex"),
    "proxy-http-version": (Support.NO_EFFECT, "upstreams are spoken to in HTTP/1.1, kept alive"),
    "proxy-max-temp-file-size": (Support.NO_EFFECT, _BUFFERS),
    "proxy-next-upstream": (
        Support.DIFFERENT,
        "error, timeout, non_idempotent and off; the http_* conditions are not retried",
    ),
    "proxy-next-upstream-timeout": (
        Support.HONOURED,
        "whole seconds from the first try, 0 is unlimited; after it the last failure is answered",
    ),
    "proxy-next-upstream-tries": (Support.HONOURED, "0 is unlimited"),
    "proxy-read-timeout": (Support.HONOURED, "whole seconds, between two reads"),
    "proxy-redirect-from": (
        Support.HONOURED,
        "Location and Refresh, as proxy_redirect: off, default, a prefix or a ~ regex",
    ),
    "proxy-redirect-to": (Support.HONOURED, "off leaves nginx's proxy_redirect default"),
    "proxy-request-buffering": (Support.NO_EFFECT, _BUFFERS),
    "proxy-send-timeout": (Support.HONOURED, "whole seconds, between two writes"),
    "proxy-ssl-ciphers": (Support.HONOURED, "OpenSSL's format, for TLS 1.2"),
    "proxy-ssl-name": (Support.DIFFERENT, "a host name; nginx variables such as $host are not"),
    "proxy-ssl-protocols": (Support.HONOURED, "TLSv1.2 and TLSv1.3"),
    "proxy-ssl-secret": (
        Support.DIFFERENT,
        "ca.crt, and tls.crt and tls.key beside it; from the API server, kubernetes.io/tls and"
        " Opaque Secrets only, with a TLS listener",
    ),
    "proxy-ssl-server-name": (Support.HONOURED, "on sends proxy-ssl-name by SNI"),
    "proxy-ssl-verify": (Support.HONOURED, "on or off, default off"),
    "proxy-ssl-verify-depth": (Support.DIFFERENT, "the chain is verified to any depth"),
    "rewrite-target": (
        Support.DIFFERENT,
        "$1..$9 from the path as a Python regex; no nginx variables, no absolute URLs",
    ),
    "satisfy": (
        Support.HONOURED,
        "any: an allow rule, basic or external auth lets a request in; refused, 401 before 403",
    ),
    "server-alias": (Support.HONOURED, "exact names and *. wildcards"),
    "server-snippet": (Support.NOT_SUPPORTED, _SNIPPET),
    "service-upstream": (
        Support.HONOURED,
        "the Service's cluster IP is the one endpoint, so cookies pin no pod",
    ),
    "session-cookie-change-on-failure": (Support.HONOURED, _COOKIE),
    "session-cookie-conditional-samesite-none": (Support.HONOURED, _COOKIE),
    "session-cookie-domain": (Support.HONOURED, _COOKIE),
    "session-cookie-expires": (Support.HONOURED, _COOKIE),
    "session-cookie-max-age": (Support.HONOURED, _COOKIE),
    "session-cookie-name": (Support.HONOURED, _COOKIE),
    "session-cookie-path": (Support.HONOURED, _COOKIE),
    "session-cookie-samesite": (Support.HONOURED, _COOKIE),
    "session-cookie-secure": (Support.HONOURED, _COOKIE),
    "ssl-ciphers": (Support.NO_EFFECT, _TLS_GLOBAL),
    "ssl-passthrough": (Support.NOT_SUPPORTED, "TLS is terminated by the proxy"),
    "ssl-prefer-server-ciphers": (Support.NO_EFFECT, _TLS_GLOBAL),
    "ssl-redirect": (Support.HONOURED, "308 to https for hosts with TLS, default true"),
    "stream-snippet": (Support.NOT_SUPPORTED, _SNIPPET),
    "temporal-redirect": (Support.HONOURED, "an http or https URL, before permanent-redirect"),
    "temporal-redirect-code": (Support.HONOURED, "300 to 307, else 302"),
    "upstream-hash-by": (
        Support.DIFFERENT,
        "same ring and pod as ingress-nginx; variables not known here read as empty",
    ),
    "upstream-hash-by-subset": (
        Support.DIFFERENT,
        "subsets cut from endpoints sorted by address, not in EndpointSlice order",
    ),
    "upstream-hash-by-subset-size": (Support.HONOURED, "default 3"),
    "upstream-vhost": (Support.DIFFERENT, "a host name; nginx variables such as $host are not"),
    "use-regex": (Support.HONOURED, "paths as regular expressions matched from the start"),
    "x-forwarded-prefix": (Support.HONOURED, "sent with a rewrite-target only, as ingress-nginx"),
}


def verdict(name: str) -> tuple[Support, str]:
    """What the proxy does with annotation `name` (without the prefix); a name ingress-nginx
    does not document is not supported either."""
    return ANNOTATIONS.get(name, (Support.NOT_SUPPORTED, "not an ingress-nginx annotation"))


def report(annotations: Mapping[str, str], prefix: str) -> tuple[tuple[str, str], ...]:
    """(annotation, what the proxy does with it) for each of one Ingress's annotations under
    `prefix`, in name order."""
    lines = []
    for key in sorted(annotations):
        if key.startswith(prefix):
            support, why = verdict(key.removeprefix(prefix))
            lines.append((key, f"{support.value}: {why}" if why else support.value))
    return tuple(lines)

"""proxy-redirect-from, proxy-redirect-to, proxy-cookie-domain and proxy-cookie-path: the values
ingress-nginx accepts (annotations/proxy) and the nginx directives its template writes for them
(docs/behaviour.md, "Location and cookie rewrites").

ingress-nginx validates these values with their spaces removed, then writes them into its
nginx.tmpl as they are: a value nginx then cannot read (three words, one word where it takes
two) fails ingress-nginx's reload. Such a value is refused here with a warning, and the
annotation's default (off) applies.
"""

from __future__ import annotations

import re
from typing import Final

from proxy.core.response_edits import ResponseEdits, Rewrite, rewrite

OFF: Final = "off"
PREFIX: Final = "nginx.ingress.kubernetes.io/"
# ingress-nginx's URLIsValidRegex, and cookieDomainRegex's characters (annotations/parser)
_URL_CHARS: Final = re.compile(r"[-._~a-zA-Z0-9/:,?&=]+")
_DOMAIN_CHARS: Final = re.compile(r"[-._~a-zA-Z0-9/:]+")
# nginx's proxy_pass in ingress-nginx's locations names the upstream `upstream_balancer`
_UPSTREAM: Final = "upstream_balancer"


def parse_redirect_value(text: str) -> str:
    """proxy-redirect-from or -to: one word of URL characters (or off, default)."""
    if not _URL_CHARS.fullmatch(text):
        raise ValueError(f"{text!r} is not one word of letters, digits and -._~/:,?&=")
    return _compiled(text)


def parse_cookie_path(text: str) -> tuple[str, str] | None:
    """proxy-cookie-path: `off` (None) or `from to`, words of URL characters."""
    return _pair(text, _URL_CHARS, "letters, digits and -._~/:,?&=")


def parse_cookie_domain(text: str) -> tuple[str, str] | None:
    """proxy-cookie-domain: `off` (None) or `from to` (ingress-nginx's cookieDomainRegex)."""
    return _pair(text, _DOMAIN_CHARS, "letters, digits and -._~/:")


def redirect_rule(
    source: str | None, to: str | None, protocol: str, warnings: list[str]
) -> Rewrite | None:
    """The proxy_redirect ingress-nginx's template writes for proxy-redirect-from `source` and
    -to `to` (None: unset, which is off for either): `off` or `default` as written; else
    `source to` unless `to` is off, when it writes nothing and nginx's own default applies.
    `default` rewrites the upstream's own address (proxy_pass's `http://upstream_balancer/`,
    https with backend-protocol HTTPS) to "/". A value that does nothing is warned about in
    `warnings`: ingress-nginx drops it silently."""
    source = source or OFF
    to = to or OFF
    if source in {OFF, "default"} and to != OFF:
        warnings.append(f"{PREFIX}proxy-redirect-to is ignored with proxy-redirect-from {source}")
    elif source not in {OFF, "default"} and to == OFF:
        warnings.append(
            f"{PREFIX}proxy-redirect-from is ignored without {PREFIX}proxy-redirect-to:"
            " nginx's proxy_redirect default applies"
        )
    if source == OFF:
        return None
    if source == "default" or to == OFF:
        scheme = "https" if protocol == "HTTPS" else "http"
        return rewrite(f"{scheme}://{_UPSTREAM}/", "/")
    return rewrite(source, to)


def response_edits(
    redirect: Rewrite | None,
    cookie_domain: tuple[str, str] | None,
    cookie_path: tuple[str, str] | None,
) -> ResponseEdits | None:
    """A route's edits, or None when every one is off (the usual case: no work per answer)."""
    if redirect is None and cookie_domain is None and cookie_path is None:
        return None
    return ResponseEdits(
        redirect=redirect,
        cookie_domain=None if cookie_domain is None else rewrite(*cookie_domain, domain=True),
        cookie_path=None if cookie_path is None else rewrite(*cookie_path),
    )


def _pair(text: str, chars: re.Pattern[str], what: str) -> tuple[str, str] | None:
    if text == OFF:
        return None
    words = text.split()
    if len(words) != 2 or not all(chars.fullmatch(word) for word in words):
        raise ValueError(f"{text!r} is not off or two words (from, to) of {what}")
    return _compiled(words[0]), words[1]


def _compiled(text: str) -> str:
    """`text`, once a `~` regex in it is known to compile (nginx would refuse it)."""
    if text.startswith("~"):
        try:
            re.compile(text.removeprefix("~").removeprefix("*"))
        except re.error as error:
            raise ValueError(f"{text!r} is not a valid regular expression ({error})") from None
    return text

"""The rewrite and redirect annotation values as ingress-nginx validates them (its annotations
rewrite, redirect, xforwardedprefix and upstreamvhost), and the filters they give a route
(docs/behaviour.md, "Rewrites and redirects"). Pure: no I/O, no logging."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from proxy.core.filters import Filters, HeaderEdit, Rewrite
from proxy.core.rewrites import FixedRedirect, RegexRewrite

# ingress-nginx's RegexPathWithCapture (rewrite-target, app-root, x-forwarded-prefix) and
# URLIsValidRegex (the redirect URLs), annotations/parser/validators.go
_PATH_WITH_CAPTURE = re.compile(r"/?[-._~a-zA-Z0-9/:$]*")
_URL_CHARS = re.compile(r"[-._~a-zA-Z0-9/:,?&=]*")
_VARIABLE = re.compile(r"\$(?![0-9])")  # `$` not before a capture number: an nginx variable
_HOST = re.compile(r"[-._~a-zA-Z0-9]+(?::[0-9]+)?")
# redirect codes ingress-nginx keeps (net/http's 300 to 307, or 308); outside them the default
TEMPORAL_CODES = range(300, 308)
PERMANENT_CODES = range(300, 309)
TEMPORAL_DEFAULT = 302
PERMANENT_DEFAULT = 301
APP_ROOT_CODE = 302  # nginx.tmpl's `return 302 $scheme://$http_host<app-root>`
WWW_CODE = 308  # from-to-www-redirect: the ConfigMap's http-redirect-code, by default


@dataclass(frozen=True, slots=True)
class RewriteSettings:
    """One Ingress's rewrite-target, redirects, app-root, x-forwarded-prefix and upstream-vhost."""

    target: str | None = None
    redirect: FixedRedirect | None = None  # temporal-redirect, else permanent-redirect
    app_root: str | None = None
    x_forwarded_prefix: str | None = None
    upstream_vhost: str | None = None
    from_to_www: bool = False

    def rewrites(self, path: str) -> bool:
        """Whether a location of this path is rewritten: ingress-nginx's needsRewrite (which
        also makes it a regex location, as use-regex does)."""
        return self.target is not None and self.target != path

    def filters(self, path: str) -> Filters | None:
        """What a route of `path` does to the request; None: nothing.

        As nginx.tmpl: the redirect `return` ends the location before the rewrite, and
        X-Forwarded-Prefix comes with the rewrite only (buildProxyPass)."""
        if self.redirect is not None:
            return Filters(fixed_redirect=self.redirect)
        rewrites = self.rewrites(path)
        if not rewrites and self.upstream_vhost is None:
            return None
        change = None
        headers = None
        if rewrites:
            assert self.target is not None
            change = RegexRewrite(re.compile(path, re.IGNORECASE), self.target)
            if self.x_forwarded_prefix is not None:
                headers = HeaderEdit(set=(("X-Forwarded-Prefix", self.x_forwarded_prefix),))
        vhost = None if self.upstream_vhost is None else Rewrite(self.upstream_vhost, None)
        return Filters(request_headers=headers, rewrite=vhost, path_regex=change)


def parse_rewrite_target(text: str) -> str:
    if not _PATH_WITH_CAPTURE.fullmatch(text):
        raise ValueError(f"{text!r} is not a path (letters, digits, -._~/: and $1..$9)")
    if _VARIABLE.search(text):
        raise ValueError(f"{text!r} names an nginx variable; only $1..$9 are supported here")
    if urlsplit(text).scheme:
        raise ValueError(f"{text!r} is an absolute URL; only paths are supported here")
    return text


def parse_app_root(text: str) -> str:
    """A path from the root (Go's url.ParseRequestURI, and not absolute)."""
    if not _PATH_WITH_CAPTURE.fullmatch(text) or not text.startswith("/"):
        raise ValueError(f"{text!r} is not a path from the root")
    return text


def parse_redirect_url(text: str) -> str:
    if not _URL_CHARS.fullmatch(text):
        raise ValueError(f"{text!r} holds characters other than letters, digits and -._~/:,?&=")
    if not urlsplit(text).scheme.startswith("http"):
        raise ValueError(f"{text!r} is not an http or https URL")
    return text


def parse_prefix(text: str) -> str:
    if not _PATH_WITH_CAPTURE.fullmatch(text) or "$" in text:
        raise ValueError(f"{text!r} is not a path (letters, digits and -._~/:)")
    return text


def parse_vhost(text: str) -> str:
    if not _HOST.fullmatch(text):
        raise ValueError(f"{text!r} is not a host name (nginx variables are not supported)")
    return text

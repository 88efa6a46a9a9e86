"""What a Gateway API rule's filters do to a request and its response, as pure values and
functions (docs/gateway-api.md, "Filters"): header edits, URL rewrites and redirects.

Ingress routes carry none of these (`Route.filters` is None), so the data plane looks at them
only for the routes that do.
"""

from __future__ import annotations

from dataclasses import dataclass

from proxy.core.headers import Headers, Request
from proxy.core.rewrites import FixedRedirect, RegexRewrite

DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True, slots=True)
class HeaderEdit:
    """RequestHeaderModifier or ResponseHeaderModifier: `set` replaces every header of that
    name, `add` appends one more, `remove` drops them all. Names compare in any case."""

    set: tuple[tuple[str, str], ...] = ()
    add: tuple[tuple[str, str], ...] = ()
    remove: tuple[str, ...] = ()  # lower case

    def apply(self, headers: Headers) -> Headers:
        removed = frozenset(self.remove)
        replaced = removed | {name.lower() for name, _ in self.set}
        edited = [(n, v) for n, v in headers if n.decode("latin-1").lower() not in replaced]
        for name, value in (*self.set, *self.add):
            if name.lower() not in removed:
                edited.append((name.encode("latin-1"), value.encode("latin-1")))
        return edited


@dataclass(frozen=True, slots=True)
class PathChange:
    """ReplaceFullPath (`full`) or ReplacePrefixMatch (`prefix`, of the path the route matched
    as a prefix)."""

    full: str | None = None
    prefix: str | None = None

    def apply(self, path: str, matched: str) -> str:
        if self.full is not None:
            return self.full
        assert self.prefix is not None
        # Whole segments: "/foo" or "/foo/" matched, "/xyz" or "/xyz/" in its place, and
        # "/foo/bar" becomes "/xyz/bar" in every combination; nothing left is "/".
        rest = path[len(matched.rstrip("/")) :]
        return (self.prefix.rstrip("/") + rest) or "/"


@dataclass(frozen=True, slots=True)
class Redirect:
    """RequestRedirect: the parts of the Location that change, and the status (default 302)."""

    scheme: str | None
    hostname: str | None
    port: int | None
    path: PathChange | None
    status: int
    listener_port: int  # the Gateway listener's port, used when no scheme or port is given

    def location(self, scheme: str, host: str, path: str, query: str, matched: str) -> str:
        """The Location for a request to `scheme`://`host``path`?`query` (host without port)."""
        new_scheme = self.scheme or scheme
        port = self.port
        if port is None:
            port = DEFAULT_PORTS.get(new_scheme, self.listener_port) if self.scheme else None
            if port is None:
                port = self.listener_port
        new_host = self.hostname or host
        authority = new_host if DEFAULT_PORTS.get(new_scheme) == port else f"{new_host}:{port}"
        new_path = self.path.apply(path, matched) if self.path is not None else path
        return f"{new_scheme}://{authority}{new_path}" + (f"?{query}" if query else "")


@dataclass(frozen=True, slots=True)
class Rewrite:
    """URLRewrite: the Host and the path the upstream sees."""

    hostname: str | None
    path: PathChange | None


@dataclass(frozen=True, slots=True)
class Filters:
    request_headers: HeaderEdit | None = None
    response_headers: HeaderEdit | None = None
    redirect: Redirect | None = None
    rewrite: Rewrite | None = None
    # an Ingress's annotations (docs/behaviour.md, "Rewrites and redirects"): permanent- or
    # temporal-redirect or app-root, and rewrite-target
    fixed_redirect: FixedRedirect | None = None
    path_regex: RegexRewrite | None = None


def rewritten(request: Request, filters: Filters, matched: str) -> Request:
    """The request as the upstream is to see it: headers edited, then Host and path rewritten.
    A copy: the original stays what the client sent, for logs and metrics."""
    forward = request.forward
    if filters.request_headers is not None:
        forward = filters.request_headers.apply(forward)
    host_header = request.host_header
    target = request.target
    rewrite = filters.rewrite
    if rewrite is not None:
        if rewrite.hostname is not None:
            # The Host line changes; X-Forwarded-Host keeps the client's (from `host_header`).
            host = rewrite.hostname.encode("latin-1")
            forward = [(b"Host", host), *((n, v) for n, v in forward if n.lower() != b"host")]
            host_header = host_header or host
        if rewrite.path is not None:
            path, mark, query = target.decode("latin-1").partition("?")
            target = (rewrite.path.apply(path, matched) + mark + query).encode("latin-1")
    if filters.path_regex is not None:
        path, mark, query = target.decode("latin-1").partition("?")
        target = (filters.path_regex.apply(path) + mark + query).encode("latin-1")
    return request.edited(forward, target, host_header)

"""mirror-target, mirror-host and mirror-request-body: a copy of each request sent elsewhere and
its answer ignored, as ingress-nginx does with nginx's mirror module
(docs/behaviour.md, "Mirroring").

ingress-nginx's mirror subrequest goes to an internal location that sets Host and proxy_passes to
the target, and nothing else: the copy carries the client's method, headers and (unless
mirror-request-body is off) body, none of the X-Forwarded-* or X-Request-ID headers the proxy
adds for the upstream. Pure: the data plane sends it (proxy/dataplane/mirror.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from proxy.core.external_auth import Facts, Template, wire
from proxy.core.headers import Request

# Set on every copy; a request that carries it is not mirrored again, so a target that leads
# back to this proxy gets one copy, not an endless chain of them (docs/behaviour.md, "Mirroring").
MIRRORED: Final = "X-Sticky-Proxy-Mirror"
_MARK: Final = MIRRORED.lower().encode()
# What the copy does not pass on: its framing (the client sends the body as it likes, the copy
# with a length) and Host, which the mirror location sets.
_NOT_PASSED: Final = frozenset({b"host", b"content-length", b"transfer-encoding", b"expect"})


@dataclass(frozen=True, slots=True)
class Mirror:
    """One Ingress's mirror: the target URL (with nginx variables, or `origin` and `path` when
    it has none), the Host of the copy, and whether the body goes too."""

    target: Template
    host: Template
    body: bool = True

    def url(self, facts: Facts) -> str:
        """Where the copy goes. A target with variables is expanded and used whole, as nginx's
        proxy_pass with variables; one without gets the request's query after its path, as
        proxy_pass with a URI in ingress-nginx's `location = /_mirror-<uid>` (a target without a
        path gets the request's URI: see docs/ingress-nginx-compat.md, "Mirroring")."""
        parts = self.target.parts
        if len(parts) > 1:
            return self.target.expand(facts.values())
        text = parts[0]
        start = text.find("/", text.find("//") + 2)
        if start < 0:
            return text + facts.request_uri
        query = facts.request_uri.find("?")
        if query < 0:
            return text
        return text + ("&" if "?" in text else "?") + facts.request_uri[query + 1 :]

    def headers(self, request: Request, facts: Facts) -> list[tuple[str, str]]:
        """The client's end-to-end headers but Host and the body's framing, then Host, the
        client's own X-Forwarded-For and X-Request-ID if it sent them, and the mark."""
        headers = [
            (name.decode("latin-1"), wire(value))
            for name, value in request.forward
            if name.lower() not in _NOT_PASSED
        ]
        headers.append(("Host", self.host.expand(facts.values())))
        if request.forwarded_for is not None:
            headers.append(("X-Forwarded-For", wire(request.forwarded_for)))
        if request.request_id is not None:
            headers.append(("X-Request-ID", wire(request.request_id)))
        headers.append((MIRRORED, "1"))
        return headers


def mirrored(request: Request) -> bool:
    """Whether `request` is itself a copy this proxy (or another) sent."""
    return any(name.lower() == _MARK for name, _ in request.forward)

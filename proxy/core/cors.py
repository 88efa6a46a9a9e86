"""CORS as ingress-nginx's `enable-cors` does it: which origins match, which headers an answer
gets, and the preflight the proxy answers itself (docs/behaviour.md, "CORS").

Pure: the data plane asks `lines` once per request of a route with CORS, and sends them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

# The response headers CORS sets; an upstream's own of these names are replaced, as
# headers-more's `more_set_headers` replaces them in ingress-nginx (lower case, for comparing)
CORS_HEADERS = frozenset(
    {
        b"access-control-allow-origin",
        b"access-control-allow-credentials",
        b"access-control-allow-methods",
        b"access-control-allow-headers",
        b"access-control-expose-headers",
        b"access-control-max-age",
    }
)


@dataclass(frozen=True, slots=True)
class CorsPolicy:
    """One Ingress's CORS settings. `origins` is None for `*` (every request, with or without
    an Origin header, is answered `Access-Control-Allow-Origin: *`); else the allowed origins
    as written (`https://*.example.com` allows one label in place of the `*`)."""

    origins: tuple[str, ...] | None = None
    methods: str = "GET, PUT, POST, DELETE, PATCH, OPTIONS"
    headers: str = (
        "DNT,Keep-Alive,User-Agent,X-Requested-With,If-Modified-Since,Cache-Control,"
        "Content-Type,Range,Authorization"
    )
    credentials: bool = True
    expose: str = ""  # empty: no Access-Control-Expose-Headers
    max_age: int = 1728000
    # Computed once per snapshot: the origin pattern, and every header line but the origin's
    _pattern: re.Pattern[bytes] | None = field(init=False, repr=False, compare=False)
    _rest: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        pattern = None
        if self.origins is not None:
            # ingress-nginx's `$http_origin ~* (...)$`: case-insensitive, any origin of the
            # list. Anchored at both ends here (docs/ingress-nginx-compat.md, "CORS").
            alternatives = [
                re.escape(origin).replace(r"\*", "[A-Za-z0-9-]+", 1) for origin in self.origins
            ]
            text = "|".join(alternatives) if alternatives else "(?!)"
            pattern = re.compile(text.encode("latin-1"), re.IGNORECASE)
        object.__setattr__(self, "_pattern", pattern)
        rest = b""
        if self.credentials:
            rest += b"Access-Control-Allow-Credentials: true\r\n"
        rest += b"Access-Control-Allow-Methods: %s\r\n" % self.methods.encode("latin-1")
        rest += b"Access-Control-Allow-Headers: %s\r\n" % self.headers.encode("latin-1")
        if self.expose:
            rest += b"Access-Control-Expose-Headers: %s\r\n" % self.expose.encode("latin-1")
        rest += b"Access-Control-Max-Age: %d\r\n" % self.max_age
        object.__setattr__(self, "_rest", rest)

    def lines(self, origin: bytes | None) -> bytes:
        """The CORS header lines of an answer to a request with this Origin header (None: it
        had none); b"" when the origin is not allowed, and the answer gets none."""
        pattern = self._pattern
        if pattern is None:
            return b"Access-Control-Allow-Origin: *\r\n" + self._rest
        if origin is None or pattern.fullmatch(origin) is None:
            return b""
        return b"Access-Control-Allow-Origin: %s\r\n%s" % (origin, self._rest)


def request_origin(headers: list[tuple[bytes, bytes]]) -> bytes | None:
    """The first Origin header's value, as nginx's `$http_origin`."""
    for name, value in headers:
        if len(name) == 6 and name.lower() == b"origin":
            return value
    return None


def preflight_response(close: bool) -> bytes:
    """ingress-nginx's answer to an OPTIONS request from an allowed origin: 204, to which the
    caller adds the CORS lines (`with_lines`). nginx.tmpl also sets Content-Type and
    Content-Length: 0, which nginx's header writer drops from every 204
    (docs/behaviour.md, "CORS")."""
    connection = b"close" if close else b"keep-alive"
    return b"HTTP/1.1 204 No Content\r\nConnection: %s\r\n\r\n" % connection


def with_lines(answer: bytes, lines: bytes) -> bytes:
    """A complete answer of the proxy's own with CORS header lines after its status line."""
    end = answer.index(b"\r\n") + 2
    return answer[:end] + lines + answer[end:]

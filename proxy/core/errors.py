"""The proxy's own failures and the one place they become HTTP statuses.

Which status answers what, and when: docs/behaviour.md, "Error statuses".
"""

from __future__ import annotations

from http import HTTPStatus
from typing import ClassVar


class ProxyError(Exception):
    """A failure the client is told about with `status` and a short plain-text body."""

    status: ClassVar[int] = 500


class BadRequest(ProxyError):
    status: ClassVar[int] = 400


class RequestTimeout(ProxyError):
    status: ClassVar[int] = 408


class BodyTooLarge(ProxyError):
    status: ClassVar[int] = 413


class HeadTooLarge(ProxyError):
    status: ClassVar[int] = 431


class UnknownTransferCoding(ProxyError):
    """A request body in a transfer coding other than chunked (RFC 9112 §6.1): 501, as nginx."""

    status: ClassVar[int] = 501


class VersionNotSupported(ProxyError):
    """A request line of another HTTP major version (HTTP/2.0 over HTTP/1 framing): 505."""

    status: ClassVar[int] = 505


class Forbidden(ProxyError):
    """The client's address is outside the route's allow list or inside its deny list: 403, as
    nginx's `deny` (docs/behaviour.md, "Access by client address")."""

    status: ClassVar[int] = 403


class NoRoute(ProxyError):
    status: ClassVar[int] = 404


class InvalidBackend(ProxyError):
    """A Gateway API route whose backend reference cannot be resolved: 500, as the
    specification requires for the requests that would have gone there."""


class NoEndpoint(ProxyError):
    status: ClassVar[int] = 503


class UpstreamError(ProxyError):
    """Connecting to or talking with an upstream failed; `reason` is a metrics label."""

    status: ClassVar[int] = 502

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(detail or reason)
        self.reason = reason


class UpstreamTimeout(UpstreamError):
    status: ClassVar[int] = 504

    def __init__(self, detail: str = "") -> None:
        super().__init__("timeout", detail)


# reasons of UpstreamError, fixed so metrics can start every series at zero
UPSTREAM_ERROR_REASONS = ("connect", "timeout", "reset", "protocol")


def _render(status: int, close: bool) -> bytes:
    phrase = HTTPStatus(status).phrase
    body = f"{status} {phrase}\n".encode()
    connection = b"close" if close else b"keep-alive"
    return (
        b"HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\n"
        b"Content-Length: %d\r\nConnection: %s\r\n\r\n%s"
        % (status, phrase.encode(), len(body), connection, body)
    )


_RESPONSES = {
    (status, close): _render(status, close)
    for status in (400, 403, 404, 408, 413, 431, 500, 501, 502, 503, 504, 505)
    for close in (False, True)
}


def redirect_response(location: bytes, close: bool, status: int = 308) -> bytes:
    """A redirect: 308 Permanent Redirect by default, as ingress-nginx's ssl-redirect answers
    (method and body kept)."""
    phrase = HTTPStatus(status).phrase.encode()
    body = b"%d %s\n" % (status, phrase)
    connection = b"close" if close else b"keep-alive"
    return (
        b"HTTP/1.1 %d %s\r\nLocation: %s\r\nContent-Type: text/plain; "
        b"charset=utf-8\r\nContent-Length: %d\r\nConnection: %s\r\n\r\n%s"
        % (status, phrase, location, len(body), connection, body)
    )


def error_response(status: int, close: bool) -> bytes:
    """A complete short plain-text response; rendered once per status at import."""
    return _RESPONSES.get((status, close)) or _render(status, close)

"""Basic authentication as ingress-nginx's `auth-type: basic` configures nginx's auth_basic
(docs/behaviour.md, "Basic authentication"): the users of one Ingress, how a request's
Authorization header is read, and the 401 answer that asks for credentials.

Pure: the data plane checks passwords with `proxy.core.htpasswd` and caches what it verified.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass, field
from typing import Final

from proxy.core.cors import with_lines
from proxy.core.errors import error_response
from proxy.core.headers import Headers, Request

_BASE64: Final = re.compile(rb"[A-Za-z0-9+/]*")


@dataclass(frozen=True, slots=True)
class BasicAuth:
    """One Ingress's users (from its auth-secret) and realm (auth-realm)."""

    realm: str
    users: tuple[tuple[bytes, bytes], ...]  # (user, stored hash), the file's first line of each
    source: str = ""  # "Secret namespace/name", for `sticky-proxy routes`
    # the 401 answers, for a connection kept open and one that closes, and their challenge line
    _answers: tuple[bytes, bytes] = field(init=False, repr=False, compare=False)
    challenge: bytes = field(init=False, repr=False, compare=False)
    _hashes: dict[bytes, bytes] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # as nginx writes it: the realm between quotes, unescaped (auth-realm allows no quote)
        line = b'WWW-Authenticate: Basic realm="%s"\r\n' % self.realm.encode("latin-1")
        answers = (with_lines(error_response(401, False), line),
                   with_lines(error_response(401, True), line))  # fmt: skip
        object.__setattr__(self, "_answers", answers)
        object.__setattr__(self, "challenge", line)
        object.__setattr__(self, "_hashes", dict(self.users))

    def answer(self, close: bool) -> bytes:
        """401 with the challenge; the body like the proxy's other answers of its own."""
        return self._answers[close]

    def stored(self, user: bytes) -> bytes | None:
        return self._hashes.get(user)


def authorization(headers: Headers) -> tuple[bytes | None, int]:
    """The Authorization header's value (None without one) and how many there are."""
    values = [value for name, value in headers if name.lower() == b"authorization"]
    return (values[0] if values else None), len(values)


def credentials(value: bytes) -> tuple[bytes, bytes] | None:
    """(user, password) of a `Basic` Authorization value, as nginx reads it: the scheme in any
    case, spaces after it, base64 up to the first `=` (padding optional), then a user of at least
    one byte before the first colon; None when any of that is missing or malformed."""
    if len(value) < 6 or value[:6].lower() != b"basic ":
        return None
    encoded = value[6:].lstrip(b" ").partition(b"=")[0]
    if not encoded or len(encoded) % 4 == 1 or not _BASE64.fullmatch(encoded):
        return None
    try:
        decoded = base64.b64decode(encoded + b"=" * (-len(encoded) % 4))
    except binascii.Error:
        return None
    user, colon, password = decoded.partition(b":")
    if not user or not colon:
        return None
    return user, password


def without_authorization(request: Request) -> Request:
    """The request as the upstream is to see it: without Authorization, as ingress-nginx's
    `proxy_set_header Authorization ""` on a location with basic authentication. A copy."""
    forward = [(name, value) for name, value in request.forward
               if name.lower() != b"authorization"]  # fmt: skip
    return request.edited(forward)

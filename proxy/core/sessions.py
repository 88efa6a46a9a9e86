"""Gateway API session persistence (GEP-1619), as pure code: which backend and endpoint a session
token names, and the token for a new session (docs/gateway-api.md, "Session persistence").

A token names an endpoint without its address: md5 hex of the backend's cluster name and the
endpoint's node text, as the persistent Ingress mode does, so every replica computes the same
one. When the proxy itself must enforce `absoluteTimeout` (a Session cookie, or a header), the
token also carries its issue time and an HMAC-SHA256 over both, with a key all replicas share:
`<endpoint key>.<issued, hex seconds>.<mac>`. A token that is unknown, expired or forged names
nothing, and the request starts a new session.
"""

from __future__ import annotations

import hashlib
import hmac
from base64 import urlsafe_b64encode
from dataclasses import dataclass, field
from enum import StrEnum

from proxy.core.cookies import CookieSettings, SetCookieFormatter
from proxy.core.model import Endpoint

MAC_BYTES = 16  # 128 bits of HMAC-SHA256: forging one is as hard as guessing the key


class SessionKind(StrEnum):
    COOKIE = "Cookie"
    HEADER = "Header"


@dataclass(frozen=True, slots=True)
class SessionPolicy:
    """One rule's sessionPersistence, with the backends its sessions may be pinned to: every
    backendRef of the rule, weight 0 included (an established session keeps its endpoint)."""

    name: str  # the cookie's or the header's name
    kind: SessionKind
    permanent: bool  # a cookie with Max-Age/Expires of `absolute_timeout`
    absolute_timeout: int  # seconds; 0: none
    cookie_path: str
    key: bytes = field(repr=False, compare=False)
    # (cluster name, endpoints) of each backendRef, in the order of the route's split
    backends: tuple[tuple[str, tuple[Endpoint, ...]], ...] = ()
    _by_key: dict[str, tuple[int, Endpoint]] = field(init=False, repr=False, compare=False)
    _set_cookie: SetCookieFormatter | None = field(init=False, repr=False, compare=False)
    header_key: bytes = field(init=False, repr=False, compare=False)  # the name, lower case

    def __post_init__(self) -> None:
        by_key = {
            endpoint_key(name, endpoint): (index, endpoint)
            for index, (name, endpoints) in enumerate(self.backends)
            for endpoint in endpoints
        }
        object.__setattr__(self, "_by_key", by_key)
        formatter = None
        if self.kind is SessionKind.COOKIE:
            lifetime = self.absolute_timeout if self.permanent else None
            settings = CookieSettings(name=self.name, max_age=lifetime, expires=lifetime)
            formatter = SetCookieFormatter(settings, self.cookie_path)
        object.__setattr__(self, "_set_cookie", formatter)
        object.__setattr__(self, "header_key", self.name.lower().encode("latin-1"))

    @property
    def signed(self) -> bool:
        """Whether the proxy enforces the lifetime itself (no cookie expiry does it)."""
        return self.absolute_timeout > 0 and not self.permanent

    def resolve(self, token: str, now: float) -> tuple[int, Endpoint] | None:
        """(backend index, endpoint) the token names, or None: unknown, expired or forged."""
        if self.signed:
            key, _, rest = token.partition(".")
            issued_text, _, mac = rest.partition(".")
            try:
                issued = int(issued_text, 16)
            except ValueError:
                return None
            if not 0 <= now - issued < self.absolute_timeout:
                return None
            if not hmac.compare_digest(mac, self._mac(key, issued_text)):
                return None
            token = key
        return self._by_key.get(token)

    def token(self, cluster_name: str, endpoint: Endpoint, now: float) -> str:
        """The token of a new session on `endpoint` of the backend `cluster_name`."""
        key = endpoint_key(cluster_name, endpoint)
        if not self.signed:
            return key
        issued = f"{int(now):x}"
        return f"{key}.{issued}.{self._mac(key, issued)}"

    def set_cookie(self, token: str, now: float, tls: bool) -> str | None:
        """The Set-Cookie value for a new session's token (None for header sessions)."""
        if self._set_cookie is None:
            return None
        return self._set_cookie.format(token, now, tls, None)

    def _mac(self, key: str, issued: str) -> str:
        digest = hmac.new(self.key, f"{key}.{issued}".encode(), hashlib.sha256).digest()
        return urlsafe_b64encode(digest[:MAC_BYTES]).decode().rstrip("=")


def endpoint_key(cluster_name: str, endpoint: Endpoint) -> str:
    return hashlib.md5((cluster_name + endpoint.node).encode()).hexdigest()


def generated_name(namespace: str, route: str, rule: int | str) -> str:
    """The session name of a rule without `sessionName`: the same on every replica, different
    for every rule."""
    digest = hashlib.sha256(f"{namespace}/{route}/{rule}".encode()).hexdigest()
    return f"sp-{digest[:16]}"

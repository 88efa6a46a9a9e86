"""The backend-protocol and proxy-ssl-* annotation values as ingress-nginx validates them
(annotations backendprotocol and proxyssl). Pure: no I/O, no logging."""

from __future__ import annotations

import re
from dataclasses import dataclass

# ingress-nginx's backend-protocol options, any case; only these two are spoken here.
SPOKEN_PROTOCOLS = frozenset({"HTTP", "HTTPS"})
_PROTOCOLS = frozenset({"AUTO_HTTP", "HTTP", "HTTPS", "GRPC", "GRPCS", "FCGI"})
_ON_OFF = {"on": True, "off": False}
_TLS_VERSIONS = frozenset({"TLSv1.2", "TLSv1.3"})
_CIPHERS = re.compile(r"[A-Za-z0-9+:_\-!]*")  # ingress-nginx's proxySSLCiphersRegex
_SECRET_CHARS = re.compile(r"[-._~a-zA-Z0-9/:]+")  # its BasicCharsRegex
_DEFAULT_PROTOCOLS = ("TLSv1.2",)  # ingress-nginx's proxy_ssl_protocols once a Secret is given


@dataclass(frozen=True, slots=True)
class ProxySsl:
    """What one Ingress's proxy-ssl-* annotations say; only read with a proxy-ssl-secret."""

    secret: str  # as written; "namespace/name" is checked when it is looked up
    verify: bool = False
    name: str | None = None  # None: nginx's $proxy_host, "upstream_balancer" in ingress-nginx
    sni: bool = False
    protocols: tuple[str, ...] = _DEFAULT_PROTOCOLS
    ciphers: str = "DEFAULT"


@dataclass(frozen=True, slots=True)
class SecretData:
    """The keys of any Secret that proxy-ssl-secret may name (PEM bytes; None when absent)."""

    ca: bytes | None
    chain: bytes | None
    key: bytes | None


def parse_backend_protocol(text: str) -> str:
    protocol = text.upper()
    if protocol not in _PROTOCOLS:
        raise ValueError(f"{text!r} is not one of {', '.join(sorted(_PROTOCOLS))}")
    return protocol


def parse_on_off(text: str) -> bool:
    value = _ON_OFF.get(text)
    if value is None:
        raise ValueError(f"{text!r} is not on or off")
    return value


def parse_secret(text: str) -> str:
    if not _SECRET_CHARS.fullmatch(text):
        raise ValueError(f"{text!r} is not namespace/name")
    return text


def parse_protocols(text: str) -> tuple[str, ...]:
    """Space-separated TLSv1.2 and TLSv1.3, sorted; nothing left means TLSv1.2, as there."""
    words = text.split(" ")
    if any(word not in _TLS_VERSIONS for word in words if word):
        raise ValueError(f"{text!r} is not a list of TLSv1.2 and TLSv1.3")
    return tuple(sorted({word for word in words if word})) or _DEFAULT_PROTOCOLS


def parse_ciphers(text: str) -> str:
    if not _CIPHERS.fullmatch(text):
        raise ValueError(f"{text!r} is not an OpenSSL cipher list")
    return text

"""Parsers for command-line values: text in, value out, or ValueError saying what was expected.

Pure and argparse-free, so they are unit-tested as tables; the CLI prefixes each message with the
flag's name. Syntax follows the nginx directives and ingress-nginx annotations the flags mirror.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

NEXT_UPSTREAM_CONDITIONS = frozenset(
    {
        "error",
        "timeout",
        "invalid_header",
        "http_500",
        "http_502",
        "http_503",
        "http_504",
        "http_403",
        "http_404",
        "http_429",
        "non_idempotent",
    }
)


@dataclass(frozen=True, slots=True)
class Address:
    """A host (an IP literal for listeners) and a port."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


_HOST_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
_HOST_NAME = re.compile(rf"{_HOST_LABEL}(?:\.{_HOST_LABEL})*\.?")
_COOKIE_DOMAIN = re.compile(rf"\.?{_HOST_LABEL}(?:\.{_HOST_LABEL})*")
# Kubernetes object names (IngressClass): an RFC 1123 subdomain, lower case, at most 253 characters.
_DNS_LABEL = r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?"
_OBJECT_NAME = re.compile(rf"{_DNS_LABEL}(?:\.{_DNS_LABEL})*")
_SIZE = re.compile(r"([0-9]+)([kmg]?)", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}
_SECONDS = re.compile(r"[0-9]+(?:\.[0-9]+)?")
_DIGITS = re.compile(r"[0-9]+")
# RFC 6265 cookie-name: an RFC 9110 token.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# Anything that would end the Path attribute early or smuggle in another one.
_PATH_FORBIDDEN = re.compile(r"[\x00-\x20;,\x7f]")


def parse_host_port(text: str) -> Address:
    """`HOST:PORT` or `[IPv6]:PORT`; port 0 lets the kernel pick a free one."""
    host, colon, port = text.rpartition(":")
    if not colon or not host or "/" in text:  # "/": a URL, as in --listen http://0.0.0.0:8080
        raise ValueError(f"{text!r} is not HOST:PORT (examples: 0.0.0.0:8080, [::1]:8080)")
    return Address(parse_host(host), parse_port(port, allow_zero=True))


def parse_host(text: str) -> str:
    """A host name, an IPv4 address or a bracketed IPv6 address; returned without brackets."""
    if text.startswith("[") and text.endswith("]"):
        address = text[1:-1]
        try:
            ipaddress.IPv6Address(address)
        except ValueError:
            raise ValueError(f"{text!r} is not an IPv6 address") from None
        return address
    if ":" in text:
        raise ValueError(f"{text!r}: an IPv6 address needs brackets, as in [::1]:8080")
    if not _HOST_NAME.fullmatch(text):
        raise ValueError(f"{text!r} is not a host name or IP address")
    if all(label.isdigit() for label in text.rstrip(".").split(".")):
        try:
            ipaddress.IPv4Address(text)
        except ValueError:
            raise ValueError(f"{text!r} is not an IPv4 address") from None
    return text


def parse_port(text: str, *, allow_zero: bool) -> int:
    lowest = 0 if allow_zero else 1
    if not _DIGITS.fullmatch(text) or not lowest <= int(text) <= 65535:
        raise ValueError(f"{text!r} is not a port ({lowest}-65535)")
    return int(text)


def parse_size(text: str) -> int:
    """nginx size syntax: bytes, or a k/m/g suffix (either case). 0 means unlimited."""
    match = _SIZE.fullmatch(text)
    if match is None:
        raise ValueError(f"{text!r} is not a size (examples: 1024, 8k, 1m; 0 = unlimited)")
    number, unit = match.groups()
    return int(number) * _SIZE_UNITS[unit.lower()]


def format_size(size: int) -> str:
    """`size` as parse_size reads it, in the largest unit that divides it: 1048576 is "1m"."""
    for unit in ("g", "m", "k"):
        if size and size % _SIZE_UNITS[unit] == 0:
            return f"{size // _SIZE_UNITS[unit]}{unit}"
    return str(size)


def parse_seconds(text: str) -> float:
    """A non-negative number of seconds, as the ingress-nginx timeout annotations take them."""
    if not _SECONDS.fullmatch(text):
        raise ValueError(f"{text!r} is not a number of seconds (examples: 5, 0.5)")
    return float(text)


def format_seconds(seconds: float) -> str:
    """`seconds` as parse_seconds reads it: 60.0 is "60", 0.5 is "0.5"."""
    return f"{seconds:g}"


def parse_timeout(text: str) -> float:
    """Seconds, more than zero: a zero timeout would fail every request."""
    seconds = parse_seconds(text)
    if seconds == 0:
        raise ValueError(f"{text!r}: a timeout must be more than 0 seconds")
    return seconds


def parse_count(text: str) -> int:
    """A non-negative integer."""
    if not _DIGITS.fullmatch(text):
        raise ValueError(f"{text!r} is not a whole number (0 or more)")
    return int(text)


def parse_positive(text: str) -> int:
    if not _DIGITS.fullmatch(text) or int(text) == 0:
        raise ValueError(f"{text!r} is not a whole number above 0")
    return int(text)


def parse_workers(text: str, cpu_count: int) -> int:
    """A worker count, or `auto` for one per CPU (`cpu_count`)."""
    if text == "auto":
        return cpu_count
    if not _DIGITS.fullmatch(text) or int(text) == 0:
        raise ValueError(f"{text!r} is not a worker count (a number above 0, or auto)")
    return int(text)


def parse_bool(text: str) -> bool:
    lowered = text.lower()
    if lowered not in ("true", "false"):
        raise ValueError(f"{text!r} is not a boolean (true or false)")
    return lowered == "true"


def format_bool(value: bool) -> str:
    return "true" if value else "false"


def format_next_upstream(conditions: frozenset[str]) -> str:
    """`conditions` as parse_next_upstream reads them, sorted; "off" for none."""
    return " ".join(sorted(conditions)) or "off"


def parse_next_upstream(text: str) -> frozenset[str]:
    """proxy_next_upstream conditions, space separated; `off` alone means never retry (empty set).

    nginx lets `off` win over conditions listed with it; here that mix is refused as a likely typo.
    """
    tokens = text.split()
    if tokens == ["off"]:
        return frozenset()
    if not tokens:
        raise ValueError("no conditions given (example: 'error timeout', or 'off')")
    if "off" in tokens:
        raise ValueError(f"{text!r}: 'off' cannot be combined with other conditions")
    unknown = [token for token in tokens if token not in NEXT_UPSTREAM_CONDITIONS]
    if unknown:
        known = ", ".join(sorted(NEXT_UPSTREAM_CONDITIONS))
        raise ValueError(f"unknown condition {unknown[0]!r} (known: {known}, off)")
    return frozenset(tokens)


def parse_cookie_name(text: str) -> str:
    if not _TOKEN.fullmatch(text):
        raise ValueError(f"{text!r} is not a cookie name (letters, digits and !#$%&'*+-.^_`|~)")
    return text


def parse_cookie_path(text: str) -> str:
    if not text.startswith("/") or _PATH_FORBIDDEN.search(text):
        raise ValueError(
            f"{text!r} is not a cookie path (starts with /, no spaces, ';', ',' or controls)"
        )
    return text


def parse_cookie_domain(text: str) -> str:
    if not _COOKIE_DOMAIN.fullmatch(text):
        raise ValueError(f"{text!r} is not a cookie domain (example: .example.com)")
    return text


def parse_namespace(text: str) -> str:
    """A Kubernetes namespace name: an RFC 1123 label, lower case, at most 63 characters."""
    if len(text) > 63 or not re.fullmatch(_DNS_LABEL, text):
        raise ValueError(f"{text!r} is not a namespace (lower-case letters, digits and '-')")
    return text


def parse_namespaced_name(text: str) -> tuple[str, str]:
    """`NAMESPACE/NAME`, as kubectl and ingress-nginx's --publish-service write it."""
    namespace, slash, name = text.partition("/")
    if not slash:
        raise ValueError(f"{text!r} is not NAMESPACE/NAME")
    return parse_namespace(namespace), parse_object_name(name)


def parse_object_name(text: str) -> str:
    """A Kubernetes object name such as an IngressClass's: what `metadata.name` accepts."""
    if len(text) > 253 or not _OBJECT_NAME.fullmatch(text):
        raise ValueError(
            f"{text!r} is not a Kubernetes name (lower-case letters, digits, '-' and '.')"
        )
    return text

"""The `cors-*` annotation values, validated as ingress-nginx's cors parser does
(internal/ingress/annotations/cors/main.go): a value it refuses raises ValueError, and the caller
warns and takes ingress-nginx's default. Pure."""

from __future__ import annotations

import re

# ingress-nginx's whole-value check of cors-allow-origin (spaces removed first), then the one
# each listed origin must pass or be skipped
_ORIGINS = re.compile(r"((((([a-z]+://)?(\*\.)?[A-Za-z0-9\-.]*(:[0-9]+)?,?)|null)+)|\*)?")
_ORIGIN = re.compile(r"([a-z]+://(\*\.)?[A-Za-z0-9\-.]*(:[0-9]+)?|\*|null)?")
# Go's \s is [\t\n\f\r ]; ingress-nginx then refuses \r and \n (MaliciousRegex), and \f is
# refused here too: none of them may stand in a header value
_METHODS = re.compile(r"([A-Za-z]+,?[\t ]?)+")
_HEADERS = re.compile(r"[A-Za-z0-9\-_, ]*")
_EXPOSE = re.compile(r"(([A-Za-z0-9\-_]+|\*),?[\t ]?)+")
_GO_INT = re.compile(r"[+-]?[0-9]+")  # strconv.Atoi


def parse_origins(text: str, skipped: list[str]) -> tuple[str, ...] | None:
    """cors-allow-origin: None for `*`, else the origins; an origin ingress-nginx skips is
    named in `skipped`. A list with `*` among valid origins is `*`, as there."""
    if not _ORIGINS.fullmatch(text.replace(" ", "")):
        raise ValueError(f"{text!r} is not a list of scheme://host[:port] origins, null or *")
    origins: list[str] = []
    for item in text.split(","):
        origin = item.strip()
        if not origin:
            continue
        if origin == "*":
            return None
        if not _ORIGIN.fullmatch(origin):
            skipped.append(origin)
            continue
        origins.append(origin)
    return tuple(origins)


def parse_methods(text: str) -> str:
    if not _METHODS.fullmatch(text.replace(" ", "")) or not _METHODS.fullmatch(text):
        raise ValueError(f"{text!r} is not a list of method names")
    return text


def parse_headers(text: str) -> str:
    if not _HEADERS.fullmatch(text):
        raise ValueError(f"{text!r} is not a list of header names")
    return text


def parse_expose(text: str) -> str:
    if not _EXPOSE.fullmatch(text.replace(" ", "")) or not _EXPOSE.fullmatch(text):
        raise ValueError(f"{text!r} is not a list of header names or *")
    return text


def parse_max_age(text: str) -> int:
    if not _GO_INT.fullmatch(text) or not -(2**63) <= int(text) < 2**63:
        raise ValueError(f"{text!r} is not a whole number of seconds")  # as Go's int64 holds
    return int(text)

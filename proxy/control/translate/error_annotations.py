"""The values of custom-http-errors and default-backend, validated as ingress-nginx's parsers do
(annotations customhttperrors and defaultbackend; docs/behaviour.md, "Custom error pages")."""

from __future__ import annotations

import re

_CODE = re.compile(r"[45][0-9][0-9]")
# Kubernetes' DNS-1035 label, which ingress-nginx's ValidateServiceName asks of a Service name
_SERVICE_NAME = re.compile(r"[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?")


def parse_codes(text: str) -> frozenset[int]:
    """custom-http-errors: comma-separated codes from 400 to 599; spaces and empty items pass,
    as in ingress-nginx."""
    codes = set()
    for item in text.replace(" ", "").split(","):
        if not item:
            continue
        if not _CODE.fullmatch(item):
            raise ValueError(f"{item!r} is not an HTTP status code from 400 to 599")
        codes.add(int(item))
    if not codes:
        raise ValueError(f"{text!r} lists no status code")
    return frozenset(codes)


def parse_service_name(text: str) -> str:
    """default-backend: the name of a Service in the Ingress's namespace."""
    if not _SERVICE_NAME.fullmatch(text):
        raise ValueError(f"{text!r} is not a Service name (a DNS-1035 label)")
    return text

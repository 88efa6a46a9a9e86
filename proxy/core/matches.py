"""What a Gateway API route matches besides host and path: the method, headers and query
parameters of an HTTPRouteMatch (docs/gateway-api.md, "Matching").

Ingress routes have none of these, so the data plane evaluates them only for the routes that
carry them: a `RequestMatch` is None on every Ingress route.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import parse_qsl

from proxy.core.headers import Request


@dataclass(frozen=True, slots=True)
class ValueMatch:
    """One header or query parameter condition: the name and an exact value or a pattern."""

    name: str  # headers: lower case (header names are case-insensitive); query: as written
    value: str
    regex: bool = False  # RegularExpression: the whole value must match
    pattern: re.Pattern[str] | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "pattern", re.compile(self.value) if self.regex else None)

    def accepts(self, found: str | None) -> bool:
        if found is None:
            return False
        if self.pattern is not None:
            return self.pattern.fullmatch(found) is not None
        return found == self.value


@dataclass(frozen=True, slots=True)
class RequestMatch:
    """The conditions of one HTTPRouteMatch beyond its path; all of them must hold."""

    method: str | None = None
    headers: tuple[ValueMatch, ...] = ()
    query: tuple[ValueMatch, ...] = ()

    def accepts(self, request: Request) -> bool:
        if self.method is not None and request.method.decode("latin-1") != self.method:
            return False
        if self.headers:
            values = _header_values(request)
            if not all(match.accepts(values.get(match.name)) for match in self.headers):
                return False
        if self.query:
            params = _query_params(request.target)
            if not all(match.accepts(params.get(match.name)) for match in self.query):
                return False
        return True

    @property
    def precedence(self) -> tuple[int, int, int]:
        """Gateway API's order after the path: a method match, then more header matches, then
        more query parameter matches, win (negated, for an ascending sort)."""
        return (0 if self.method is not None else 1, -len(self.headers), -len(self.query))


NO_CONDITIONS = (1, 0, 0)  # the precedence of a route without a RequestMatch


def _header_values(request: Request) -> dict[str, str]:
    """Each header's value by lower-case name; repeated headers joined with ", " as one list
    (RFC 9110 §5.3), which is how a match on a repeated header sees them."""
    values: dict[str, str] = {}
    for raw_name, raw_value in request.forward:
        name = raw_name.decode("latin-1").lower()
        value = raw_value.decode("latin-1")
        values[name] = f"{values[name]}, {value}" if name in values else value
    if request.host_header and "host" not in values:
        values["host"] = request.host_header.decode("latin-1")
    return values


def _query_params(target: bytes) -> dict[str, str]:
    """The first value of each query parameter, percent-decoded; names are case-sensitive."""
    query = target.partition(b"?")[2].partition(b"#")[0].decode("latin-1")
    params: dict[str, str] = {}
    for name, value in parse_qsl(query, keep_blank_values=True):
        params.setdefault(name, value)
    return params

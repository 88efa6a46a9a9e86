"""The key of `upstream-hash-by`: nginx variables and text, compiled once, evaluated per request.

docs/ingress-nginx-compat.md, "Hash-by keys". ingress-nginx splits the annotation into `$name`,
`${name}`, a lone `$` and runs of other text (util.lua parse_complex_value), and per request joins
the texts with the variables' values, a variable nginx has no value for adding nothing. Here the
split happens at translation time; a request then costs one small function per variable.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable

from proxy.core.headers import Request
from proxy.core.uri import uri_path

# A part of the key: what it adds for a request and the client address (the downstream peer).
Part = Callable[[Request, bytes], str]

# util.lua's pattern, less its `\$name` alternative: the annotation's own check admits no `\`.
_TOKENS = re.compile(r"\$\{([0-9a-zA-Z_]+)\}|\$([0-9a-zA-Z_]+)|(\$|[^$\\]+)")


class HashKey:
    """A compiled `upstream-hash-by` value. `unknown` names the variables read as empty here."""

    __slots__ = ("_parts", "text", "unknown")

    def __init__(self, text: str) -> None:
        self.text = text
        parts: list[Part] = []
        unknown: list[str] = []
        for match in _TOKENS.finditer(text):
            literal = match[3]
            if literal is not None:
                parts.append(_literal(literal))
                continue
            name = (match[1] or match[2]).lower()  # nginx looks variables up lower-cased
            part = _variable(name)
            if part is None:
                unknown.append(name)
            else:
                parts.append(part)
        self._parts = tuple(parts)
        self.unknown = tuple(unknown)

    def evaluate(self, request: Request, client: bytes) -> str:
        """The key of one request from `client` (its address, as nginx's $remote_addr)."""
        parts = self._parts
        if len(parts) == 1:
            return parts[0](request, client)
        return "".join(part(request, client) for part in parts)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, HashKey) and other.text == self.text

    def __hash__(self) -> int:
        return hash(self.text)

    def __repr__(self) -> str:
        return f"HashKey({self.text!r})"


def _literal(text: str) -> Part:
    return lambda _request, _client: text


def _variable(name: str) -> Part | None:
    """How the variable `name` (lower case, no `$`) reads a request; None: not one known here."""
    simple = _SIMPLE.get(name)
    if simple is not None:
        return simple
    prefix, _, rest = name.partition("_")
    if not rest:
        return None
    if prefix == "http":
        return _header(rest)
    if prefix == "cookie":
        return lambda request, _client: _cookie(request, rest)
    if prefix == "arg":
        return lambda request, _client: _argument(request.target, rest)
    return None


def _latin1(data: bytes) -> str:
    return data.decode("latin-1")


def _query(target: bytes) -> str:
    _, mark, query = target.partition(b"?")
    return _latin1(query) if mark else ""


def _header(name: str) -> Part:
    """$http_NAME: every request line whose lower-cased name, `-` read as `_`, is NAME, joined
    with ", " as nginx 1.23 and later join repeated lines."""
    wire = name.replace("_", "-").encode()
    if wire == b"x-forwarded-for":  # noted apart from the forwarded headers
        return lambda request, _client: _latin1(request.forwarded_for or b"")
    if wire == b"x-request-id":
        return lambda request, _client: _latin1(request.request_id or b"")
    if wire == b"cookie":  # nginx joins Cookie lines with "; ", as the request already has them
        return lambda request, _client: request.cookie or ""

    def read(request: Request, _client: bytes) -> str:
        values = [
            value for key, value in request.forward if key.lower().replace(b"_", b"-") == wire
        ]
        return _latin1(b", ".join(values))

    return read


def _cookie(request: Request, name: str) -> str:
    """$cookie_NAME: the first cookie so named (any case), its value as sent."""
    header = request.cookie
    if not header:
        return ""
    for piece in header.split(";"):
        key, mark, value = piece.strip(" \t").partition("=")
        if mark and key.lower() == name:
            return value
    return ""


def _argument(target: bytes, name: str) -> str:
    """$arg_NAME: the first query argument so named (any case), its value not decoded."""
    query = _query(target)
    for pair in query.split("&"):
        key, mark, value = pair.partition("=")
        if mark and key.lower() == name:
            return value
    return ""


def _remote_user(request: Request) -> str:
    """$remote_user: the user name of a Basic Authorization header (nginx reads it whether or
    not the location checks it)."""
    for key, value in request.forward:
        if key.lower() == b"authorization":
            scheme, _, credentials = value.strip().partition(b" ")
            if scheme.lower() != b"basic":
                return ""
            try:
                decoded = base64.b64decode(credentials.strip(), validate=True)
            except binascii.Error:
                return ""
            user, colon, _ = decoded.partition(b":")
            return _latin1(user) if colon else ""  # (nginx reads none without the colon)
    return ""


_SIMPLE: dict[str, Part] = {
    "remote_addr": lambda _request, client: _latin1(client),
    "request_uri": lambda request, _client: _latin1(request.target),
    "uri": lambda request, _client: uri_path(request.target),
    "document_uri": lambda request, _client: uri_path(request.target),
    "host": lambda request, _client: request.host,
    "args": lambda request, _client: _query(request.target),
    "query_string": lambda request, _client: _query(request.target),
    "request_method": lambda request, _client: _latin1(request.method),
    "remote_user": lambda request, _client: _remote_user(request),
}

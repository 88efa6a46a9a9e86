"""HTTP/1.1 head rewriting for a reverse proxy: pure functions over bytes.

The data plane hands over the header list exactly as the parser produced it; this module decides
what is forwarded (RFC 9110 §7.6.1: hop-by-hop headers and the names `Connection` lists are
dropped), adds the X-Forwarded-* family, and re-frames bodies itself so that what reaches an
upstream never depends on how the client framed it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Final

from proxy.core.errors import BadRequest, UnknownTransferCoding, VersionNotSupported

HOP_BY_HOP: Final = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    }
)
# Set by the proxy itself; an incoming copy must not reach the upstream beside ours.
_REPLACED: Final = frozenset(
    {
        b"content-length",
        b"x-forwarded-for",
        b"x-forwarded-host",
        b"x-forwarded-port",
        b"x-forwarded-proto",
        b"x-real-ip",
        b"x-request-id",
    }
)
_DROP_REQUEST: Final = HOP_BY_HOP | _REPLACED
# The request headers whose value the proxy decides, whatever a client or auth service says
SET_BY_PROXY: Final = _DROP_REQUEST | {b"host"}
_DROP_RESPONSE: Final = HOP_BY_HOP | {b"content-length"}

Headers = list[tuple[bytes, bytes]]


class Request:
    """What the proxy needs to know about one downstream request head.

    A plain class rather than a dataclass: mypyc compiles this __init__, while a dataclass keeps
    its generated one interpreted, and one is built for every request."""

    __slots__ = (
        "chunked", "content_length", "cookie", "forward", "forwarded_for", "host", "host_header",
        "http11", "method", "request_id", "spliced", "target", "upgrade", "user_agent",
    )  # fmt: skip

    def __init__(
        self,
        *,
        method: bytes,
        target: bytes,
        http11: bool,
        forward: Headers,
        spliced: bytes | None,
        host: str,
        host_header: bytes,
        cookie: str | None,
        user_agent: str | None,
        forwarded_for: bytes | None,
        request_id: bytes | None,
        content_length: int | None,
        chunked: bool,
        upgrade: bytes | None,
    ) -> None:
        self.method = method
        self.target = target
        self.http11 = http11
        self.forward = forward  # end-to-end headers, in order, original spelling
        # The request line and the lines of `forward` as they arrived, when they can be sent on
        # as they are (`spliced_lines`); None has upstream_head write them from `forward`.
        self.spliced = spliced
        self.host = host  # lower case, without port; "" when the request has none
        self.host_header = host_header
        self.cookie = cookie
        self.user_agent = user_agent
        self.forwarded_for = forwarded_for
        self.request_id = request_id
        self.content_length = content_length
        self.chunked = chunked
        self.upgrade = upgrade

    @property
    def has_body(self) -> bool:
        return self.chunked or bool(self.content_length)

    def edited(
        self, forward: Headers, target: bytes | None = None, host_header: bytes | None = None
    ) -> Request:
        """A copy for the upstream with other headers (and target or Host header): written from
        `forward`, not spliced. The original stays what the client sent, for logs and metrics."""
        return Request(
            method=self.method, target=self.target if target is None else target,
            http11=self.http11, forward=forward, spliced=None, host=self.host,
            host_header=self.host_header if host_header is None else host_header,
            cookie=self.cookie, user_agent=self.user_agent, forwarded_for=self.forwarded_for,
            request_id=self.request_id, content_length=self.content_length,
            chunked=self.chunked, upgrade=self.upgrade,
        )  # fmt: skip


# What scan_request does with each header it must look at; every other header is forwarded as is.
# (one Final each: compiled, a Final int is a C constant, any other module global a dict lookup)
# forwarded and noted
_FORWARD_HOST: Final = 0
_FORWARD_COOKIE: Final = 1
_FORWARD_USER_AGENT: Final = 2
# noted, replaced by our framing
_CONNECTION: Final = 3
_CONTENT_LENGTH: Final = 4
_TRANSFER_ENCODING: Final = 5
# noted and replaced, or dropped
_FORWARDED_FOR: Final = 6
_REQUEST_ID: Final = 7
_UPGRADE: Final = 8
_DROP: Final = 9
_PLAIN: Final = 10  # forwarded, nothing to note
_REQUEST_HEADERS: Final = {
    b"host": _FORWARD_HOST,
    b"cookie": _FORWARD_COOKIE,
    b"user-agent": _FORWARD_USER_AGENT,
    b"connection": _CONNECTION,
    b"content-length": _CONTENT_LENGTH,
    b"transfer-encoding": _TRANSFER_ENCODING,
    b"x-forwarded-for": _FORWARDED_FOR,
    b"x-request-id": _REQUEST_ID,
    b"upgrade": _UPGRADE,
    **dict.fromkeys(_DROP_REQUEST - {b"connection", b"content-length", b"transfer-encoding",
                                     b"x-forwarded-for", b"x-request-id", b"upgrade"}, _DROP),
}  # fmt: skip
_COMMON_REQUEST: Final = frozenset({
    b"accept", b"accept-encoding", b"accept-language", b"authorization", b"cache-control",
    b"content-type", b"dnt", b"if-modified-since", b"if-none-match", b"origin", b"pragma",
    b"priority", b"referer", b"sec-ch-ua", b"sec-ch-ua-mobile", b"sec-ch-ua-platform",
    b"sec-fetch-dest", b"sec-fetch-mode", b"sec-fetch-site", b"sec-fetch-user",
    b"upgrade-insecure-requests", b"x-requested-with",
})  # fmt: skip


def _spellings(names: Iterable[bytes]) -> list[bytes]:
    """Each name as HTTP/2-style clients send it (lower case) and as browsers do (Title-Case)."""
    return [form for name in names for form in (name, _title(name))]


def _title(name: bytes) -> bytes:
    return b"-".join(part[:1].upper() + part[1:] for part in name.split(b"-"))


# Looked up by exact spelling first, so the usual spellings skip a .lower() per header.
_REQUEST_KINDS: Final = {
    **dict.fromkeys(_spellings(_COMMON_REQUEST), _PLAIN),
    **{form: kind for name, kind in _REQUEST_HEADERS.items() for form in _spellings([name])},
    b"TE": _DROP,  # not the Title-Case form
}
# Connection tokens that name nothing we forward anyway: no second pass over the headers.
_ALREADY_DROPPED: Final = HOP_BY_HOP | {b"close"}
# Connection values as they usually come, and their one token in lower case: no split needed.
_COMMON_CONNECTION: Final = {
    spelling: token for token in (b"keep-alive", b"close", b"upgrade")
    for spelling in (token, _title(token))
}  # fmt: skip


def _tokens(value: bytes) -> list[bytes]:
    """The comma-separated tokens of a header value, in lower case."""
    return [token.strip().lower() for token in value.split(b",")]


# Connection tokens that cannot make a header hop-by-hop: an HTTP/1.1 upstream needs the Host,
# and the framing headers are the proxy's own (RFC 9110 §7.6.1 lets no sender unframe a message).
_NEVER_HOP_BY_HOP: Final = _ALREADY_DROPPED | {b"host", b"content-length"}


def scan_request(  # noqa: PLR0917 - one hot call per request, positional
    method: bytes,
    target: bytes,
    http11: bool,
    raw: Headers,
    underscores: bool = False,
    received: bytes = b"",
) -> Request:
    """Classify the request headers once; raise BadRequest for an ambiguous or invalid head.

    Header names with an underscore are dropped unless `underscores` (nginx's
    `underscores_in_headers`, off in ingress-nginx): a backend that reads `Transfer_Encoding`
    or `X_Forwarded_For` as its dashed twin would see what the proxy never checked.
    `received` is the read this head came in, when the head starts it and is whole in it.
    """
    if not target.startswith(b"/") and not (target == b"*" and method == b"OPTIONS"):
        # absolute-form (or CONNECT's authority-form) would let the target and Host disagree
        raise BadRequest("request target must be a path")
    forward: Headers = []
    connection_tokens: list[bytes] = []
    host_header = b""
    hosts = 0
    cookies: list[bytes] = []
    user_agent = forwarded_for = request_id = upgrade = None
    content_length: int | None = None
    transfer_encoding: list[bytes] = []
    kinds = _REQUEST_KINDS
    for header in raw:
        kind = kinds.get(header[0])
        if kind is None:
            # (the names looked up first have no underscore: only unusual names pay for this;
            # find, as bytes `in` first tries an int and clears the TypeError, ~2,000 instructions)
            if header[0].find(b"_") >= 0 and not underscores:
                continue
            kind = kinds.get(header[0].lower(), _PLAIN)
        if kind == _PLAIN:
            forward.append(header)
            continue
        value = header[1]
        if kind == _FORWARD_HOST:
            hosts += 1
            host_header = value
            forward.append(header)
        elif kind == _FORWARD_COOKIE:
            cookies.append(value)
            forward.append(header)
        elif kind == _FORWARD_USER_AGENT:
            user_agent = value.decode("latin-1")
            forward.append(header)
        elif kind == _CONNECTION:
            common = _COMMON_CONNECTION.get(value)
            if common is not None:
                connection_tokens.append(common)
            else:
                connection_tokens.extend(_tokens(value))
        elif kind == _CONTENT_LENGTH:
            content_length = _content_length(value, content_length)
        elif kind == _TRANSFER_ENCODING:
            transfer_encoding.extend(_tokens(value))
        elif kind == _FORWARDED_FOR:
            forwarded_for = value if forwarded_for is None else forwarded_for + b", " + value
        elif kind == _REQUEST_ID:
            request_id = value
        elif kind == _UPGRADE:
            upgrade = value
    if hosts > 1:
        raise BadRequest("more than one Host header")
    if http11 and hosts == 0:
        raise BadRequest("HTTP/1.1 request without Host")
    chunked = bool(transfer_encoding)
    if chunked:
        _check_transfer_coding(transfer_encoding, content_length, http11)
    upgrade_wanted = upgrade is not None and b"upgrade" in connection_tokens
    if upgrade_wanted and chunked:
        # httptools hands every byte after an Upgrade head over unparsed: a chunked body
        # could not be told from the new protocol's bytes. (A Content-Length body can.)
        raise BadRequest("Upgrade request with a chunked body")
    if connection_tokens and not _ALREADY_DROPPED.issuperset(connection_tokens):
        listed = set(connection_tokens) - _NEVER_HOP_BY_HOP
        if listed:
            forward = [header for header in forward if header[0].lower() not in listed]
    return Request(
        method=method,
        target=target,
        http11=http11,
        forward=forward,
        spliced=spliced_lines(received, method, target, raw, forward) if http11 else None,
        host=_host_name(host_header),
        host_header=host_header,
        cookie=b"; ".join(cookies).decode("latin-1") if cookies else None,
        user_agent=user_agent,
        forwarded_for=forwarded_for,
        request_id=request_id,
        content_length=content_length,
        chunked=chunked,
        upgrade=upgrade if upgrade_wanted else None,
    )


def spliced_lines(
    received: bytes, method: bytes, target: bytes, raw: Headers, forward: Headers
) -> bytes | None:
    """The request line and the lines of the headers in `forward` (a subsequence of `raw`) cut
    from `received`, the read whose start is this HTTP/1.1 head; None when
    its request line is not the plain one ("GET / HTTP/1.1", one space each).

    Sending these on instead of writing each header again is most of what a lean proxy saves
    per request. It relies on the parser's strictness, which tests/unit/test_headers.py pins:
    llhttp ends every line with CRLF and nothing else (no bare CR or LF, no obs-fold), so the
    head is one line per header up to the first empty line.
    """
    start = len(method) + len(target) + 12  # past "GET / HTTP/1.1\r\n"
    # (a longer request line, with more spaces, has no CRLF where this one's ends)
    if not (received.startswith(method) and received[start - 2 : start] == b"\r\n"):
        return None
    end = received.find(b"\r\n\r\n") + 2  # past the last header line's CRLF
    if end < start:
        return None  # not a whole head: not from the parser that read this one
    if len(forward) == len(raw):
        return received[:end]
    # Cut out the lines of the headers not forwarded. Those share their fate with every header
    # of the same name (so an equal one in `forward` is one kept, and the next line spelled
    # "Name:" is the next one to cut). (Compared by value: compiled, a tuple is copied.)
    kept: list[bytes] = []
    kept_from = 0
    crlf = start - 2  # the CRLF before the line looked for
    at = 0  # in `forward`
    for header in raw:
        if at < len(forward) and forward[at] == header:
            at += 1
            continue
        crlf = received.find(b"\r\n" + header[0] + b":", crlf, end)
        if crlf < 0:
            return None  # (cannot be: the parser read that line)
        kept.append(received[kept_from : crlf + 2])
        crlf = received.find(b"\r\n", crlf + 2)  # the line's own
        kept_from = crlf + 2
    kept.append(received[kept_from:end])
    return b"".join(kept)


def _check_transfer_coding(codings: list[bytes], content_length: int | None, http11: bool) -> None:
    """A chunked request body is framed only by a final, single "chunked" (RFC 9112 §6.1, §6.3):
    anything else is ambiguous framing (400), a coding the proxy cannot undo (501, as nginx), or
    HTTP/1.0, which has no transfer codings (400, as nginx)."""
    codings = [coding for coding in codings if coding]  # empty list elements are ignored
    if content_length is not None or not http11:
        raise BadRequest("Transfer-Encoding with Content-Length, or in HTTP/1.0")
    if not codings or codings[-1] != b"chunked" or codings.count(b"chunked") > 1:
        raise BadRequest("request body framing is not a final chunked")
    if len(codings) > 1:
        raise UnknownTransferCoding(b", ".join(codings[:-1]).decode("latin-1"))


# llhttp (under httptools) also parses RTSP/1.0 and RTSP/2.0 request lines, Icecast's
# "SOURCE / ICE/1.0", and HTTP/0.9's bare "GET /", and reports them as versions 1.0, 2.0 and 0.9:
# none is HTTP/1.x, and forwarding one as HTTP/1.1 would carry what another parser refuses.
# These methods parse only with "RTSP/"; GET, POST, OPTIONS and SOURCE parse with both.
_RTSP_ONLY_METHODS: Final = frozenset({
    b"ANNOUNCE", b"DESCRIBE", b"FLUSH", b"GET_PARAMETER", b"PAUSE", b"PLAY", b"RECORD",
    b"REDIRECT", b"SETUP", b"SET_PARAMETER", b"TEARDOWN",
})  # fmt: skip
_FOREIGN_PROTOCOLS: Final = (b" RTSP/1.0\r\n", b" ICE/1.0\r\n")


def check_version(method: bytes, version: str, target: bytes, head: bytes) -> None:
    """Refuse what is not an HTTP/1.0 or HTTP/1.1 request line: 505 for HTTP/2.0, 400 for the
    rest. `head` is the raw bytes read while this head arrived (with whatever came before it in
    the same read); it is looked at only for HTTP/1.0, whose request line llhttp does not tell
    from RTSP/1.0 or ICE/1.0."""
    if version == "1.1":
        return
    if version == "2.0":
        raise VersionNotSupported("HTTP/2.0 request line")
    if version != "1.0" or method in _RTSP_ONLY_METHODS:
        raise BadRequest("not an HTTP/1.x request line")
    if any(protocol in head for protocol in _FOREIGN_PROTOCOLS):
        # (rare: only then is the request line itself looked for)
        line = rb"(?:^|\n)%s +%s +(?:RTSP|ICE)/1\.0\r\n" % (re.escape(method), re.escape(target))
        if re.search(line, head):
            raise BadRequest("not an HTTP/1.x request line")


# RFC 3986 host (reg-name or IP literal) with an optional port
_VALID_HOST: Final = re.compile(
    rb"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._~!$&'()*+,;=%]+)(?::[0-9]*)?"
)


def _content_length(value: bytes, previous: int | None) -> int:
    stripped = value.strip()
    if not stripped.isdigit() or len(stripped) > 18:
        raise BadRequest("invalid Content-Length")
    length = int(stripped)
    if previous is not None and previous != length:
        raise BadRequest("conflicting Content-Length headers")
    return length


@lru_cache(maxsize=1024)  # a few distinct Hosts arrive over and over
def _host_name(host_header: bytes) -> str:
    """The lower-case host without port; BadRequest for anything that is not an RFC 3986 host.
    (llhttp keeps the whitespace that may end a value: nginx ignores it, so does this.)"""
    host_header = host_header.rstrip(b" \t")
    if host_header and _VALID_HOST.fullmatch(host_header) is None:
        raise BadRequest("invalid Host header")
    host = host_header.decode("latin-1").lower()
    if host.startswith("["):
        end = host.find("]")
        return host[: end + 1] if end > 0 else host
    colon = host.rfind(":")
    if colon >= 0:
        host = host[:colon]
    return host.rstrip(".")


@dataclass(frozen=True, slots=True)
class Forwarding:
    """Facts about the downstream connection, fixed for its lifetime."""

    client_ip: bytes
    port: bytes  # the proxy's own listening port, for X-Forwarded-Port
    proto: bytes  # b"http" or b"https"
    local: bytes  # the proxy's own address as host:port, the Host of requests that have none


def upstream_head(
    request: Request, via: Forwarding, request_id: bytes, client: bytes = b""
) -> bytes:
    """The request head sent upstream: HTTP/1.1, keep-alive, framed by the proxy.

    X-Real-IP is `client` when given (the address use-forwarded-headers takes, as nginx's
    $remote_addr after its realip module), else the peer's; X-Forwarded-For always ends with
    the peer's (docs/behaviour.md, "Access by client address")."""
    real_ip = client or via.client_ip
    host = request.host_header
    own_host = b""
    if not host:  # HTTP/1.0 allowed it, HTTP/1.1 upstreams require one
        host = via.local
        own_host = b"Host: %s\r\n" % host
    forwarded_for = (
        request.forwarded_for + b", " + via.client_ip if request.forwarded_for else via.client_ip
    )
    framing = b""
    if request.upgrade is not None:
        framing = b"Connection: upgrade\r\nUpgrade: %s\r\n" % request.upgrade
    if request.chunked:
        framing += b"Transfer-Encoding: chunked\r\n"
    elif request.content_length is not None:
        framing += b"Content-Length: %d\r\n" % request.content_length
    spliced = request.spliced
    if spliced is not None:
        return _SPLICED_HEAD % (
            spliced, forwarded_for, host, via.port, via.proto, real_ip, request_id, framing,
        )  # fmt: skip
    lines = b"".join([b"%s: %s\r\n" % header for header in request.forward])
    return _UPSTREAM_HEAD % (
        request.method, request.target, own_host, lines, forwarded_for, host, via.port, via.proto,
        real_ip, request_id, framing,
    )  # fmt: skip


_ADDITIONS: Final = (
    b"X-Forwarded-For: %s\r\nX-Forwarded-Host: %s\r\nX-Forwarded-Port: %s\r\n"
    b"X-Forwarded-Proto: %s\r\nX-Real-IP: %s\r\nX-Request-ID: %s\r\n%s\r\n"
)
# the head written from the parsed request, and the one spliced from the received lines
_UPSTREAM_HEAD: Final = b"%s %s HTTP/1.1\r\n%s%s" + _ADDITIONS
_SPLICED_HEAD: Final = b"%s" + _ADDITIONS


class Framing:
    """How a response body travels downstream."""

    NONE: Final = 0  # HEAD, 1xx, 204, 304: headers only
    LENGTH: Final = 1  # Content-Length passed through
    CHUNKED: Final = 2  # re-chunked for an HTTP/1.1 client
    CLOSE: Final = 3  # HTTP/1.0 client: the body ends when the connection closes


# What response_head does with a header: forward it, note it, or drop it. Looked up by exact
# spelling first (the usual spellings skip a .lower()), then in lower case.
_PASS: Final = 0
_LENGTH: Final = 1
_CONNECTION_TOKENS: Final = 2
_HOP: Final = 3
_COMMON_RESPONSE: Final = frozenset({
    b"accept-ranges", b"access-control-allow-origin", b"cache-control", b"content-encoding",
    b"content-type", b"date", b"etag", b"expires", b"last-modified", b"location", b"server",
    b"set-cookie", b"strict-transport-security", b"vary", b"x-content-type-options",
    b"x-frame-options",
})  # fmt: skip
_RESPONSE_KINDS: Final[dict[bytes, int]] = {
    **dict.fromkeys(_spellings(_COMMON_RESPONSE), _PASS),
    b"ETag": _PASS,
    **dict.fromkeys(_spellings(_DROP_RESPONSE), _HOP),
    **dict.fromkeys(_spellings([b"content-length"]), _LENGTH),
    **dict.fromkeys(_spellings([b"connection"]), _CONNECTION_TOKENS),
}


def response_head(  # noqa: PLR0917 - one hot call per response, positional
    status: int,
    reason: bytes,
    raw: Headers,
    head_request: bool,
    client_http11: bool,
    keep_alive: bool,
    set_cookie: bytes | None,
    extra: bytes = b"",
) -> tuple[bytes, int]:
    """The response head for the client, and how its body travels (a `Framing`), in one pass.

    Hop-by-hop headers and those the upstream's Connection lists are dropped; every other header
    (each Set-Cookie included) is kept in order; `extra` (already formatted lines) and the
    affinity `set_cookie` follow, then the proxy's own framing. `keep_alive` is what the proxy
    wants; a body that ends at close overrides it.
    """
    parts = [b"HTTP/1.1 %d %s\r\n" % (status, reason)]
    content_length: int | None = None
    listed: set[bytes] | None = None
    kinds = _RESPONSE_KINDS
    for name, value in raw:
        kind = kinds.get(name)
        if kind is None:
            kind = kinds.get(name.lower(), _PASS)
        if kind == _PASS:
            parts += (name, b": ", value, b"\r\n")
        elif kind == _LENGTH:
            stripped = value.strip()
            content_length = int(stripped) if stripped.isdigit() else None
        elif kind == _CONNECTION_TOKENS and value not in _COMMON_CONNECTION:
            tokens = set(_tokens(value)) - _ALREADY_DROPPED
            listed = tokens if listed is None else listed | tokens
    if listed:
        parts[1:] = _without(parts[1:], listed)
    if head_request or status < 200 or status in (204, 304):
        framing = Framing.NONE
    elif content_length is not None:
        framing = Framing.LENGTH
    else:
        framing = Framing.CHUNKED if client_http11 else Framing.CLOSE
    if extra:
        parts.append(extra)
    if set_cookie is not None:
        parts += (b"Set-Cookie: ", set_cookie, b"\r\n")
    if content_length is not None and status >= 200 and status != 204:
        # HEAD and 304 answers keep the length of the body they describe.
        parts.append(b"Content-Length: %d\r\n" % content_length)
    elif framing == Framing.CHUNKED:
        parts.append(b"Transfer-Encoding: chunked\r\n")
    if not keep_alive or framing == Framing.CLOSE:
        parts.append(b"Connection: close\r\n")
    elif not client_http11:
        parts.append(b"Connection: keep-alive\r\n")
    parts.append(b"\r\n")
    return b"".join(parts), framing


def _without(lines: list[bytes], names: set[bytes]) -> list[bytes]:
    """`lines` (name, ": ", value, CRLF for each header) without the headers named in `names`
    (lower case)."""
    kept: list[bytes] = []
    for index in range(0, len(lines), 4):
        if lines[index].lower() not in names:
            kept += lines[index : index + 4]
    return kept


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%b\r\n" % (len(data), data)


LAST_CHUNK: Final = b"0\r\n\r\n"

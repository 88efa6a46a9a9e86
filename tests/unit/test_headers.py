"""The request-head rules of proxy.core.headers, without sockets: what is forwarded, what is
refused and with which status, and how the head sent upstream is made."""

from __future__ import annotations

import contextlib
import random

import httptools
import pytest

from proxy.core.errors import BadRequest, ProxyError, UnknownTransferCoding, VersionNotSupported
from proxy.core.headers import (
    Forwarding,
    Headers,
    Request,
    check_version,
    scan_request,
    spliced_lines,
    upstream_head,
)


def _scan(headers: Headers, http11: bool = True, underscores: bool = False) -> list[bytes]:
    """The names scan_request forwards for a POST with these headers."""
    request = scan_request(b"POST", b"/", http11, [(b"Host", b"t"), *headers], underscores)
    return [name for name, _ in request.forward]


def test_connection_cannot_drop_host_but_drops_what_it_lists() -> None:
    forwarded = _scan([(b"Connection", b"Host, X-Hop, content-length"), (b"X-Hop", b"1"),
                       (b"X-End", b"2")])  # fmt: skip
    assert forwarded == [b"Host", b"X-End"]


@pytest.mark.parametrize("underscores", [False, True])
def test_names_with_underscores_are_dropped_unless_allowed(underscores: bool) -> None:
    forwarded = _scan([(b"X_Custom", b"1"), (b"Transfer_Encoding", b"chunked")], True, underscores)
    expected = [b"Host", b"X_Custom", b"Transfer_Encoding"] if underscores else [b"Host"]
    assert forwarded == expected


@pytest.mark.parametrize(
    ("coding", "refusal"),
    [
        (b"chunked", None),
        (b"Chunked", None),
        (b"deflate, chunked", UnknownTransferCoding),
        (b"gzip,chunked", UnknownTransferCoding),
        (b"chunked, gzip", BadRequest),
        (b"chunked, chunked", BadRequest),
        (b"identity", BadRequest),
        (b"xchunked", BadRequest),
    ],
)
def test_only_a_single_final_chunked_frames_a_body(
    coding: bytes, refusal: type[ProxyError] | None
) -> None:
    headers: Headers = [(b"Transfer-Encoding", coding)]
    if refusal is None:
        assert scan_request(b"POST", b"/", True, [(b"Host", b"t"), *headers]).chunked
    else:
        with pytest.raises(refusal):
            _scan(headers)


def test_transfer_encoding_in_http10_or_beside_a_length_is_400() -> None:
    with pytest.raises(BadRequest):
        _scan([(b"Transfer-Encoding", b"chunked")], http11=False)
    with pytest.raises(BadRequest):
        _scan([(b"Transfer-Encoding", b"chunked"), (b"Content-Length", b"3")])


def test_an_upgrade_takes_a_length_but_not_chunks() -> None:
    upgrade: Headers = [(b"Connection", b"upgrade"), (b"Upgrade", b"websocket")]
    request = scan_request(b"POST", b"/", True, [(b"Host", b"t"), *upgrade,
                                                 (b"Content-Length", b"4")])  # fmt: skip
    assert request.upgrade == b"websocket" and request.content_length == 4
    with pytest.raises(BadRequest):
        _scan([*upgrade, (b"Transfer-Encoding", b"chunked")])


@pytest.mark.parametrize(
    ("method", "version", "target", "head", "refusal"),
    [
        (b"GET", "1.1", b"/", b"GET / RTSP/1.0\r\n", None),  # 1.1 is never RTSP: not looked at
        (b"GET", "1.0", b"/", b"GET / HTTP/1.0\r\nX: RTSP/1.0\r\n\r\n", None),
        (b"GET", "1.0", b"/a", b"GET /b RTSP/1.0\r\n\r\nGET /a HTTP/1.0\r\n\r\n", None),
        (b"SOURCE", "1.0", b"/s", b"SOURCE /s HTTP/1.0\r\n\r\n", None),
        (b"GET", "2.0", b"/", b"GET / HTTP/2.0\r\n\r\n", VersionNotSupported),
        (b"GET", "0.9", b"/", b"GET /\r\n\r\n", BadRequest),
        (b"SETUP", "1.0", b"/", b"SETUP / RTSP/1.0\r\n\r\n", BadRequest),
        (b"GET", "1.0", b"/", b"GET /  RTSP/1.0\r\n\r\n", BadRequest),
        (b"OPTIONS", "1.0", b"*", b"\r\nOPTIONS * RTSP/1.0\r\n\r\n", BadRequest),
        (b"SOURCE", "1.0", b"/s", b"SOURCE /s ICE/1.0\r\n\r\n", BadRequest),
    ],
)  # fmt: skip
def test_check_version_refuses_what_is_not_http_1(
    method: bytes, version: str, target: bytes, head: bytes, refusal: type[ProxyError] | None
) -> None:
    if refusal is None:
        check_version(method, version, target, head)
    else:
        with pytest.raises(refusal):
            check_version(method, version, target, head)


# -- the head sent upstream: spliced from the received bytes, or written again --------------------

VIA = Forwarding(client_ip=b"10.1.1.1", port=b"8080", proto=b"http", local=b"127.0.0.1:8080")


class _Collected:
    """httptools' callbacks, collecting what DownstreamProtocol collects."""

    def __init__(self) -> None:
        self.url = b""
        self.headers: Headers = []

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))


def _scan_received(head: bytes, received: bytes, underscores: bool = False) -> Request:
    """scan_request on `head` as the real parser reads it, `received` the read it came in."""
    collected = _Collected()
    parser = httptools.HttpRequestParser(collected)
    with contextlib.suppress(httptools.HttpParserUpgrade):  # (the head was read all the same)
        parser.feed_data(head)
    method, http11 = parser.get_method(), parser.get_http_version() == "1.1"
    return scan_request(method, collected.url, http11, collected.headers, underscores, received)


def _both_heads(head: bytes, after: bytes = b"", underscores: bool = False) -> tuple[bytes, bytes]:
    """The upstream head spliced from the received bytes, and the one written from the parse."""
    spliced = _scan_received(head, head + after, underscores)
    written = _scan_received(head, b"", underscores)
    assert spliced.spliced is not None, "not spliced"
    assert written.spliced is None
    return upstream_head(spliced, VIA, b"id"), upstream_head(written, VIA, b"id")


def test_a_head_is_sent_on_as_it_came_with_the_proxys_lines_after_it() -> None:
    head = b"GET /a?b=1 HTTP/1.1\r\nHost:  app\r\nAccept:*/*  \r\ncookie: k=v\r\n\r\n"
    spliced, _ = _both_heads(head, b"GET /next HTTP/1.1\r\n")
    assert spliced == head[:-2] + (
        b"X-Forwarded-For: 10.1.1.1\r\nX-Forwarded-Host: app\r\nX-Forwarded-Port: 8080\r\n"
        b"X-Forwarded-Proto: http\r\nX-Real-IP: 10.1.1.1\r\nX-Request-ID: id\r\n\r\n"
    )


# Header lines in the spelling upstream_head writes ("Name: value"), so that the spliced head and
# the written one must be the same bytes: hop-by-hop, replaced, Connection-named, underscored.
_LINES = [
    b"Accept: */*", b"User-Agent: ua", b"Cookie: a=1; key=K", b"Cookie: b=2",
    b"Connection: keep-alive", b"Connection: close", b"Connection: X-Hop, TE", b"X-Hop: 1",
    b"Keep-Alive: timeout=5", b"TE: trailers", b"Proxy-Connection: keep-alive",
    b"X-Forwarded-For: 1.2.3.4", b"X-Request-ID: abc", b"X-Real-IP: 6.6.6.6", b"X_Under: 1",
    b"Content-Length: 0", b"Upgrade: websocket", b"Connection: upgrade", b"x-custom: \xe9",
    b"Trailer: X", b"X-Forwarded-Host: evil", b"connection: Keep-Alive", b"x-hop: 2",
    b"te: trailers", b"Hop: kept", b"X-Hop-Not: kept",
]  # fmt: skip


@pytest.mark.parametrize("underscores", [False, True])
def test_spliced_and_written_heads_are_the_same_bytes(underscores: bool) -> None:
    rng = random.Random(20261203)
    for _ in range(3000):
        lines = rng.choices(_LINES, k=rng.randint(0, 10))  # (repeats too)
        if lines.count(b"Content-Length: 0") > 1:
            continue  # (the parser refuses a second one)
        lines.insert(rng.randint(0, len(lines)), b"Host: app")
        head = b"GET /p HTTP/1.1\r\n" + b"".join(line + b"\r\n" for line in lines) + b"\r\n"
        spliced, written = _both_heads(head, b"x" * rng.randint(0, 3), underscores)
        assert spliced == written, head


@pytest.mark.parametrize(
    "request_line",
    [b"GET /other HTTP/1.1", b"GET  /p HTTP/1.1", b"GET /p  HTTP/1.1", b"\r\nGET /p HTTP/1.1"],
)
def test_a_request_line_that_is_not_the_plain_one_is_not_spliced(request_line: bytes) -> None:
    raw = [(b"Host", b"app"), (b"X-A", b"1")]
    received = request_line + b"\r\nHost: app\r\nX-A: 1\r\n\r\n"
    assert spliced_lines(received, b"GET", b"/p", raw, raw) is None


@pytest.mark.parametrize(
    "head",
    [
        b"GET / HTTP/1.1\r\nHost: a\nX: 1\r\n\r\n",  # a bare LF
        b"GET / HTTP/1.1\r\nHost: a\rX: 1\r\n\r\n",  # a bare CR
        b"GET / HTTP/1.1\r\nHost: a\r\nX: 1\r\n 2\r\n\r\n",  # obs-fold
        b"GET / HTTP/1.1\r\nHost: a\r\n\n",  # an LF ends the head
        b"GET / HTTP/1.1\nHost: a\r\n\r\n",  # an LF ends the request line
    ],
)
def test_the_parser_takes_only_crlf_lines_one_per_header(head: bytes) -> None:
    """What spliced_lines relies on: a head the parser reads is one CRLF line per header."""
    with pytest.raises(httptools.HttpParserError):
        httptools.HttpRequestParser(_Collected()).feed_data(head)


@pytest.mark.parametrize("value", [b"app", b"app  ", b"app\t", b"App:8080 "])
def test_whitespace_after_the_host_is_ignored_as_nginx_does(value: bytes) -> None:
    assert _scan_received(b"GET / HTTP/1.1\r\nHost: %s\r\n\r\n" % value, b"").host == "app"

"""The request-head rules of proxy.core.headers, without sockets: what is forwarded, what is
refused and with which status."""

from __future__ import annotations

import pytest

from proxy.core.errors import BadRequest, ProxyError, UnknownTransferCoding, VersionNotSupported
from proxy.core.headers import Headers, check_version, scan_request


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

"""Watch stream framing: lines cut anywhere by the chunking, and the events they hold."""

from __future__ import annotations

import json
import random

import pytest

from proxy.control.sources.kubernetes.events import (
    LineSplitter,
    StreamError,
    WatchEvent,
    decode_event,
)


def event_line(kind: str, name: str, version: str, **extra: object) -> bytes:
    obj = {"kind": "EndpointSlice", "metadata": {"name": name, "resourceVersion": version}}
    return json.dumps({"type": kind, "object": {**obj, **extra}}, ensure_ascii=False).encode()


def test_lines_come_whole_whatever_the_chunk_boundaries() -> None:
    lines = [event_line("ADDED", f"s{i}", str(i), note="café ✓ " * i) for i in range(50)]
    stream = b"\n".join(lines) + b"\n"
    rng = random.Random(5)
    for _ in range(20):
        splitter, got = LineSplitter(), []
        position = 0
        while position < len(stream):
            size = rng.randint(1, 40)  # cuts inside UTF-8 sequences too
            got.extend(splitter.feed(stream[position : position + size]))
            position += size
        assert got == lines
        assert splitter.pending == 0


def test_several_events_in_one_chunk_and_an_unfinished_one() -> None:
    splitter = LineSplitter()
    got = splitter.feed(b'{"a":1}\n{"b":2}\n\n{"c"')
    assert got == [b'{"a":1}', b'{"b":2}']
    assert splitter.pending == 4
    assert splitter.feed(b":3}\n") == [b'{"c":3}']


def test_a_line_of_several_megabytes_is_read_in_pieces() -> None:
    huge = event_line("MODIFIED", "big", "7", endpoints=["10.0.0.1"] * 200_000)
    assert len(huge) > 2_000_000
    splitter = LineSplitter()
    got: list[bytes] = []
    for start in range(0, len(huge), 65536):
        got.extend(splitter.feed(huge[start : start + 65536]))
    got.extend(splitter.feed(b"\n"))
    assert got == [huge]
    assert decode_event(got[0]).resource_version == "7"


def test_a_line_beyond_the_limit_is_a_broken_stream() -> None:
    splitter = LineSplitter(limit=1000)
    splitter.feed(b"x" * 999)
    with pytest.raises(StreamError, match="longer than 1000 bytes"):
        splitter.feed(b"x" * 2)


def test_decoding() -> None:
    bookmark = (
        b'{"type":"BOOKMARK","object":{"kind":"Service","apiVersion":"v1",'
        b'"metadata":{"resourceVersion":"184990"}}}'
    )
    assert decode_event(bookmark) == WatchEvent(
        "BOOKMARK",
        {"kind": "Service", "apiVersion": "v1", "metadata": {"resourceVersion": "184990"}},
    )
    assert decode_event(bookmark).resource_version == "184990"
    assert WatchEvent("ERROR", {"kind": "Status", "metadata": {}}).resource_version is None


@pytest.mark.parametrize(
    "line",
    [b"{not json", b"[1]", b'{"type":"ADDED"}', b'{"type":"RENAMED","object":{}}', b"\xff\xfe"],
)
def test_what_is_not_an_event(line: bytes) -> None:
    with pytest.raises(StreamError):
        decode_event(line)

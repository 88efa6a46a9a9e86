"""The watch stream's framing: one JSON event per line, lines cut anywhere by the chunking."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

# The API server refuses objects above ~1.5 MiB (etcd's request limit), so an event line is at
# most a few MiB; anything far beyond that is a broken stream, not an event to buffer forever.
MAX_EVENT_BYTES = 16 * 1024 * 1024

EVENT_TYPES = frozenset({"ADDED", "MODIFIED", "DELETED", "BOOKMARK", "ERROR"})


class StreamError(Exception):
    """The watch stream carried something that is not an event: give it up and start again."""


@dataclass(frozen=True, slots=True)
class WatchEvent:
    type: str  # ADDED, MODIFIED, DELETED, BOOKMARK or ERROR
    object: dict[str, Any]  # the object; a Status for ERROR

    @property
    def resource_version(self) -> str | None:
        metadata = self.object.get("metadata")
        version = metadata.get("resourceVersion") if isinstance(metadata, dict) else None
        return version if isinstance(version, str) and version else None


class LineSplitter:
    """Whole lines out of arbitrary chunks: an event may span chunks (even mid UTF-8 sequence),
    and a chunk may hold several events. Searches each byte once, however long the line."""

    def __init__(self, limit: int = MAX_EVENT_BYTES) -> None:
        self._buffer = bytearray()
        self._searched = 0  # bytes of the buffer known to hold no newline
        self._limit = limit

    def feed(self, chunk: bytes) -> list[bytes]:
        self._buffer += chunk
        lines: list[bytes] = []
        start = 0
        while (end := self._buffer.find(b"\n", max(start, self._searched))) >= 0:
            lines.append(bytes(self._buffer[start:end]))
            start = end + 1
        del self._buffer[:start]
        self._searched = len(self._buffer)
        if self._searched > self._limit:
            raise StreamError(f"an event line longer than {self._limit} bytes")
        return [line for line in lines if line.strip()]

    @property
    def pending(self) -> int:
        """Bytes of an unfinished line: what a dropped connection cut off."""
        return len(self._buffer)


def decode_event(line: bytes) -> WatchEvent:
    try:
        event = json.loads(line)
    except ValueError as error:  # UnicodeDecodeError is a ValueError too
        raise StreamError(f"an event that is not JSON: {error}") from None
    if not isinstance(event, dict):
        raise StreamError("an event that is not a JSON object")
    kind, obj = event.get("type"), event.get("object")
    if kind not in EVENT_TYPES or not isinstance(obj, dict):
        raise StreamError(f"an event of unknown type {kind!r} or without an object")
    return WatchEvent(kind, obj)

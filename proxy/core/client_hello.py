"""The server name (SNI) of a TLS ClientHello read ahead of the handshake: pure, no I/O.

The listener peeks at a new connection's first TLS record to learn which host it is for before
it picks the listening context that asks (or does not ask) for a client certificate
(docs/behaviour.md, "Client certificate authentication"). Only the first record is read: a
ClientHello spread over several records (beyond 16 KiB) counts as one without a name.
"""

from __future__ import annotations

from typing import Final

_HANDSHAKE: Final = 22  # TLS record content type
_CLIENT_HELLO: Final = 1  # handshake message type
_SERVER_NAME: Final = 0  # extension type (RFC 6066 §3)
_HOST_NAME: Final = 0  # server name type
_MAX_RECORD: Final = 16384 + 256  # TLSPlaintext.length limit, with TLS 1.2's expansion allowance
HEADER: Final = 5
RECORD_LIMIT: Final = HEADER + _MAX_RECORD  # the most the listener ever peeks


class _Truncated(Exception):
    pass


def record_length(data: bytes) -> int | None:
    """How many bytes the first record takes (header included) once its header is in; None when
    `data` is too short to tell, 0 when it is no TLS handshake record at all."""
    if data and data[0] != _HANDSHAKE:
        return 0
    if len(data) < HEADER:
        return None
    length = int.from_bytes(data[3:5], "big")
    if data[1] != 3 or not 0 < length <= _MAX_RECORD:
        return 0
    return HEADER + length


def server_name(record: bytes) -> str | None:
    """The host name a complete first record's ClientHello asks for, lower case; None without
    one, or when the record is not a well-formed ClientHello."""
    try:
        return _server_name(record)
    except _Truncated:
        return None


def _server_name(record: bytes) -> str | None:
    reader = _Reader(record[HEADER:])
    if reader.byte() != _CLIENT_HELLO:
        return None
    reader.skip(3)  # the message length: a hello may go on past this record, read what is here
    reader.skip(2 + 32)  # legacy version, random
    reader.skip(reader.byte())  # session id
    reader.skip(reader.short())  # cipher suites
    reader.skip(reader.byte())  # compression methods
    extensions = _Reader(reader.take(reader.short()))
    while extensions.left():
        kind, body = extensions.short(), extensions.take(extensions.short())
        if kind == _SERVER_NAME:
            return _host_name(_Reader(body))
    return None


def _host_name(body: _Reader) -> str | None:
    names = _Reader(body.take(body.short()))
    while names.left():
        kind, name = names.byte(), names.take(names.short())
        if kind == _HOST_NAME:
            if not name or not name.isascii():
                return None
            return name.decode("ascii").lower()
    return None


class _Reader:
    __slots__ = ("at", "data")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.at = 0

    def left(self) -> int:
        return len(self.data) - self.at

    def take(self, count: int) -> bytes:
        if count > self.left():
            raise _Truncated
        self.at += count
        return self.data[self.at - count : self.at]

    def skip(self, count: int) -> None:
        self.take(count)

    def byte(self) -> int:
        return self.take(1)[0]

    def short(self) -> int:
        return int.from_bytes(self.take(2), "big")

"""A transport in memory: the data plane's protocols run on it without sockets or a kernel.

The data plane's unit tests drive the real downstream and upstream protocols over it, and so does
the hot-path benchmark (bench/hotpath.py), which measures the proxy's own CPU time per request.
"""

from __future__ import annotations

import asyncio

Buffer = bytes | bytearray | memoryview
CLIENT = ("127.0.0.1", 40000)
LISTENER = ("127.0.0.1", 8080)


class MemoryTransport(asyncio.Transport):
    """Just enough of a uvloop transport for the protocols: writes are kept, not sent; pausing,
    the end of writing and closing are noted, nothing more."""

    def __init__(self, peer: tuple[str, int] = CLIENT, own: tuple[str, int] = LISTENER) -> None:
        super().__init__({"peername": peer, "sockname": own})
        self.written: list[Buffer] = []
        self.closing = False
        self.reading = True
        self.eof = False  # write_eof() called: the protocol closed its side, lingering

    def write(self, data: Buffer) -> None:
        self.written.append(data)

    def take(self) -> bytes:
        """What was written since the last take."""
        data = b"".join(self.written)
        self.written.clear()
        return data

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def abort(self) -> None:
        self.closing = True

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self.eof = True

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def is_reading(self) -> bool:
        return self.reading

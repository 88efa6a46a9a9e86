"""One answer's limit-rate (docs/behaviour.md, "Response rate"): bytes past the full-speed
part go a tick's worth at a time; while some wait, the upstream is not read, so a throttled
answer holds at most one read of it here. A timer, never a sleep, resumes it."""

from __future__ import annotations

import asyncio
from typing import Protocol

from proxy.core.send_rate import SendRate, allowed, pause
from proxy.dataplane.upstream import UpstreamConnection


class Client(Protocol):
    write_paused: bool

    def write(self, data: bytes) -> None: ...


class Paced(Protocol):
    """The exchange whose answer is paced (proxy/dataplane/exchange.py)."""

    upstream: UpstreamConnection | None
    last_read: float  # loop time of the upstream's last read, for proxy-read-timeout

    @property
    def downstream(self) -> Client: ...

    def answer_done(self) -> None: ...


class Throttle:
    __slots__ = ("done", "exchange", "loop", "rate", "sent", "timer", "waiting")

    def __init__(
        self, exchange: Paced, loop: asyncio.AbstractEventLoop, rate: SendRate, head: int
    ) -> None:
        self.exchange = exchange
        self.loop = loop
        self.rate = rate
        self.sent = head  # bytes of the answer written, its head included (nginx's c->sent)
        self.waiting = b""  # what may not go yet, in order
        self.timer: asyncio.TimerHandle | None = None  # the next write may not come before it
        self.done = False  # the upstream's answer is whole: finish once nothing waits

    def write(self, data: bytes) -> None:
        if self.timer is None and not self.waiting:
            data = self._send(data)
            if not data:
                return
        if not self.waiting:
            self._hold_upstream(True)
        self.waiting += data

    @property
    def free(self) -> bool:
        """Whether nothing waits: the upstream may be read."""
        return not self.waiting

    def cancel(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.waiting = b""

    def _send(self, data: bytes) -> bytes:
        """Write what may go of `data` now; the rest comes back."""
        rate = self.rate
        count = allowed(rate, self.sent, len(data))
        exchange = self.exchange
        exchange.downstream.write(data if count == len(data) else data[:count])
        wait = pause(rate, self.sent, count)
        self.sent += count
        if wait > 0:
            self.timer = self.loop.call_later(wait, self._tick)
        return data[count:]

    def _tick(self) -> None:
        self.timer = None
        exchange = self.exchange
        # the upstream was not read because of us: that is no silence of its own
        exchange.last_read = self.loop.time()
        if not self.waiting:
            return
        self.waiting = self._send(self.waiting)
        if self.waiting:
            return
        if self.done:
            exchange.answer_done()
        else:
            self._hold_upstream(False)

    def _hold_upstream(self, held: bool) -> None:
        exchange = self.exchange
        upstream = exchange.upstream
        if upstream is not None and (held or not exchange.downstream.write_paused):
            upstream.pause_reading(held)

"""limit-rate and limit-rate-after: how fast an answer goes to the client, as nginx's
limit_rate and limit_rate_after (docs/behaviour.md, "Response rate").

Pure: the pacing of one answer. The data plane (proxy/dataplane/throttle.py) holds what may not
go yet and sets the timer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

# How often a throttled answer is topped up: a tenth of a second's worth of bytes at a time
# (nginx sends up to a second's worth, then waits; the average is the same, the bursts smaller).
TICK: Final = 0.1


@dataclass(frozen=True, slots=True)
class SendRate:
    """`rate` bytes a second once `after` bytes of the answer (its head included, as nginx's
    c->sent) went at full speed. ingress-nginx writes both in KB (`limit_rate 256k`)."""

    rate: int
    after: int = 0

    @property
    def quantum(self) -> int:
        """Bytes sent each tick."""
        return max(int(self.rate * TICK), 1)


def allowed(rate: SendRate, sent: int, waiting: int) -> int:
    """How many of `waiting` bytes may go now, `sent` bytes of the answer having gone: the rest
    of the full-speed part, and a tick's worth beyond it."""
    free = max(rate.after - sent, 0)
    return min(waiting, free + rate.quantum)


def pause(rate: SendRate, sent: int, written: int) -> float:
    """Seconds to wait after writing `written` bytes of which the first went at byte `sent`:
    the time the bytes past the full-speed part take at the rate (nginx's delay after a send)."""
    limited = written - max(min(rate.after - sent, written), 0)
    return limited / rate.rate if limited > 0 else 0.0

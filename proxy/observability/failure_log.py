"""Failed upstream tries in the log: at most one line per endpoint per second.

nginx logs every failed try; a dead pod behind a busy route then fills the log with thousands of
identical lines a second (and each line costs the event loop ~20 µs). Here an endpoint gets one
warning per `INTERVAL`; the next one says how many failures were left out in between. The
counts of every failure are in `sticky_proxy_upstream_errors_total`.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable

from proxy.core.errors import UpstreamError
from proxy.core.model import Endpoint

log = logging.getLogger("sticky_proxy.upstream")

INTERVAL = 1.0  # seconds between two lines about one endpoint
# An endpoint that has not failed for this long is forgotten: pods come and go, and the limiter
# must not remember every address that ever failed.
FORGET_AFTER = 60.0
# ... and never more than this many at once, however many fail together (~200 bytes each).
MAX_KEYS = 10_000


class _Entry:
    __slots__ = ("held_back", "said_at", "seen_at")

    def __init__(self, now: float) -> None:
        self.said_at = now
        self.seen_at = now
        self.held_back = 0


class RateLimit:
    """Per key, one event let through per `interval`; the others are counted. Pure: the clock
    is given, and nothing is said here."""

    def __init__(
        self,
        clock: Callable[[], float],
        interval: float = INTERVAL,
        forget_after: float = FORGET_AFTER,
        max_keys: int = MAX_KEYS,
    ) -> None:
        self._clock = clock
        self._interval = interval
        self._forget_after = forget_after
        self._max_keys = max_keys
        # Least recently seen first, so forgetting stops at the first key still in use.
        self._entries: OrderedDict[str, _Entry] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def admit(self, key: str) -> int | None:
        """An event for `key`: None to hold it back, else how many were held back since the last
        one let through (0 for a key not seen lately)."""
        now = self._clock()
        entries = self._entries
        self._forget(now)
        entry = entries.get(key)
        if entry is None:
            if len(entries) >= self._max_keys:
                entries.popitem(last=False)
            entries[key] = _Entry(now)
            return 0
        entries.move_to_end(key)
        entry.seen_at = now
        if now - entry.said_at < self._interval:
            entry.held_back += 1
            return None
        held_back, entry.held_back = entry.held_back, 0
        entry.said_at = now
        return held_back

    def _forget(self, now: float) -> None:
        entries = self._entries
        while entries:
            oldest = next(iter(entries.values()))
            if now - oldest.seen_at < self._forget_after:
                return
            entries.popitem(last=False)


class FailureLog:
    """Says which endpoint failed and how, within `RateLimit`'s bounds, as a warning."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.limit = RateLimit(clock)

    def failed(self, cluster: str, endpoint: Endpoint, error: UpstreamError) -> None:
        held_back = self.limit.admit(endpoint.node)
        if held_back is None:
            return
        known = f"pod {endpoint.pod}, cluster {cluster}" if endpoint.pod else f"cluster {cluster}"
        more = f" ({held_back} more since the last line, not logged)" if held_back else ""
        log.warning("upstream %s (%s) failed (%s): %s%s",
                    endpoint.node, known, error.reason, error, more)  # fmt: skip

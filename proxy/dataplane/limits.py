"""One worker's rate and connection limit tables, per zone (an Ingress's limit-rps, limit-rpm,
limit-connections) and client address (docs/behaviour.md, "Rate and connection limits").

Bounded as nginx's 5m zones are: a zone keeps at most `capacity` clients, least recently seen
first out, and a client whose bucket has drained and that has been away a minute is dropped
early, as nginx's ngx_http_limit_req_expire does. A connection zone holds only clients with
requests in flight, so the open connections bound it.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Final

from proxy.core.ratelimit import Bucket, RateLimits, RequestRate, forgettable, leak
from proxy.core.routing import Snapshot

# Clients one limit_req zone remembers: ingress-nginx's 5m zones hold about 40,000 to 80,000
# (nginx: 16,000 64-byte states per megabyte). Full, a zone costs a worker about 17 MB of RSS
# (docs/behaviour.md, "Rate and connection limits").
ZONE_CAPACITY: Final = 65_536
# A bucket is kept as one int, the excess above the time it last passed (ms of the event loop's
# monotonic clock, never negative): a tuple of two ints would cost 90 bytes more per client.
_TIME_BITS: Final = 48
_TIME_MASK: Final = (1 << _TIME_BITS) - 1


def _packed(bucket: Bucket) -> int:
    return (bucket[0] << _TIME_BITS) | bucket[1]


def _unpacked(value: int) -> Bucket:
    return value >> _TIME_BITS, value & _TIME_MASK


class Limiter:
    """The limit_req buckets and limit_conn counts of one worker process."""

    __slots__ = ("_buckets", "_connections", "capacity")

    def __init__(self, capacity: int = ZONE_CAPACITY) -> None:
        self.capacity = capacity
        # (the Ingress, "rps" or "rpm") -> client -> packed bucket, least recent first
        self._buckets: dict[tuple[str, str], OrderedDict[bytes, int]] = {}
        self._connections: dict[str, dict[bytes, int]] = {}  # zone -> client -> in flight

    def admit(self, limits: RateLimits, client: bytes, now: int) -> bool:
        """limit_req: whether one more request of `client` at `now` (ms) is within every rate
        of `limits`. All or nothing, as nginx: a request one rate refuses counts in none."""
        passed: list[tuple[OrderedDict[bytes, int], Bucket, RequestRate]] = []
        for rate in limits.requests:
            table = self._buckets.get((limits.zone, rate.name))
            if table is None:
                table = self._buckets[(limits.zone, rate.name)] = OrderedDict()
            known = table.get(client)
            if known is not None:
                table.move_to_end(client)  # (refused or not, it is a recent client)
            bucket = leak(None if known is None else _unpacked(known), now, rate)
            if bucket is None:
                return False
            passed.append((table, bucket, rate))
        for table, bucket, rate in passed:
            if client not in table:
                self._make_room(table, now, rate)
            table[client] = _packed(bucket)
        return True

    def _make_room(self, table: OrderedDict[bytes, int], now: int, rate: RequestRate) -> None:
        """Before a new client: drop the least recent one when full, and up to two drained
        idle ones (nginx frees as much when it adds a client)."""
        if len(table) >= self.capacity:
            table.popitem(last=False)
        for _ in range(2):
            if not table:
                return
            oldest = next(iter(table))
            if not forgettable(_unpacked(table[oldest]), now, rate):
                return
            del table[oldest]

    def take_connection(self, limits: RateLimits, client: bytes) -> bool:
        """limit_conn: whether `client` may have one more request in flight; if so it is
        counted until `release_connection`."""
        table = self._connections.get(limits.zone)
        if table is None:
            table = self._connections[limits.zone] = {}
        count = table.get(client, 0)
        if count >= limits.connections:
            return False
        table[client] = count + 1
        return True

    def release_connection(self, zone: str, client: bytes) -> None:
        table = self._connections[zone]
        count = table[client] - 1
        if count:
            table[client] = count
        else:
            del table[client]
            if not table:
                del self._connections[zone]

    def retain(self, snapshot: Snapshot) -> None:
        """Forget the buckets of zones no route of `snapshot` has any more (a deleted Ingress,
        a limit taken away); zones still in use keep their clients across reloads, as nginx
        keeps a zone of the same name."""
        if not self._buckets:
            return
        routes = (*snapshot.routes, *((snapshot.default_route,) if snapshot.default_route else ()))
        zones = {
            (route.limits.zone, rate.name)
            for route in routes
            if route.limits is not None
            for rate in route.limits.requests
        }
        for zone in [zone for zone in self._buckets if zone not in zones]:
            del self._buckets[zone]

    def tracked(self) -> int:
        """Clients remembered across all zones (for the bench and tests)."""
        buckets = sum(len(table) for table in self._buckets.values())
        return buckets + sum(len(table) for table in self._connections.values())

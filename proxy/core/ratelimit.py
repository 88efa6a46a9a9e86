"""Rate and connection limits per client address, as ingress-nginx's limit-* annotations
(docs/behaviour.md, "Rate and connection limits").

`RateLimits` is one Ingress's: nginx's `limit_req zone=... burst=... nodelay` for limit-rps and
limit-rpm, `limit_conn ... N` for limit-connections, and the limit-allowlist addresses that none
of them count. `leak` is nginx's limit_req leaky bucket for one client, in nginx's integers:
excess in thousandths of a request, rates in thousandths of a request per second, times in
milliseconds. Pure: the per-worker tables live in proxy/dataplane/limits.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from proxy.core.access import Network, client_address, within

# One client's bucket: (excess in thousandths of a request, when it last passed, in ms).
Bucket = tuple[int, int]

# nginx forgets a client whose bucket has drained and that has not come back for a minute
# (ngx_http_limit_req_expire).
IDLE_MS: Final = 60_000


@dataclass(frozen=True, slots=True)
class RequestRate:
    """One limit_req zone: `rate` thousandths of a request per second (nginx's `ctx->rate`:
    10r/s is 10000, 10r/m is 166), `burst` in thousandths of a request."""

    name: str  # "rps" or "rpm": part of the zone's name
    rate: int
    burst: int
    text: str = ""  # as nginx.conf writes the rate ("10r/s"), for `sticky-proxy routes`


def per_second(requests: int, burst: int) -> RequestRate:
    """limit-rps: `rate=Nr/s`, `burst=` requests beyond it."""
    return RequestRate("rps", requests * 1000, burst * 1000, f"{requests}r/s")


def per_minute(requests: int, burst: int) -> RequestRate:
    """limit-rpm: `rate=Nr/m`, which nginx keeps as N * 1000 / 60 (integer division)."""
    return RequestRate("rpm", requests * 1000 // 60, burst * 1000, f"{requests}r/m")


@dataclass(frozen=True, slots=True)
class RateLimits:
    """One Ingress's limits; every path of the Ingress shares its zones (ingress-nginx names
    them after the Ingress), so `zone` names the Ingress ("Ingress namespace/name")."""

    requests: tuple[RequestRate, ...] = ()  # limit-rps, then limit-rpm, as nginx checks them
    connections: int = 0  # limit-connections: requests at once; 0: no limit
    exempt: tuple[Network, ...] = ()  # limit-allowlist: clients no limit counts
    zone: str = ""

    def counts(self, client: bytes) -> bool:
        """Whether the limits apply to `client`: ingress-nginx's geo map turns an allowlisted
        address into an empty key, which limit_req and limit_conn skip."""
        if not self.exempt:
            return True
        address = client_address(client)
        return address is None or not within(address, self.exempt)


def leak(bucket: Bucket | None, now: int, rate: RequestRate) -> Bucket | None:
    """The client's bucket after one more request at `now` (ms), or None when the request is
    over the burst (and the bucket stays as it was), as ngx_http_limit_req_lookup with
    `nodelay`: a new client starts empty; the excess drains at the rate, grows by one request,
    and may not exceed the burst. The clock going back counts as no time (over a minute back:
    as one millisecond), as in nginx."""
    if bucket is None:
        return 0, now
    excess, last = bucket
    elapsed = now - last
    if elapsed < -IDLE_MS:
        elapsed = 1
    elif elapsed < 0:
        elapsed = 0
    excess = max(excess - rate.rate * elapsed // 1000 + 1000, 0)
    if excess > rate.burst:
        return None
    return excess, (now if elapsed else last)


def forgettable(bucket: Bucket, now: int, rate: RequestRate) -> bool:
    """Whether nginx would drop this bucket to make room: idle for a minute and drained."""
    excess, last = bucket
    idle = abs(now - last)
    return idle >= IDLE_MS and excess - rate.rate * idle // 1000 <= 0

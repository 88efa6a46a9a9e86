"""What every client connection of a process shares: the routing snapshot, the upstream pools,
the load balancing state, metrics, settings, and the set of open connections that shutdown walks.

Both sides of a request use it: the downstream connection for its timeouts and limits, the
exchange for routing, pools, request ids and counting.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections.abc import Callable
from typing import Final, Protocol

from proxy.core.access import RealIp
from proxy.core.balancing import LoadBalance
from proxy.core.errors import NoEndpoint
from proxy.core.headers import Request
from proxy.core.routing import Route, Snapshot
from proxy.dataplane.balancing import Loads
from proxy.dataplane.basic_auth import Verified
from proxy.dataplane.client_auth import Negotiated
from proxy.dataplane.ejection import Ejections
from proxy.dataplane.external_auth import AuthClient
from proxy.dataplane.limits import Limiter
from proxy.dataplane.mirror import Mirrors
from proxy.dataplane.upstream import Dial, Pools, dial_tcp
from proxy.observability.failure_log import FailureLog
from proxy.observability.metrics import Metrics

# Defaults of the flags of the same names (the settings take them from here).
CLIENT_HEADER_TIMEOUT: Final = 60.0  # nginx's client_header_timeout: a whole request head
CLIENT_BODY_TIMEOUT: Final = 60.0  # nginx's client_body_timeout: between two reads of a body
MAX_CONNECTIONS: Final = 16384  # ingress-nginx's max-worker-connections
HTTPS_PORT: Final = 443  # where ssl-redirect sends plain-HTTP clients: https's own port
# ingress-nginx's ConfigMap limit-req-status-code and limit-conn-status-code
LIMIT_STATUS: Final = 503
# At shutdown an idle keep-alive connection may already carry the client's next request: for
# this long it is still answered (with Connection: close) instead of lost with the connection.
IDLE_DRAIN_TIME: Final = 1.0


class NotReady(NoEndpoint):
    """No routing snapshot yet (or any more): 503, like a pod that is not ready."""


class ClientConnection(Protocol):
    """What shutdown needs of an open client connection."""

    def close_if_idle(self) -> None: ...
    def close_now(self) -> None: ...


class ServerContext:
    """What every connection shares: the current snapshot, upstream pools, metrics, the log of
    upstream failures, settings."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        snapshot: Callable[[], Snapshot | None],
        metrics: Metrics,
        *,
        client_header_timeout: float = CLIENT_HEADER_TIMEOUT,
        client_body_timeout: float = CLIENT_BODY_TIMEOUT,
        max_connections: int = MAX_CONNECTIONS,
        https_port: int = HTTPS_PORT,
        underscores_in_headers: bool = False,
        real_ip: RealIp | None = None,
        limit_req_status: int = LIMIT_STATUS,
        limit_conn_status: int = LIMIT_STATUS,
        load_balance: LoadBalance = LoadBalance.ROUND_ROBIN,
        rng: random.Random | None = None,
        now: Callable[[], float] = time.time,
        dial: Dial = dial_tcp,  # how upstream connections open (tests: in memory)
    ) -> None:
        self.loop = loop
        self.snapshot = snapshot
        self.metrics = metrics
        self.failure_log = FailureLog(loop.time)
        self.pools = Pools(loop, dial)
        self.ejections = Ejections(loop, self.pools, metrics)
        self.auth = AuthClient(loop.time)  # external auth's subrequests, and their cache
        self.mirrors = Mirrors(self.auth, loop, metrics)  # mirror-target's copies, on that client
        self.verified = Verified()  # basic authentication's remembered credentials
        self.negotiated = Negotiated()  # auth-tls: the host setting each TLS context verifies for
        self.client_header_timeout = client_header_timeout
        self.client_body_timeout = client_body_timeout
        self.max_connections = max_connections
        # (https's own port goes without saying in a URL)
        self.https_suffix = b"" if https_port == HTTPS_PORT else b":%d" % https_port
        self.underscores_in_headers = underscores_in_headers
        self.real_ip = real_ip  # --use-forwarded-headers: whom to believe about the client
        # limit-* annotations: this worker's tables, and the statuses of refused requests
        self.limiter = Limiter()
        self.limit_req_status = limit_req_status
        self.limit_conn_status = limit_conn_status
        self.rng = rng or random.Random(os.urandom(16))
        self.now = now
        self.loads = Loads(load_balance, self.rng)
        self.pid = os.getpid()
        self._request_ids = b""
        self._request_ids_used = 0
        self.closing = False
        self.connections: set[ClientConnection] = set()
        self._snapshot_seen: Snapshot | None = None

    def route(self, host: str, path: str, request: Request, tls: bool) -> Route | None:
        snapshot = self.snapshot()
        if snapshot is None:
            raise NotReady()
        if snapshot is not self._snapshot_seen:
            # first request on a new table: let go of connections to endpoints no longer in it
            self._snapshot_seen = snapshot
            self.pools.retain(snapshot)
            self.ejections.retain(snapshot.nodes)
            self.limiter.retain(snapshot)
            self.loads.retain(snapshot)
        return snapshot.table.match(host, path, request, tls)

    def new_request_id(self) -> bytes:
        """32 random hex digits, as ingress-nginx's $req_id: cut from a pool filled 256 at a
        time (one slice per request, where formatting a 128-bit number cost twice as much)."""
        start = self._request_ids_used
        if start >= len(self._request_ids):
            self._request_ids = self.rng.randbytes(16 * 256).hex().encode()
            start = 0
        self._request_ids_used = start + 32
        return self._request_ids[start : start + 32]

    def begin_shutdown(self, idle_drain: float = IDLE_DRAIN_TIME) -> None:
        """Stop keep-alive everywhere: busy connections close after their answer, idle ones
        after one more request or, if none comes, in `idle_drain` seconds. (Closed at once, an
        idle connection lost the request a client had just sent on it.)"""
        self.closing = True
        self.loop.call_later(idle_drain, self.close_idle)

    def close_idle(self) -> None:
        for conn in list(self.connections):
            conn.close_if_idle()

"""What metrics and the access log read of a request the proxy answered, in core types only.

The data plane's exchange has every member below itself and is handed over as it is: recording
a request builds no record of it (this runs for every request), and observability never learns
the data plane's classes.
"""

from __future__ import annotations

from mypy_extensions import trait

from proxy.core.affinity import Outcome
from proxy.core.headers import Forwarding, Request
from proxy.core.model import Endpoint
from proxy.core.routing import Route


@trait
class ProxiedRequest:
    """One request: what was asked, where it went, how it was answered. Read when its answer
    begins, when it ends, and when its client leaves first; never written by its readers.

    A mypyc trait that the exchange derives from, not a typing.Protocol: compiled, reading a
    protocol's attribute is a Python attribute lookup, a trait's a native read (a dozen of
    them per request)."""

    __slots__ = ()
    request: Request
    via: Forwarding  # the client connection's facts: its address, the listener's port and scheme
    client: bytes  # the client's address: the peer's, or the one trusted proxies name
    request_id: bytes
    route: Route | None  # None when no route matched (or none was looked up)
    endpoint: Endpoint | None  # the last try's, None before any
    outcome: Outcome | None  # how the last try's endpoint was chosen; None without affinity/try
    cookie_value: str | None  # the affinity cookie the client sent, if any
    new_cookie: str | None  # the affinity cookie value the answer sets, if any
    status: int
    started_at: float  # perf_counter() when the request head was complete
    upstream_started_at: float  # perf_counter() when the first upstream try began; 0.0 without
    upstream_head_bytes: bytes  # the request head as sent upstream
    body_received: int
    sent_head: int  # bytes of the response head relayed to the client
    sent_body: int

"""What metrics and the access log read of a request the proxy answered, in core types only.

The data plane's exchange has every member below itself and is handed over as it is: recording
a request builds no record of it (this runs for every request), and observability never learns
the data plane's classes.
"""

from __future__ import annotations

from typing import Protocol

from proxy.core.affinity import Outcome
from proxy.core.headers import Forwarding, Request
from proxy.core.model import Endpoint
from proxy.core.routing import Route


class ProxiedRequest(Protocol):
    """One request: what was asked, where it went, how it was answered. Read when its answer
    begins, when it ends, and when its client leaves first."""

    @property
    def request(self) -> Request: ...
    @property
    def via(self) -> Forwarding:
        """The client connection's facts: its address, the listener's port and scheme."""

    @property
    def request_id(self) -> bytes: ...
    @property
    def route(self) -> Route | None:
        """None when no route matched (or none was looked up)."""

    @property
    def endpoint(self) -> Endpoint | None:
        """The last try's, None before any."""

    @property
    def outcome(self) -> Outcome | None:
        """How the last try's endpoint was chosen; None without affinity or a try."""

    @property
    def cookie_value(self) -> str | None:
        """The affinity cookie the client sent, if any."""

    @property
    def new_cookie(self) -> str | None:
        """The affinity cookie value the answer sets, if any."""

    @property
    def status(self) -> int: ...
    @property
    def started_at(self) -> float:
        """perf_counter() when the request head was complete."""

    @property
    def upstream_started_at(self) -> float:
        """perf_counter() when the first upstream try began; 0.0 without one."""

    @property
    def upstream_head_bytes(self) -> bytes:
        """The request head as sent upstream."""

    @property
    def body_received(self) -> int: ...
    @property
    def sent_head(self) -> int:
        """Bytes of the response head relayed to the client."""

    @property
    def sent_body(self) -> int: ...

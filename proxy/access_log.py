"""The access log (`--access-log json|combined`): one line per answered request, on stdout.

A request only appends a tuple of its facts to a list; `flush()`, once a second and at shutdown,
formats the lines and writes them in one call. Formatting and the write cost the same either way,
but never inside a request, and never through stdlib logging (about 20 µs a line).
"""

from __future__ import annotations

import json
import re
import sys
import time
from typing import TYPE_CHECKING, TextIO

from proxy.core.model import Route

if TYPE_CHECKING:
    from proxy.exchange import Exchange

FORMATS = ("json", "combined")
FLUSH_LINES = 4096  # or sooner, so a burst does not pile up for a whole second

# (unix time, client, method, host, target, HTTP/1.1?, status, body bytes, seconds,
#  upstream seconds or None, upstream address, route, cluster, outcome, request id, headers)
Entry = tuple[
    float, bytes, bytes, str, bytes, bool, int, int, float, float | None, str, Route | None,
    str, str, bytes, list[tuple[bytes, bytes]],
]  # fmt: skip


class AccessLog:
    def __init__(self, line_format: str, out: TextIO | None = None) -> None:
        self._format = _json_line if line_format == "json" else _combined_line
        self._out = out
        self._entries: list[Entry] = []

    def record(self, exchange: Exchange, end: float) -> None:
        """Called as `exchange` finishes, `end` being its perf_counter() stamp."""
        request = exchange.request
        endpoint = exchange.endpoint
        route = exchange.route
        upstream = exchange.upstream_started_at
        self._entries.append((
            time.time(),
            exchange.conn.via.client_ip,
            request.method,
            request.host,
            request.target,
            request.http11,
            exchange.status,
            exchange.sent_body,
            end - exchange.started_at,
            end - upstream if upstream else None,
            endpoint.node if endpoint is not None else "",
            route,
            route.cluster.name if route is not None else "",
            exchange.outcome or "",
            exchange.request_id,
            request.forward,
        ))  # fmt: skip
        if len(self._entries) >= FLUSH_LINES:
            self.flush()

    def flush(self) -> None:
        if not self._entries:
            return
        entries, self._entries = self._entries, []
        out = self._out or sys.stdout  # looked up late: tests and daemons swap stdout
        out.write("".join(map(self._format, entries)))
        out.flush()


def _header(headers: list[tuple[bytes, bytes]], name: bytes) -> str | None:
    for key, value in headers:
        if key.lower() == name:
            return value.decode("latin-1")
    return None


def _json_line(entry: Entry) -> str:
    (at, client, method, host, target, _, status, sent, seconds, upstream_seconds,
     upstream, route, cluster, outcome, request_id, headers) = entry  # fmt: skip
    record = {
        "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(at)) + f".{int(at % 1 * 1000):03d}Z",
        "client": client.decode("latin-1"),
        "method": method.decode("latin-1"),
        "host": host,
        "path": target.decode("latin-1"),
        "status": status,
        "bytes": sent,
        "duration": round(seconds, 6),
        "upstream_duration": None if upstream_seconds is None else round(upstream_seconds, 6),
        "upstream": upstream or None,
        "route": f"{route.host or '*'}{route.path}" if route is not None else None,
        "ingress": f"{route.namespace}/{route.ingress}" if route and route.ingress else None,
        "cluster": cluster or None,
        "outcome": outcome or None,
        "request_id": request_id.decode("latin-1"),
        "user_agent": _header(headers, b"user-agent"),
        "referer": _header(headers, b"referer"),
    }
    return json.dumps(record, separators=(",", ":")) + "\n"


def _combined_line(entry: Entry) -> str:
    """nginx's `combined`: $remote_addr - $remote_user [$time_local] "$request" $status
    $body_bytes_sent "$http_referer" "$http_user_agent"."""
    at, client, method, _, target, http11, status, sent, *_, headers = entry
    local = time.strftime("%d/%b/%Y:%H:%M:%S %z", time.localtime(at))
    request = f"{method.decode('latin-1')} {target.decode('latin-1')} HTTP/1.{int(http11)}"
    referer = _escape(_header(headers, b"referer") or "-")
    agent = _escape(_header(headers, b"user-agent") or "-")
    return (
        f'{client.decode("latin-1")} - - [{local}] "{_escape(request)}" {status} {sent} '
        f'"{referer}" "{agent}"\n'
    )


_UNSAFE = re.compile(r'["\\\x00-\x1f\x7f-\xff]')


def _escape(text: str) -> str:
    """As nginx's default log escaping: `"`, `\\` and bytes outside printable ASCII as \\xHH."""
    return _UNSAFE.sub(lambda match: f"\\x{ord(match.group()):02X}", text)

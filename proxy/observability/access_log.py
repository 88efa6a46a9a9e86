"""The access log (`--access-log json|combined`): one line per answered request, on stdout.

A request only appends a tuple of its facts to a list; `flush()`, once a second and at shutdown,
formats the lines and writes them in one call. Formatting and the write cost the same either way,
but never inside a request, and never through stdlib logging (about 20 µs a line).
"""

from __future__ import annotations

import re
import sys
import time
from functools import lru_cache
from json.encoder import encode_basestring
from typing import TextIO

from proxy.core.model import Endpoint
from proxy.core.routing import Route
from proxy.observability.proxied_request import ProxiedRequest

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

    def record(self, exchange: ProxiedRequest, end: float) -> None:
        """Called as `exchange` finishes, `end` being its perf_counter() stamp."""
        request = exchange.request
        endpoint = exchange.endpoint
        route = exchange.route
        upstream = exchange.upstream_started_at
        self._entries.append((
            time.time(),
            exchange.client,
            request.method,
            request.host,
            request.target,
            request.http11,
            exchange.status,
            exchange.sent_body,
            end - exchange.started_at,
            end - upstream if upstream else None,
            _node(endpoint) if endpoint is not None else "",
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


@lru_cache(maxsize=4096)
def _node(endpoint: Endpoint) -> str:
    return endpoint.node  # computed on each read: worth remembering for the few endpoints there are


def _header(headers: list[tuple[bytes, bytes]], name: bytes) -> str | None:
    for key, value in headers:
        if key.lower() == name:
            return value.decode("latin-1")
    return None


def _json_line(entry: Entry) -> str:
    """One JSON object, written out: json.dumps of a dict costs three times as much."""
    (at, client, method, host, target, _, status, sent, seconds, upstream_seconds,
     upstream, route, cluster, outcome, request_id, headers) = entry  # fmt: skip
    path = ingress = None
    if route is not None:
        path = (route.host or "*") + route.path
        if route.ingress:
            ingress = f"{route.namespace}/{route.ingress}"
    upstream_time = "null" if upstream_seconds is None else f"{upstream_seconds:.6f}"
    return (
        f'{{"time":"{_utc(int(at))}.{int(at % 1 * 1000):03d}Z",'
        f'"client":{_string(client.decode("latin-1"))},'
        f'"method":{_string(method.decode("latin-1"))},"host":{_string(host)},'
        f'"path":{_string(target.decode("latin-1"))},"status":{status},"bytes":{sent},'
        f'"duration":{seconds:.6f},'
        f'"upstream_duration":{upstream_time},"upstream":{_string(upstream or None)},'
        f'"route":{_string(path)},"ingress":{_string(ingress)},'
        f'"cluster":{_string(cluster or None)},"outcome":{_string(outcome or None)},'
        f'"request_id":{_string(request_id.decode("latin-1"))},'
        f'"user_agent":{_string(_header(headers, b"user-agent"))},'
        f'"referer":{_string(_header(headers, b"referer"))}}}\n'
    )


def _string(text: str | None) -> str:
    return "null" if text is None else encode_basestring(text)  # C: quoted and escaped


@lru_cache(maxsize=2)
def _utc(second: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))


@lru_cache(maxsize=2)
def _local(second: int) -> str:
    return time.strftime("%d/%b/%Y:%H:%M:%S %z", time.localtime(second))


def _combined_line(entry: Entry) -> str:
    """nginx's `combined`: $remote_addr - $remote_user [$time_local] "$request" $status
    $body_bytes_sent "$http_referer" "$http_user_agent"."""
    at, client, method, _, target, http11, status, sent, *_, headers = entry
    local = _local(int(at))
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

"""The built-in load generator, for machines without wrk: a fixed number of keep-alive
connections for a fixed time, each sending its next request when the previous response ends.

`python -m bench.loadgen --url URL --connections N --duration S [--header "K: V" ...]` prints one
`BENCH-RESULT {json}` line like bench/load.py's wrk script. Python is slower than wrk, so on a fast
proxy this generator may be the limit; bench/run.py says so when it is used.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import cast
from urllib.parse import urlsplit

import httptools
import uvloop

from bench.load import REQUEST_TIMEOUT_S, RESULT_MARK

CONNECT_TIMEOUT_S = 5.0


@dataclass
class Stats:
    latencies_ns: list[int] = field(default_factory=list)
    bytes: int = 0
    errors: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(("connect", "read", "write", "timeout", "status"), 0)
    )


class Client(asyncio.Protocol):
    """One keep-alive connection: request, wait for the whole response, next request."""

    def __init__(self, request: bytes, stats: Stats, deadline: float) -> None:
        self.request = request
        self.stats = stats
        self.deadline = deadline
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.sent_at = 0
        self.in_flight = False
        self.closed = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport, though they implement it.
        self.transport = cast(asyncio.Transport, transport)
        self._send()

    def _send(self) -> None:
        assert self.transport is not None
        if time.monotonic() >= self.deadline:
            self.transport.close()
            return
        self.in_flight = True
        self.sent_at = time.perf_counter_ns()
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        self.stats.bytes += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.stats.errors["read"] += 1
            if self.transport is not None:
                self.transport.close()

    def on_message_complete(self) -> None:
        self.stats.latencies_ns.append(time.perf_counter_ns() - self.sent_at)
        self.in_flight = False
        if not 200 <= self.parser.get_status_code() < 300:
            self.stats.errors["status"] += 1
        if self.parser.should_keep_alive():
            self._send()
        elif self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.in_flight:
            self.stats.errors["read"] += 1
        if not self.closed.done():
            self.closed.set_result(None)

    def stop(self) -> None:
        if self.in_flight:
            self.stats.errors["timeout"] += 1
            self.in_flight = False
        if self.transport is not None:
            self.transport.close()


def build_request(url: str, headers: list[str]) -> tuple[str, int, bytes]:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    lines = [f"GET {target} HTTP/1.1", f"Host: {parts.netloc}", *headers]
    return host, port, ("\r\n".join(lines) + "\r\n\r\n").encode()


async def connection(host: str, port: int, request: bytes, stats: Stats, deadline: float) -> None:
    """Keep one connection busy until the deadline, reconnecting if the server closes it."""
    loop = asyncio.get_running_loop()
    while time.monotonic() < deadline:
        try:
            _, client = await asyncio.wait_for(
                loop.create_connection(lambda: Client(request, stats, deadline), host, port),
                CONNECT_TIMEOUT_S,
            )
        except (OSError, TimeoutError):
            stats.errors["connect"] += 1
            await asyncio.sleep(0.1)
            continue
        try:
            await asyncio.wait_for(
                asyncio.shield(client.closed), deadline - time.monotonic() + REQUEST_TIMEOUT_S
            )
        except TimeoutError:
            client.stop()
            return


async def generate(url: str, connections: int, duration: int, headers: list[str]) -> str:
    host, port, request = build_request(url, headers)
    stats = Stats()
    started = time.monotonic()
    deadline = started + duration
    await asyncio.gather(
        *(connection(host, port, request, stats, deadline) for _ in range(connections))
    )
    return result_line(stats, time.monotonic() - started)


def result_line(stats: Stats, elapsed_s: float) -> str:
    latencies = sorted(stats.latencies_ns) or [0]

    def percentile_us(fraction: float) -> int:
        return latencies[min(len(latencies) - 1, int(fraction * len(latencies)))] // 1000

    raw = {
        "requests": len(stats.latencies_ns),
        "duration_us": int(elapsed_s * 1e6),
        "bytes": stats.bytes,
        **stats.errors,
        "p50_us": percentile_us(0.50),
        "p90_us": percentile_us(0.90),
        "p99_us": percentile_us(0.99),
        "p999_us": percentile_us(0.999),
        "mean_us": sum(latencies) / len(latencies) / 1000,
        "max_us": latencies[-1] // 1000,
    }
    return RESULT_MARK + json.dumps(raw)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.loadgen", allow_abbrev=False)
    parser.add_argument("--url", required=True)
    parser.add_argument("--connections", type=int, required=True)
    parser.add_argument("--duration", type=int, required=True)
    parser.add_argument("--header", action="append", default=[])
    args = parser.parse_args()
    print(uvloop.run(generate(args.url, args.connections, args.duration, args.header)))


if __name__ == "__main__":
    main()

"""The copies of mirror-target (docs/behaviour.md, "Mirroring"): sent in tasks on the worker's
HTTP client (external auth's), their answers read and dropped, never waited for by the request
they copy. A worker holds at most MAX_IN_FLIGHT copies and MAX_BODY_BYTES of their bodies at once;
a copy beyond either is dropped and counted, so a slow or dead target costs bounded memory.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Final

import aiohttp
from yarl import URL

from proxy.core.mirror import Mirror
from proxy.dataplane.external_auth import AuthClient
from proxy.observability.failure_log import RateLimit
from proxy.observability.metrics import Metrics

log = logging.getLogger(__name__)

MAX_IN_FLIGHT: Final = 64
MAX_BODY_BYTES: Final = 8 * 1024 * 1024
# A body kept for a copy at most; a longer one is not copied (ingress-nginx's default
# proxy-body-size, 1m, refuses longer ones before they get that far)
BODY_LIMIT: Final = 1024 * 1024
# The copy's timeouts: ingress-nginx's defaults (proxy-connect-timeout 5 s; read and send 60 s),
# which its mirror location, outside every Ingress location, takes
CONNECT_TIMEOUT: Final = 5.0
READ_TIMEOUT: Final = 60.0


class Mirrors:
    """A worker's copies in flight, and what became of the others."""

    def __init__(
        self, client: AuthClient, loop: asyncio.AbstractEventLoop, metrics: Metrics
    ) -> None:
        self._client = client
        self._metrics = metrics
        self._tasks: set[asyncio.Task[None]] = set()
        self._body_bytes = 0
        self._failures = RateLimit(loop.time)  # a log line per target per second at most
        self.sent = 0  # answered (whatever the status)
        self.failed = 0  # no answer: refused, reset, timed out
        self.dropped = 0  # over the caps, or a body too long to keep

    def send(
        self, target: str, method: str, url: str, headers: list[tuple[str, str]], body: bytes
    ) -> None:
        """Send a copy to `url` (for mirror-target `target`) unless the caps say no."""
        if len(self._tasks) >= MAX_IN_FLIGHT or self._body_bytes + len(body) > MAX_BODY_BYTES:
            self.drop(target)
            return
        self._body_bytes += len(body)
        task = asyncio.ensure_future(self._send(target, method, url, headers, body))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def drop(self, target: str) -> None:
        self.dropped += 1
        self._metrics.count_mirror_copy("dropped")
        self._log(target, f"dropped ({MAX_IN_FLIGHT} copies in flight, or a body over the limits)")

    async def _send(
        self, target: str, method: str, url: str, headers: list[tuple[str, str]], body: bytes
    ) -> None:
        timeout = aiohttp.ClientTimeout(sock_connect=CONNECT_TIMEOUT, sock_read=READ_TIMEOUT)
        try:
            async with self._client.session().request(
                method,
                URL(url, encoded=True),
                headers=headers,
                data=body or None,
                allow_redirects=False,
                timeout=timeout,
            ) as response:
                async for _ in response.content.iter_chunked(65536):
                    pass  # (read to the end, the connection can be kept for the next copy)
            self.sent += 1
            self._metrics.count_mirror_copy("answered")
        except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as error:
            self.failed += 1
            self._metrics.count_mirror_copy("failed")
            self._log(target, f"failed: {error or type(error).__name__}")
        finally:
            self._body_bytes -= len(body)

    def _log(self, target: str, what: str) -> None:
        held_back = self._failures.admit(target)
        if held_back is not None:
            more = f" ({held_back} more since the last line, not logged)" if held_back else ""
            log.warning("mirror copy to %s %s%s", target, what, more)

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    async def close(self) -> None:
        """Cancel the copies still in flight (at shutdown)."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


class MirrorCopy:
    """One request's copy until it goes: its body as it arrives (when the mirror takes it),
    whether the request passed every check (nginx mirrors in its precontent phase, after
    access), and whether the body is whole."""

    __slots__ = ("body", "mirror", "parts", "passed", "size")

    def __init__(self, mirror: Mirror, received: list[bytes] | None) -> None:
        """`received`: what of the body arrived before the copy was made; None when it cannot be
        told (a chunked body already framed for the upstream)."""
        self.mirror = mirror
        self.body = mirror.body
        self.parts: list[bytes] | None = received if mirror.body else []
        self.size = sum(map(len, received or ()))
        if self.size > BODY_LIMIT:
            self.parts = None
        self.passed = False

    def add(self, data: bytes) -> None:
        """More of the body (called only when the mirror takes it)."""
        parts = self.parts
        if parts is None:
            return
        self.size += len(data)
        if self.size > BODY_LIMIT:
            self.parts = None  # too long to keep: the copy is dropped
        else:
            parts.append(data)

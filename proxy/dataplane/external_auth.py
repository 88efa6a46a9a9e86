"""The subrequests of external authentication (docs/behaviour.md, "External authentication").

aiohttp's client rather than the proxy's own upstream pools: an auth URL names a host by DNS
name, maybe over https, where the pools hold connections to endpoint addresses the snapshot
lists; aiohttp resolves, speaks TLS and keeps connections alive already. One session per worker
process, made on the first subrequest on the running loop, closed at shutdown; beside it the
worker's cache of answers for auth-cache-key.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import aiohttp
from yarl import URL

from proxy.core.external_auth import COOKIE_STATUSES, AuthCache, ExternalAuth, cache_seconds
from proxy.core.headers import Request
from proxy.observability.failure_log import RateLimit

log = logging.getLogger(__name__)

# An auth answer's body is not used: read (to keep the connection) only when it is this small.
_BODY_KEPT: Final = 64 * 1024
# auth-cache-key: answers kept per worker at most (the oldest goes first); nginx's auth_cache
# zone holds 10 MB of keys, shared by the workers
CACHE_ENTRIES: Final = 10_000

# (the location's host, path and path type, the request's auth-cache-key): nginx's cache key is
# the server name, the auth location (named after the path and its type) and the key
CacheKey = tuple[str | None, str, str, str]


@dataclass(frozen=True, slots=True)
class AuthCheck:
    """One subrequest: where to, how, and with which headers."""

    url: str
    method: str
    headers: list[tuple[str, str]]
    connect_timeout: float
    read_timeout: float


@dataclass(frozen=True, slots=True)
class AuthAnswer:
    """The auth service's status (0: it could not be asked, or did not answer in time) and
    its headers as received."""

    status: int
    headers: list[tuple[bytes, bytes]]


AuthDone = Callable[[AuthAnswer], None]


class AuthClient:
    """A worker's client for auth subrequests."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._session: aiohttp.ClientSession | None = None
        self._clock = clock
        self._cache: dict[CacheKey, tuple[float, AuthAnswer]] = {}  # by key: (until, answer)
        self._failures = RateLimit(clock)  # a line per auth URL per second, as for upstreams

    def cached(self, key: CacheKey) -> AuthAnswer | None:
        """The answer kept for `key`, if it still stands."""
        entry = self._cache.get(key)
        if entry is None:
            return None
        if entry[0] <= self._clock():
            del self._cache[key]
            return None
        return entry[1]

    def ask(
        self, check: AuthCheck, done: AuthDone, cache: AuthCache | None = None,
        key: CacheKey | None = None,
    ) -> asyncio.Task[None]:  # fmt: skip
        """Make the subrequest in a task; `done` gets the answer unless the task is cancelled
        (the client went away). With `cache`, an answer it keeps is kept under `key`."""
        return asyncio.ensure_future(self._ask(check, done, cache, key))

    async def _ask(
        self, check: AuthCheck, done: AuthDone, cache: AuthCache | None, key: CacheKey | None
    ) -> None:
        answer = await self._answer(check)
        if cache is not None and key is not None:
            self._keep(key, answer, cache_seconds(cache, answer.status, answer.headers))
        done(answer)

    def _keep(self, key: CacheKey, answer: AuthAnswer, seconds: float) -> None:
        if seconds <= 0:
            return
        cache = self._cache
        cache.pop(key, None)  # (re-inserted last: the newest)
        if len(cache) >= CACHE_ENTRIES:
            del cache[next(iter(cache))]
        cache[key] = (self._clock() + seconds, answer)

    async def _answer(self, check: AuthCheck) -> AuthAnswer:
        timeout = aiohttp.ClientTimeout(
            sock_connect=check.connect_timeout, sock_read=check.read_timeout
        )
        try:
            async with self.session().request(
                check.method,
                URL(check.url, encoded=True),
                headers=check.headers,
                allow_redirects=False,
                timeout=timeout,
            ) as response:
                length = response.content_length
                if length is not None and length <= _BODY_KEPT:
                    await response.read()
                return AuthAnswer(response.status, list(response.raw_headers))
        except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as error:
            # nginx answers such a subrequest 502 or 504 itself, and the request 500
            held_back = self._failures.admit(check.url)
            if held_back is not None:
                more = f" ({held_back} more since the last line, not logged)" if held_back else ""
                log.warning("external auth %s failed: %s%s",
                            check.url, error or type(error).__name__, more)  # fmt: skip
            return AuthAnswer(0, [])

    def session(self) -> aiohttp.ClientSession:
        """The worker's HTTP client, made on first use (mirrors use it too)."""
        session = self._session
        if session is None:
            # No verification of the auth service's certificate, with SNI: nginx's
            # proxy_ssl_verify off and ingress-nginx's proxy_ssl_server_name on. No cookie jar:
            # one client's cookies must never reach another's subrequest. No limit on
            # connections: each waiting request holds one, as nginx's subrequests do.
            connector = aiohttp.TCPConnector(ssl=False, limit=0)
            session = self._session = aiohttp.ClientSession(
                connector=connector,
                cookie_jar=aiohttp.DummyCookieJar(),
                skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding"),
                auto_decompress=False,
            )
        return session

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()


class AuthState:
    """An exchange's external authentication: the subrequest under way, then the auth
    service's Set-Cookie lines for the answer."""

    __slots__ = ("always", "challenge", "cookies", "forwarded", "policy", "refused", "task")

    def __init__(
        self, policy: ExternalAuth, forwarded: Request, refused: int = -1, challenge: bytes = b""
    ) -> None:
        self.policy = policy
        self.forwarded = forwarded  # what the upstream is to be sent once the request passes
        # satisfy any (docs/behaviour.md, "satisfy"): what the checks before refused with (401,
        # 403; 0: they did not decide; -1: satisfy all), and basic authentication's challenge
        self.refused = refused
        self.challenge = challenge
        self.task: asyncio.Task[None] | None = None
        self.cookies = b""
        self.always = policy.always_set_cookie

    def lines(self, status: int) -> bytes:
        """The auth service's Set-Cookie lines for an answer with `status`: add_header's
        statuses, or every one with auth-always-set-cookie."""
        return self.cookies if self.always or status in COOKIE_STATUSES else b""

    def cancel(self) -> None:
        if self.task is not None:
            self.task.cancel()
            self.task = None

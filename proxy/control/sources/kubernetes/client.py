"""The API server's wire format over aiohttp: JSON requests, and watch streams of JSON lines.

Every failure becomes one of three errors with a one-line message: `ApiError` (the server
answered with a Status, as an HTTP error or as an ERROR event in a watch), `Disconnected` (no
answer, or the connection broke; `Stalled` when nothing arrived for too long), and
`CredentialError` (no credentials to send). A 401 renews the credentials and retries once.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

from proxy.control.sources.kubernetes.auth import Auth, Credentials
from proxy.control.sources.kubernetes.config import ClusterAccess
from proxy.control.sources.kubernetes.events import (
    LineSplitter,
    StreamError,
    WatchEvent,
    decode_event,
)

REQUEST_TIMEOUT = 60.0  # a list page or a status write; watches have no total timeout
CONNECT_TIMEOUT = 10.0
# Decoding a list page of a few MB takes tens of milliseconds: off the event loop, where
# requests are being proxied, when it is that big.
DECODE_IN_THREAD_BYTES = 256 * 1024
ERROR_BODY_LIMIT = 64 * 1024


class KubeError(Exception):
    """A request to the API server failed; the message is one line."""


class Disconnected(KubeError):
    """No answer, or the connection broke before the answer was whole."""


class Stalled(Disconnected):
    """A watch received nothing for longer than the server's bookmark period: a dead connection
    that no FIN or RST announced (a NAT or load balancer forgot it)."""


@dataclass(eq=False)  # an exception compares by identity
class ApiError(KubeError):
    """A `Status` from the server: an HTTP error status, or an ERROR event in a watch."""

    code: int
    reason: str
    message: str
    retry_after: float | None = None  # seconds, from Retry-After or details.retryAfterSeconds
    causes: tuple[str, ...] = ()  # details.causes[].reason

    def __str__(self) -> str:
        return f"{self.code} {self.reason}: {self.message}" if self.message else str(self.code)

    @property
    def expired(self) -> bool:
        """410 Gone: the resourceVersion (or continue token) fell out of the server's history.
        Keyed on the code alone: the reason is `Expired`, or `Gone` from older servers."""
        return self.code == 410

    @classmethod
    def from_status(
        cls, status: Mapping[str, Any], http_status: int | None = None, retry_after: str = ""
    ) -> ApiError:
        details = status.get("details")
        details = details if isinstance(details, Mapping) else {}
        causes = details.get("causes")
        code = status.get("code")
        seconds = _seconds(retry_after) or _seconds(details.get("retryAfterSeconds"))
        return cls(
            code=code if isinstance(code, int) and code else (http_status or 500),
            reason=str(status.get("reason") or ""),
            message=str(status.get("message") or ""),
            retry_after=seconds,
            causes=tuple(
                str(cause.get("reason"))
                for cause in (causes if isinstance(causes, list) else ())
                if isinstance(cause, Mapping) and cause.get("reason")
            ),
        )


def _seconds(value: object) -> float | None:
    try:
        seconds = float(value) if isinstance(value, int | float | str) and value != "" else None
    except ValueError:
        return None  # an HTTP date: rare from the API server, and a backoff follows anyway
    return seconds if seconds is not None and seconds >= 0 else None


class KubeClient:
    """One aiohttp session to one API server; the TLS identity may change per request (an exec
    plugin's new certificate), which the connection pool keys on."""

    def __init__(self, access: ClusterAccess, credentials: Credentials) -> None:
        self._server = access.server
        self._server_hostname = access.tls_server_name
        self._credentials = credentials
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=CONNECT_TIMEOUT),
            headers={"Accept": "application/json", "User-Agent": "sticky-proxy"},
            cookie_jar=aiohttp.DummyCookieJar(),
        )

    async def close(self) -> None:
        await self._session.close()

    async def __aenter__(self) -> KubeClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def get(self, path: str, params: Mapping[str, str] | None = None) -> dict[str, Any]:
        return await _read_json(await self._send("GET", path, params), f"GET {path}")

    async def merge_patch(self, path: str, patch: Mapping[str, Any]) -> dict[str, Any]:
        body = json.dumps(patch).encode()
        response = await self._send(
            "PATCH", path, None, body=body, content_type="application/merge-patch+json"
        )
        return await _read_json(response, f"PATCH {path}")

    async def watch(
        self, path: str, params: Mapping[str, str], inactivity: float
    ) -> AsyncGenerator[WatchEvent, None]:
        """The events of a watch, as they arrive, until the server ends the stream.

        Raises ApiError for an HTTP error, or for an ERROR event (after which the server ends the
        stream anyway); Disconnected when the stream breaks, Stalled when it goes silent for
        `inactivity` seconds. A partial last line (a cut connection) is never an event.
        """
        response = await self._send("GET", path, {**params, "watch": "true"}, timeout=None)
        splitter = LineSplitter()
        try:
            while True:
                try:
                    async with asyncio.timeout(inactivity):
                        chunk = await response.content.readany()
                except TimeoutError:
                    raise Stalled(f"watch {path}: nothing received for {inactivity:g} s") from None
                if not chunk:
                    if splitter.pending:
                        raise Disconnected(f"watch {path}: the stream ended inside an event")
                    return
                for line in splitter.feed(chunk):
                    event = decode_event(line)
                    if event.type == "ERROR":
                        raise ApiError.from_status(event.object)
                    yield event
        except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError, OSError) as error:
            raise Disconnected(f"watch {path}: {_describe(error)}") from None
        except StreamError as error:
            raise Disconnected(f"watch {path}: {error}") from None
        finally:
            response.close()  # a watch left unread cannot go back to the pool

    async def _send(
        self,
        method: str,
        path: str,
        params: Mapping[str, str] | None,
        *,
        body: bytes | None = None,
        content_type: str | None = None,
        timeout: float | None = REQUEST_TIMEOUT,
    ) -> aiohttp.ClientResponse:
        """The response, once its status is a success; a 401 renews credentials and retries."""
        extra = {"Content-Type": content_type} if content_type else {}

        async def attempt(auth: Auth) -> aiohttp.ClientResponse:
            try:
                # The head comes at once even for a watch (the server flushes it before any
                # event); `timeout` bounds the whole answer, which a watch does not have.
                async with asyncio.timeout(REQUEST_TIMEOUT):
                    return await self._session.request(
                        method,
                        self._server + path,
                        params=params,
                        data=body,
                        headers={**auth.headers, **extra},
                        ssl=auth.ssl,
                        server_hostname=self._server_hostname,
                        timeout=aiohttp.ClientTimeout(total=timeout, sock_connect=CONNECT_TIMEOUT),
                    )
            except (aiohttp.ClientError, OSError, TimeoutError) as error:
                raise Disconnected(f"{method} {path}: {_describe(error)}") from None

        auth = await self._credentials.current()
        response = await attempt(auth)
        if response.status == 401:
            response.release()
            await self._credentials.renew_after_unauthorized(auth)
            response = await attempt(await self._credentials.current())
        if response.status >= 400:
            raise await _status_error(response)
        return response


async def _read_json(response: aiohttp.ClientResponse, request: str) -> dict[str, Any]:
    try:
        data = await response.read()
    except (aiohttp.ClientError, OSError, TimeoutError) as error:
        raise Disconnected(f"{request}: {_describe(error)}") from None
    finally:
        response.release()
    try:
        document = (
            await asyncio.to_thread(json.loads, data)
            if len(data) > DECODE_IN_THREAD_BYTES
            else json.loads(data)
        )
    except ValueError:
        raise Disconnected(f"{request}: the answer is not JSON") from None
    if not isinstance(document, dict):
        raise Disconnected(f"{request}: the answer is not a JSON object")
    return document


async def _status_error(response: aiohttp.ClientResponse) -> ApiError:
    try:
        body = await response.content.read(ERROR_BODY_LIMIT)
        status = json.loads(body)
    except (aiohttp.ClientError, OSError, TimeoutError, ValueError):
        status = None
    finally:
        response.release()
    if not isinstance(status, dict) or status.get("kind") != "Status":
        status = {"code": response.status, "reason": response.reason or "", "message": ""}
    return ApiError.from_status(status, response.status, response.headers.get("Retry-After", ""))


def _describe(error: BaseException) -> str:
    if isinstance(error, TimeoutError):
        return "timed out"
    return str(error) or type(error).__name__

"""Correctness before speed: fetch each target's affinity cookie, and check that a scenario's
requests get the answers they should (status, body from a known backend, cookie behaviour)."""

from __future__ import annotations

import http.client
import json
from collections.abc import Collection
from dataclasses import dataclass

from bench.configs import ONE_MB, ONE_MB_PATH
from bench.procs import BenchError
from bench.scenarios import Headers

PROBE_REQUESTS = 3


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    set_cookies: list[str]
    body: bytes


def fetch_all(port: int, path: str, headers: Headers, count: int) -> list[Reply]:
    """`count` GETs on one keep-alive connection, as a benchmark client sends them."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        replies = []
        for _ in range(count):
            conn.request("GET", path, headers=dict(headers))
            response = conn.getresponse()
            body = response.read()
            cookies = response.headers.get_all("Set-Cookie") or []
            replies.append(Reply(response.status, cookies, body))
        return replies
    finally:
        conn.close()


def cookie_value(set_cookies: list[str], name: str) -> str | None:
    for header in set_cookies:
        pair = header.split(";", 1)[0].strip()
        if pair.startswith(name + "="):
            return pair[len(name) + 1 :]
    return None


def first_reply(port: int, who: str) -> Reply:
    """One GET / at startup; BenchError (one line) if the target cannot answer it."""
    try:
        (reply,) = fetch_all(port, "/", (), 1)
    except (OSError, http.client.HTTPException) as error:
        raise BenchError(f"{who} on 127.0.0.1:{port} did not answer GET /: {error!r}") from None
    if reply.status != 200:
        raise BenchError(f"{who} on 127.0.0.1:{port} answered GET / with {reply.status}")
    return reply


def affinity_cookie(port: int, name: str, who: str) -> str | None:
    """The cookie value a new client gets from this proxy (None: it sets none)."""
    return cookie_value(first_reply(port, who).set_cookies, name)


def _identity(reply: Reply, path: str, uuids: Collection[str]) -> tuple[str | None, str | None]:
    """(backend uuid or None, problem or None) for one 200 reply."""
    if path == ONE_MB_PATH:
        size = len(reply.body)
        return None, None if size == ONE_MB else f"body of {size} bytes, not 1 MiB"
    try:
        uuid = json.loads(reply.body)["uuid"]
    except (ValueError, KeyError, TypeError):
        return None, f"unexpected body {reply.body[:60]!r}"
    return uuid, None if uuid in uuids else f"uuid {uuid} is from no backend"


def probe(
    *,
    port: int,
    path: str,
    headers: Headers,
    uuids: Collection[str],
    cookie_name: str,
    affinity: str | None,
) -> list[str]:
    """What is wrong with this target's answers to this scenario (empty: nothing).

    `affinity` is None for the direct backend, "sticky" when the requests carry the target's
    cookie (one backend, no new cookie), "new" when they carry none (a new cookie every time).
    """
    try:
        replies = fetch_all(port, path, headers, PROBE_REQUESTS)
    except (OSError, http.client.HTTPException) as error:
        return [f"request failed: {error}"]
    problems, seen = [], set()
    for reply in replies:
        if reply.status != 200:
            problems.append(f"status {reply.status}")
            continue
        uuid, problem = _identity(reply, path, uuids)
        seen.add(uuid)
        if problem:
            problems.append(problem)
        new_cookie = cookie_value(reply.set_cookies, cookie_name)
        if affinity == "sticky" and new_cookie is not None:
            problems.append("a new cookie although the request carried a valid one")
        if affinity == "new" and new_cookie is None:
            problems.append("no Set-Cookie for a client without the cookie")
    if affinity == "sticky" and len(seen) > 1:
        problems.append(f"one cookie reached {len(seen)} backends")
    return sorted(set(problems))

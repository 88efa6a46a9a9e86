"""The demo through the proxy in a real headless Chromium: the session a person sees.

Three demo backends (the `sticky-backend` app, each with its own uuid and colour) behind the proxy
on loopback. The browser reaches them as http(s)://sticky.info, the walkthrough's host, mapped to
127.0.0.1 by Chromium's host resolver: for 127.0.0.1 or localhost Chromium treats plain HTTP as a
secure origin and would keep Secure cookies there, which no real site gets.
"""

from __future__ import annotations

import asyncio
import shlex
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from aiohttp import web

from backend.app import create_app
from proxy.app.runtime import ProxyServer
from proxy.core.cookies import CookieSettings
from proxy.core.model import Affinity, Endpoint
from proxy.core.values import Address
from proxy.dataplane.tls_contexts import load_default_certificate
from tests.certs import self_signed
from tests.integration.browser import Page, chromium, open_page
from tests.integration.conftest import StartProxy

HOST = "sticky.info"
# Hues 0, 120 and 240 (the page's colour comes from the uuid's first two bytes): three backends
# a person tells apart at a glance, and a test by colour alone.
BACKENDS = tuple(
    UUID(f"{prefix}0000-0000-4000-8000-000000000000") for prefix in ("0000", "5556", "aaab")
)
# What the page shows: its uuid and the colour of the box around it; null until the document
# that replaced the one marked `stale` has rendered.
SHOWN = """(() => {
  if (window.stale || document.readyState !== "complete") return null;  // (half a page: wait)
  const box = document.querySelector(".uuid");
  return box && {uuid: box.textContent, colour: getComputedStyle(box).backgroundColor};
})()"""


@dataclass(frozen=True)
class Shown:
    uuid: UUID
    colour: str


@pytest.fixture
async def demo_backends() -> AsyncIterator[list[Endpoint]]:
    runners = [web.AppRunner(create_app(uuid), access_log=None) for uuid in BACKENDS]
    endpoints = []
    try:
        for runner in runners:
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            endpoints.append(Endpoint("127.0.0.1", runner.addresses[0][1]))
        yield endpoints
    finally:
        for runner in runners:
            await runner.cleanup()


@pytest.fixture
def browser_executable(tmp_path: Path) -> str:
    """Chromium, with sticky.info resolving to 127.0.0.1 (the walkthrough's /etc/hosts line)."""
    executable = chromium()
    if executable is None:
        pytest.skip("Chromium is not installed here (apt-get install chromium; .ci/run does it)")
    # open_page takes the executable alone; a wrapper adds the one flag this test needs.
    wrapper = tmp_path / "chromium"
    rule = shlex.quote(f"--host-resolver-rules=MAP {HOST} 127.0.0.1")
    wrapper.write_text(f'#!/bin/sh\nexec {shlex.quote(executable)} {rule} "$@"\n')
    wrapper.chmod(0o755)
    return str(wrapper)


@pytest.fixture
async def page(browser_executable: str, tmp_path: Path) -> AsyncIterator[Page]:
    profile = tmp_path / "profile"  # a fresh profile: an empty cookie jar
    profile.mkdir()
    async with open_page(browser_executable, "about:blank", profile) as tab:
        # The proxy's test certificate is self-signed; what is tested is the cookie, not trust.
        await tab.call("Security.setIgnoreCertificateErrors", ignore=True)
        yield tab


async def start_demo(
    proxy: StartProxy, backends: list[Endpoint], tmp_path: Path, **cookie: Any
) -> ProxyServer:
    """The proxy as `serve --backend ... --tls-cert ... --session-cookie-name key [...]`."""
    chain, key = self_signed(HOST)
    (tmp_path / "cert.pem").write_bytes(chain)
    (tmp_path / "key.pem").write_bytes(key)
    certificate = load_default_certificate(str(tmp_path / "cert.pem"), str(tmp_path / "key.pem"))
    affinity = Affinity(cookie=CookieSettings(name="key", **cookie))
    return await proxy(
        backends, affinity, tls_listen=Address("127.0.0.1", 0), tls_default=certificate
    )


def http_url(server: ProxyServer) -> str:
    assert server.address is not None
    return f"http://{HOST}:{server.address.port}/"


def https_url(server: ProxyServer) -> str:
    assert server.tls_address is not None
    return f"https://{HOST}:{server.tls_address.port}/"


async def load(page: Page, url: str | None = None) -> Shown:
    """Open `url` (None: reload) as a person would, and what the page then shows."""
    await page.evaluate("window.stale = true")
    if url is None:
        await page.call("Page.reload")
    else:
        result = await page.call("Page.navigate", url=url)
        assert "errorText" not in result, f"{url}: {result['errorText']}"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            shown = await page.evaluate(SHOWN)
        except RuntimeError:  # the old document went away mid-call
            shown = None
        if shown:
            return Shown(UUID(shown["uuid"]), shown["colour"])
        await asyncio.sleep(0.05)
    body = await page.evaluate("document.body && document.body.innerText")
    pytest.fail(f"{url or 'reload'}: the demo page never showed; the page says {body!r}")


async def cookies(page: Page, url: str) -> list[dict[str, Any]]:
    """The cookies the browser would send to `url`, as it stored them."""
    found: list[dict[str, Any]] = (await page.call("Network.getCookies", urls=[url]))["cookies"]
    return found


async def session_cookie(page: Page, url: str) -> dict[str, Any]:
    (cookie,) = await cookies(page, url)
    assert cookie["name"] == "key"
    return cookie


async def test_first_load_sets_the_cookie_and_reloads_keep_the_backend(
    proxy: StartProxy, demo_backends: list[Endpoint], page: Page, tmp_path: Path
) -> None:
    server = await start_demo(proxy, demo_backends, tmp_path)
    url = http_url(server)
    first = await load(page, url)
    assert first.uuid in BACKENDS
    cookie = await session_cookie(page, url)
    assert (cookie["httpOnly"], cookie["path"], cookie["session"]) == (True, "/", True)
    assert cookie["secure"] is False and "sameSite" not in cookie  # none asked for, none set
    for _ in range(5):
        assert await load(page) == first  # same backend, same colour
    # The browser sent the cookie back each time: the proxy never had to issue another.
    assert (await session_cookie(page, url))["value"] == cookie["value"]


async def test_cleared_cookies_make_a_new_client_spread_over_the_backends(
    proxy: StartProxy, demo_backends: list[Endpoint], page: Page, tmp_path: Path
) -> None:
    server = await start_demo(proxy, demo_backends, tmp_path)
    url = http_url(server)
    seen: list[Shown] = []
    values = set()
    for _ in range(20):
        await page.call("Network.clearBrowserCookies")
        seen.append(await load(page, url))
        values.add((await session_cookie(page, url))["value"])
    assert len(values) == 20  # every cleared jar is a new session with a cookie of its own
    uuids = {shown.uuid for shown in seen}
    assert len(uuids) >= 2  # all 20 on one of 3 backends: odds about 1 in 10^9
    colours = {shown.uuid: shown.colour for shown in seen}
    assert len(set(seen)) == len(uuids) == len(set(colours.values()))  # one colour per backend


async def test_a_max_age_2_cookie_expires_in_the_browser_and_the_next_load_rebalances(
    proxy: StartProxy, demo_backends: list[Endpoint], page: Page, tmp_path: Path
) -> None:
    server = await start_demo(proxy, demo_backends, tmp_path, max_age=2)
    url = http_url(server)
    first = await load(page, url)
    cookie = await session_cookie(page, url)
    assert not cookie["session"]
    assert cookie["expires"] == pytest.approx(time.time() + 2, abs=1.5)
    assert await load(page) == first
    assert (await session_cookie(page, url))["value"] == cookie["value"]
    await asyncio.sleep(cookie["expires"] - time.time() + 0.5)
    assert await cookies(page, url) == []  # the browser dropped it: the next load is a new client
    await load(page)
    fresh = await session_cookie(page, url)
    assert fresh["value"] != cookie["value"]


@dataclass(frozen=True)
class Case:
    scheme: str
    cookie: dict[str, Any]  # CookieSettings, as the session-cookie-* annotations set them
    kept: bool
    attributes: dict[str, Any]  # as Chromium stored them


CASES = {
    # SameSite=None needs Secure; over TLS the proxy adds it (no session-cookie-secure needed).
    "https-None": Case("https", {"samesite": "None"}, True, {"secure": True, "sameSite": "None"}),
    "http-Strict": Case(
        "http", {"samesite": "Strict"}, True, {"secure": False, "sameSite": "Strict"}
    ),
    "http-Lax": Case("http", {"samesite": "Lax"}, True, {"secure": False, "sameSite": "Lax"}),
    # Refused by the browser: Secure over plain HTTP, and SameSite=None without Secure.
    "http-Secure": Case("http", {"secure": True}, False, {}),
    "http-None": Case("http", {"samesite": "None"}, False, {}),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
async def test_samesite_and_secure_as_the_browser_applies_them(
    proxy: StartProxy, demo_backends: list[Endpoint], page: Page, tmp_path: Path, case: Case
) -> None:
    server = await start_demo(proxy, demo_backends, tmp_path, **case.cookie)
    url = https_url(server) if case.scheme == "https" else http_url(server)
    await load(page, url)
    if not case.kept:
        for _ in range(3):
            await load(page)
            assert await cookies(page, url) == []  # each load was a new session, none stuck
        return
    stored = await session_cookie(page, url)
    assert {name: stored.get(name) for name in case.attributes} == case.attributes
    shown = await load(page)
    for _ in range(3):
        assert await load(page) == shown
    assert (await session_cookie(page, url))["value"] == stored["value"]

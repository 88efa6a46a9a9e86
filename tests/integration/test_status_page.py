"""/status (JSON) and / (the status page), the page rendered by a real headless Chromium."""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from proxy.app.runtime import ProxyServer
from proxy.app.settings import ServeSettings
from proxy.control.sources.static import static_snapshot
from proxy.control.translate import TranslateOptions
from proxy.control.translate.pipeline import translate
from proxy.core.cookies import CookieSettings
from proxy.core.model import Affinity, Endpoint, UpstreamPolicy
from proxy.core.values import Address
from proxy.observability.status_page import PAGE
from tests.integration.browser import chromium, open_page
from tests.integration.cluster import Pods, endpoint_slice, get, ingress, rule, service
from tests.integration.conftest import StartProxy, StartUpstreams
from tests.integration.harness import Upstream

AFFINITY = Affinity(cookie=CookieSettings(name="key", max_age=600))

# Every endpoint row as the page shows it: text, state badge, and the on-screen size of each bar.
ROWS = """(() => [...document.querySelectorAll("tr.endpoint")].map(row => {
  const size = column => {
    const bar = row.querySelector(".bar." + column);
    const box = bar.getBoundingClientRect();
    const style = getComputedStyle(bar);
    const shown = style.display !== "none" && style.visibility === "visible";
    return shown ? box.width : 0;
  };
  const track = column => row.querySelector(".bar." + column).parentElement.offsetWidth;
  return {endpoint: row.dataset.endpoint, text: row.innerText,
          state: row.querySelector(".badge").textContent,
          requests: size("requests"), new_sessions: size("new_sessions"),
          active_sessions: size("active_sessions"), track: track("active_sessions")};
}))()"""


def pods(ups: list[Upstream], draining: str | None = None) -> list[Endpoint]:
    return [Endpoint(u.host, u.port, pod=f"web-{u.name}", draining=u.name == draining) for u in ups]


async def admin(server: ProxyServer, path: str) -> tuple[str, str]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://{server.metrics_address}{path}") as response,
    ):
        assert response.status == 200
        return response.content_type, await response.text()


async def status(server: ProxyServer) -> dict[str, Any]:
    content_type, text = await admin(server, "/status")
    assert content_type == "application/json"
    result: dict[str, Any] = json.loads(text)
    return result


async def sessions(server: ProxyServer, count: int, repeat: int = 2) -> None:
    """`count` new sessions, each coming back `repeat` more times with its cookie."""
    for _ in range(count):
        cookie = "key=" + (await get(server)).value("key")
        for _ in range(repeat):
            assert (await get(server, cookie=cookie)).set_cookies == ()


async def test_status_json_is_the_table_with_its_traffic(
    upstreams: StartUpstreams, proxy: StartProxy
) -> None:
    ups = await upstreams(3)
    server = await proxy([], AFFINITY)
    server.publisher.publish(static_snapshot(pods(ups, draining="u2"), AFFINITY, UpstreamPolicy()))
    await sessions(server, 4)
    result = await status(server)
    assert result["ready"] is True
    assert result["routes"] == [{"host": "*", "path": "/", "type": "Prefix", "ingress": None,
                                 "cluster": "static", "sets_cookie": True,
                                 "canary": None}]  # fmt: skip
    (cluster,) = result["clusters"]
    assert (cluster["name"], cluster["affinity"], cluster["cookie"], cluster["balancing"]) == (
        "static",
        "balanced",
        "key",
        None,
    )
    endpoints = {e["endpoint"]: e for e in cluster["endpoints"]}
    assert set(endpoints) == {"web-u0", "web-u1", "web-u2"}
    assert endpoints["web-u0"]["address"] == f"127.0.0.1:{ups[0].port}"
    assert [e["state"] for e in endpoints.values()] == ["ready", "ready", "draining"]
    assert endpoints["web-u2"]["requests"] == 0  # draining: no new sessions
    assert sum(e["requests"] for e in endpoints.values()) == 12
    assert sum(e["new_sessions"] for e in endpoints.values()) == 4
    assert sum(e["active_sessions"] for e in endpoints.values()) in (3, 4)  # an estimate


async def test_status_page_is_self_contained(proxy: StartProxy) -> None:
    server = await proxy([], AFFINITY)
    content_type, page = await admin(server, "/")
    assert content_type == "text/html"
    assert page == PAGE
    # nothing fetched from elsewhere: the only request the page makes is for ./status
    assert "src=" not in page and "<link" not in page and "@import" not in page
    assert 'fetch("status"' in page


async def test_status_page_in_chromium_shows_endpoints_and_session_bars(
    upstreams: StartUpstreams, proxy: StartProxy, tmp_path: Path
) -> None:
    executable = chromium()
    if executable is None:
        pytest.skip("Chromium is not installed here (apt-get install chromium; .ci/run does it)")
    ups = await upstreams(3)
    server = await proxy([], AFFINITY)
    server.publisher.publish(static_snapshot(pods(ups), AFFINITY, UpstreamPolicy()))
    await sessions(server, 9)
    expected = {e["endpoint"]: e for e in (await status(server))["clusters"][0]["endpoints"]}

    async with open_page(executable, f"http://{server.metrics_address}/", tmp_path) as page:
        rows: list[dict[str, Any]] = []

        async def rows_shown(count: int, state: str | None = None) -> bool:
            rows[:] = await page.evaluate(ROWS) or []
            return len(rows) == count and (state is None or state in {r["state"] for r in rows})

        await page_until(rows_shown, 3)
        assert {r["endpoint"] for r in rows} == {"web-u0", "web-u1", "web-u2"}
        busiest = max(e["active_sessions"] for e in expected.values())
        for row in rows:
            counts = expected[row["endpoint"]]
            assert row["state"] == "ready"
            assert f"127.0.0.1:{ups[int(row['endpoint'][-1])].port}" in row["text"]
            for column in ("requests", "new_sessions", "active_sessions"):
                assert str(counts[column]) in row["text"]
                # a visible bar for every endpoint with traffic, scaled to the busiest one
                assert (row[column] > 0) == (counts[column] > 0), (row, column)
            if counts["active_sessions"] == busiest:
                assert row["active_sessions"] == pytest.approx(row["track"], abs=1)
        assert sum(r["active_sessions"] > 0 for r in rows) >= 2  # 9 sessions over 3 pods

        # The page refreshes itself: a pod starts draining, another leaves the table.
        draining = static_snapshot(pods(ups[:2], draining="u1"), AFFINITY, UpstreamPolicy())
        server.publisher.publish(draining)
        await page_until(rows_shown, 2, "draining")
        assert {r["endpoint"]: r["state"] for r in rows} == {"web-u0": "ready",
                                                             "web-u1": "draining"}  # fmt: skip


# Set to a path (docs/images/status-page.png) to keep the scale-up screenshot; CI leaves it unset.
SCREENSHOT_ENV = "STICKY_PROXY_SCREENSHOT"
SCREENSHOT_LIMIT = 200_000  # bytes: the README's picture stays small
PNG = b"\x89PNG\r\n\x1a\n"


def shop(pods: list[Upstream]) -> list[Any]:
    """Ingress shop (host shop.example, balanced cookie affinity) in front of `pods`."""
    return [
        ingress(
            "shop",
            rule("shop.example"),
            affinity="cookie",
            session_cookie_name="route",
            session_cookie_max_age="1800",
        ),
        service(),
        endpoint_slice(pods),
    ]


async def visitors(server: ProxyServer, count: int, reach: list[Upstream], clicks: int = 0) -> None:
    """At least `count` new visitors to shop.example, each clicking `clicks` more times with its
    cookie, and as many more as it takes for every pod of `reach` to have answered (the ring
    decides where each one goes)."""
    for visitor in itertools.count():
        if visitor >= count and all(pod.requests for pod in reach):
            return
        assert visitor < 200, "the ring never sent a visitor to some pod"
        cookie = "route=" + (await get(server, "/", "shop.example")).value("route")
        for _ in range(clicks):
            assert (await get(server, "/cart", "shop.example", cookie=cookie)).status == 200


async def test_status_page_during_a_scale_up_in_chromium(pods: Pods, tmp_path: Path) -> None:
    """Three pods with sessions, then five: the page shows the new pods taking new sessions while
    the old ones keep theirs. Its screenshot is the README's picture (with SCREENSHOT_ENV set)."""
    executable = chromium()
    if executable is None:
        pytest.skip("Chromium is not installed here (apt-get install chromium; .ci/run does it)")
    first = await pods.start(3)
    loopback = Address("127.0.0.1", 0)
    server = ProxyServer(ServeSettings(listen=loopback, metrics_listen=loopback),
                         translate(shop(first), TranslateOptions()))  # fmt: skip
    await server.start()
    try:
        await visitors(server, 12, first, clicks=3)
        added = await pods.start(2)
        server.publisher.publish(translate(shop([*first, *added]), TranslateOptions()))
        await visitors(server, 8, added)  # the ring now spreads new ones over five pods

        async with open_page(executable, f"http://{server.metrics_address}/", tmp_path) as page:
            await page.call("Emulation.setDeviceMetricsOverride", width=1000, height=600,
                            deviceScaleFactor=1, mobile=False)  # fmt: skip
            rows: list[dict[str, Any]] = []

            async def new_pods_serving() -> bool:
                rows[:] = await page.evaluate(ROWS) or []
                serving = {r["endpoint"] for r in rows if r["requests"] > 0}
                return len(rows) == 5 and {p.name for p in added} <= serving

            await page_until(new_pods_serving)
            assert {r["endpoint"] for r in rows} == {p.name for p in (*first, *added)}
            assert {r["state"] for r in rows} == {"ready"}
            old = [r for r in rows if r["endpoint"] in {p.name for p in first}]
            assert all(r["active_sessions"] > 0 for r in old)  # their sessions are still there
            # down to the last cluster's box and the page's margin below it
            bottom = "document.getElementById('clusters').getBoundingClientRect().bottom"
            height = await page.evaluate(f"Math.ceil({bottom}) + 8")
            shot = await page.call("Page.captureScreenshot", format="png",
                                   clip={"x": 0, "y": 0, "width": 1000, "height": height,
                                         "scale": 1}, captureBeyondViewport=True)  # fmt: skip
    finally:
        await server.stop(grace=0.5)
    image = base64.b64decode(shot["data"])
    assert image.startswith(PNG) and len(image) < SCREENSHOT_LIMIT, len(image)
    target = os.environ.get(SCREENSHOT_ENV)
    if target:
        Path(target).write_bytes(image)


async def page_until(
    condition: Callable[..., Awaitable[bool]], *args: object, limit: float = 10.0
) -> None:
    """Poll `condition(*args)` (the page refreshes every 2 s)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while not await condition(*args):
        assert loop.time() < deadline, f"the page did not show {args} within {limit} s"
        await asyncio.sleep(0.1)

"""What each scenario sends: path, connections, headers, and whether it carries the cookie.

Every scenario except `new-clients` sends the target's own affinity cookie (fetched from its
Set-Cookie before the run), so it measures the steady sticky path; `new-clients` sends none, so
every request is a new session that gets a Set-Cookie.
"""

from __future__ import annotations

from dataclasses import dataclass

from bench.configs import ONE_MB_PATH

Headers = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    what: str
    connections: int | None = None  # None: --connections (50)
    path: str = "/"
    sends_cookie: bool = True
    browser_headers: bool = False
    idle_connections: int = 0  # held open, each after one request, while the load runs

    def headers(self, cookie_name: str, cookie_value: str | None, referer: str) -> Headers:
        if self.browser_headers:
            return browser_headers(cookie_name, cookie_value, referer)
        if self.sends_cookie and cookie_value is not None:
            return (("Cookie", f"{cookie_name}={cookie_value}"),)
        return ()


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario("sticky", "every request carries the target's affinity cookie"),
        Scenario(
            "new-clients",
            "no cookie: every request is a new session and gets a Set-Cookie",
            sends_cookie=False,
        ),
        Scenario(
            "browser",
            "14 browser headers; the affinity cookie among 8 others",
            browser_headers=True,
        ),
        Scenario("c1-latency", "one connection: latency with no queueing", connections=1),
        Scenario("c500", "500 connections", connections=500),
        Scenario(
            "idle-2000",
            "2,000 idle keep-alive clients held open during a sticky run; RSS per idle client",
            idle_connections=2000,
        ),
        Scenario("1mb", "1 MiB responses streamed through", path=ONE_MB_PATH),
    )
}


def browser_headers(cookie_name: str, cookie_value: str | None, referer: str) -> Headers:
    """13 headers a desktop Chrome sends on a same-site navigation, plus Host (added by the
    load generator): 14 in all, with a realistic 400-byte Cookie header around the affinity
    cookie."""
    affinity = f"{cookie_name}={cookie_value}; " if cookie_value is not None else ""
    cookie = (
        "_ga=GA1.1.1918273645.1716200000; _gid=GA1.1.564738291.1716200000; "
        "csrftoken=Yx8kQ2vR7mNp4LsT9wZb3HcJ6fDg1AeU; "
        + affinity
        + "sessionid=q1w2e3r4t5y6u7i8o9p0a1s2d3f4g5h6; theme=dark; lang=en-US; "
        "consent=necessary%2Canalytics%2Cpreferences%2Cmarketing%3Dfalse; "
        "_hjSessionUser_1234567=eyJpZCI6ImFiY2RlZi0xMjM0LTU2NzgiLCJjcmVhdGVkIjoxNzE2MjAwMDAwMDAwfQ=="
    )
    return (
        ("Connection", "keep-alive"),
        ("Cache-Control", "max-age=0"),
        ("Upgrade-Insecure-Requests", "1"),
        (
            "User-Agent",
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
            "Chrome/124.0.0.0 Safari/537.36",
        ),
        (
            "Accept",
            "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,"
            "image/apng,*/*;q=0.8,application/signed-exchange;v=b3;q=0.7",
        ),
        ("Sec-Fetch-Site", "same-origin"),
        ("Sec-Fetch-Mode", "navigate"),
        ("Sec-Fetch-User", "?1"),
        ("Sec-Fetch-Dest", "document"),
        ("Referer", referer),
        ("Accept-Encoding", "gzip, deflate, br"),
        ("Accept-Language", "en-US,en;q=0.9,de;q=0.8"),
        ("Cookie", cookie),
    )

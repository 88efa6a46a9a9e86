"""--access-log json|combined: one line per answered request on stdout, parsed back."""

from __future__ import annotations

import json
import re
from datetime import datetime

import aiohttp
import pytest

from proxy.core.cookies import CookieSettings
from proxy.core.model import Affinity
from tests.integration.cluster import get
from tests.integration.conftest import StartProxy, StartUpstreams
from tests.integration.harness import url

# nginx's combined: $remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent
# "$http_referer" "$http_user_agent"
COMBINED = re.compile(
    r'(?P<client>\S+) - - \[(?P<time>[^\]]+)\] "(?P<request>(?:[^"\\]|\\x[0-9A-F]{2})*)" '
    r'(?P<status>\d{3}) (?P<bytes>\d+) "(?P<referer>[^"]*)" "(?P<agent>[^"]*)"'
)


async def test_json_lines_say_where_each_request_went(
    upstreams: StartUpstreams, proxy: StartProxy, capsys: pytest.CaptureFixture[str]
) -> None:
    ups = await upstreams(2)
    affinity = Affinity(cookie=CookieSettings(name="key"))
    server = await proxy([u.endpoint for u in ups], affinity, access_log="json")
    first = await get(server, "/a?x=1", host="shop.test")
    await get(server, "/b", host="shop.test", cookie="key=" + first.value("key"))
    async with aiohttp.ClientSession() as session:
        headers = {"X-Request-ID": "req-42", "Referer": "http://r.test/", "User-Agent": "t/1"}
        async with session.post(url(server, "/c"), data=b"12345", headers=headers) as response:
            assert response.status == 200
    assert server.access_log is not None
    server.access_log.flush()  # buffered: written once a second, at shutdown, or on flush

    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(r["method"], r["path"], r["status"], r["outcome"]) for r in lines] == [
        ("GET", "/a?x=1", 200, "new"),
        ("GET", "/b", 200, "sticky"),
        ("POST", "/c", 200, "new"),
    ]
    upstream = next(u for u in ups if u.name == first.pod)
    one = lines[0]
    assert one["client"] == "127.0.0.1"
    assert one["host"] == "shop.test"
    assert one["upstream"] == f"127.0.0.1:{upstream.port}" == lines[1]["upstream"]
    assert one["route"] == "*/" and one["cluster"] == "static" and one["ingress"] is None
    assert one["bytes"] > 0  # the JSON body the upstream sent
    assert 0 < one["upstream_duration"] <= one["duration"] < 5
    assert re.fullmatch(r"[0-9a-f]{32}", one["request_id"])  # generated, as sent upstream
    assert datetime.fromisoformat(one["time"]).tzinfo is not None
    third = lines[2]
    assert (third["request_id"], third["referer"], third["user_agent"]) == (
        "req-42", "http://r.test/", "t/1"
    )  # fmt: skip


async def test_combined_lines_are_nginx_combined(
    upstreams: StartUpstreams, proxy: StartProxy, capsys: pytest.CaptureFixture[str]
) -> None:
    (up,) = await upstreams(1)
    server = await proxy([up.endpoint], None, access_log="combined")
    await get(server, '/q?a="b"')
    async with aiohttp.ClientSession() as session:
        headers = {"Referer": "http://r.test/", "User-Agent": 'agent "quoted"'}
        async with session.get(url(server, "/x"), headers=headers) as response:
            body = await response.read()
    await server.stop(grace=0.1)  # flushes what is left

    first, second = (COMBINED.fullmatch(line) for line in capsys.readouterr().out.splitlines())
    assert first is not None and second is not None
    assert first["client"] == "127.0.0.1"
    assert datetime.strptime(first["time"], "%d/%b/%Y:%H:%M:%S %z")
    assert first["request"] == r"GET /q?a=%22b%22 HTTP/1.1"  # aiohttp quotes the target
    assert (first["status"], first["referer"]) == ("200", "-")
    assert second["request"] == "GET /x HTTP/1.1"
    assert int(second["bytes"]) == len(body)
    assert (second["referer"], second["agent"]) == ("http://r.test/", r"agent \x22quoted\x22")


async def test_off_by_default(upstreams: StartUpstreams, proxy: StartProxy) -> None:
    (up,) = await upstreams(1)
    server = await proxy([up.endpoint], None)
    assert server.access_log is None and server.metrics.access_log is None

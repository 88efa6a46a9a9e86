"""`serve --workers 2` as a user runs it: both workers serve, and one scrape sums them."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

REPO = Path(__file__).resolve().parents[2]
REQUESTS = 48
SESSIONS = 4


def fetch(url: str, cookie: str | None = None) -> tuple[str, str | None]:
    """One request on a connection of its own, so the kernel may pick either worker."""
    request = urllib.request.Request(url, headers={"Cookie": cookie} if cookie else {})
    with urllib.request.urlopen(request, timeout=15) as response:
        return response.read().decode(), response.headers.get("Set-Cookie")


def scrape(metrics_url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = fetch(metrics_url + "/metrics")[0]
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def total(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str) -> float:
    return sum(value for (sample, _), value in samples.items() if sample == name)


def test_one_scrape_sums_both_workers(backend: str, tmp_path: Path) -> None:
    # The parent makes its metrics directory under TMPDIR: here, where the test can look.
    proxy = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "proxy",
            "serve",
            "--workers",
            "2",
            "--backend",
            backend,
            "--listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "127.0.0.1:0",
        ],
        cwd=REPO,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "TMPDIR": str(tmp_path)},
    )
    try:
        assert proxy.stderr is not None
        announced = []
        while len(announced) < 2:  # each worker says where it listens: the same two ports
            line = proxy.stderr.readline()
            assert line, f"the proxy ended early: {proxy.communicate(timeout=10)[1]}"
            if "proxy listening on" in line:
                announced.append(tuple(re.findall(r"http://[\d.:]+", line)))
        assert announced[0] == announced[1]
        proxy_url, metrics_url = announced[0]
        (directory,) = tmp_path.iterdir()

        cookies = []
        for _ in range(SESSIONS):
            set_cookie = fetch(proxy_url)[1]
            assert set_cookie is not None
            cookies.append(set_cookie.split(";")[0])
        for i in range(REQUESTS - SESSIONS):
            assert fetch(proxy_url, cookies[i % SESSIONS])[1] is None  # sticky: no new cookie

        # The worker that answers a scrape counts up to now; the other writes once a second.
        deadline = time.monotonic() + 5
        while total(samples := scrape(metrics_url), "sticky_proxy_requests_total") < REQUESTS:
            assert time.monotonic() < deadline, "the workers' counts never added up"
            time.sleep(0.2)
        assert total(samples, "sticky_proxy_requests_total") == REQUESTS  # no double counting
        decisions = {dict(labels)["outcome"]: value for (name, labels), value in samples.items()
                     if name == "sticky_proxy_affinity_decisions_total"}  # fmt: skip
        assert decisions == {"new": SESSIONS, "sticky": REQUESTS - SESSIONS, "repicked": 0,
                             "failover": 0, "draining": 0}  # fmt: skip
        assert total(samples, "sticky_proxy_endpoint_requests_total") == REQUESTS
        assert total(samples, "sticky_proxy_endpoint_new_sessions_total") == SESSIONS
        # Each session reached both workers; their sketches merge, so it counts once, not twice.
        assert SESSIONS - 1 <= total(samples, "sticky_proxy_endpoint_active_sessions") <= SESSIONS
        # gauges of the same table in both workers: the latest, not their sum
        assert samples["sticky_proxy_endpoints", (("state", "ready"),)] == 1

        # Both workers served: each one's own file holds part of the requests.
        per_worker = [
            sum(
                s.value
                for m in MultiProcessCollector.merge([str(path)])
                for s in m.samples
                if s.name == "sticky_proxy_requests_total"
            )
            for path in sorted(directory.glob("counter_*.db"))
        ]
        assert len(per_worker) == 2 and all(per_worker) and sum(per_worker) == REQUESTS

        status = json.loads(fetch(metrics_url + "/status")[0])
        (endpoint,) = status["clusters"][0]["endpoints"]
        assert (endpoint["requests"], endpoint["new_sessions"]) == (REQUESTS, SESSIONS)

        proxy.send_signal(signal.SIGTERM)
        assert proxy.wait(timeout=15) == 0
        assert not directory.exists()  # no stale files for the next run
    finally:
        if proxy.poll() is None:
            proxy.kill()
            proxy.wait()


def workers_of(parent: int) -> set[int]:
    children = Path(f"/proc/{parent}/task/{parent}/children")
    return {int(pid) for pid in children.read_text().split()}


def listening(proxy: subprocess.Popen[str], log: list[str]) -> str:
    """Read the proxy's log (into `log`) up to the next worker that says it listens; its URL."""
    assert proxy.stderr is not None
    while True:
        line = proxy.stderr.readline()
        assert line, "the proxy exited"
        log.append(line)
        found = re.search(r"proxy listening on (http://\S+),", line)
        if found:
            return found[1]


def test_a_killed_worker_is_replaced_and_serving_goes_on(backend: str) -> None:
    proxy = subprocess.Popen(
        [sys.executable, "-m", "proxy", "serve", "--workers", "2", "--backend", backend,
         "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0", "--tls-listen", "off"],
        cwd=REPO, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    log: list[str] = []
    try:
        url = listening(proxy, log)
        listening(proxy, log)  # both workers serve
        victim = min(workers_of(proxy.pid))
        os.kill(victim, signal.SIGKILL)
        assert listening(proxy, log) == url  # a new worker, on the same port
        assert len(workers_of(proxy.pid)) == 2 and victim not in workers_of(proxy.pid)
        for _ in range(20):  # connections spread over both live workers
            body, _ = fetch(url + "/")
            assert "uuid" in body
        assert proxy.poll() is None
    finally:
        proxy.send_signal(signal.SIGTERM)
        _, stderr = proxy.communicate(timeout=30)
    assert proxy.returncode == 0, stderr
    assert f"worker {victim} exited with code -9: starting another" in "".join(log)


def test_workers_that_cannot_load_their_manifests_are_not_restarted(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("kind: Ingress\napiVersion: networking.k8s.io/v1\nmetadata: [\n")
    result = subprocess.run(
        [sys.executable, "-m", "proxy", "serve", "--workers", "2", "--manifests", str(broken),
         "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0", "--tls-listen", "off"],
        cwd=REPO, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert "starting another" not in result.stderr
    assert "Traceback" not in result.stderr

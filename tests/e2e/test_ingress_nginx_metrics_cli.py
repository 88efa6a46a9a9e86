"""`serve --workers 2 --ingress-nginx-metrics`: one scrape sums both workers into ingress-nginx's
series as into this proxy's own, and its reload series are one per controller, not per worker."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.e2e.test_workers_cli import REPO, fetch, scrape, total

REQUESTS = 40
CONTROLLER = (("controller_class", "sticky"), ("controller_namespace", "ingress"),
              ("controller_pod", "sticky-proxy-0"))  # fmt: skip


def test_two_workers_sum_into_the_same_ingress_nginx_series(backend: str, tmp_path: Path) -> None:
    command = [sys.executable, "-m", "proxy", "serve", "--workers", "2", "--backend", backend,
               "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0",
               "--ingress-nginx-metrics"]  # fmt: skip
    env = {**os.environ, "TMPDIR": str(tmp_path), "POD_NAMESPACE": "ingress",
           "POD_NAME": "sticky-proxy-0"}  # fmt: skip
    proxy = subprocess.Popen(command, cwd=REPO, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert proxy.stderr is not None
        announced = []
        while len(announced) < 2:  # each worker says where it listens: the same two ports
            line = proxy.stderr.readline()
            assert line, f"the proxy ended early: {proxy.communicate(timeout=10)[1]}"
            if "proxy listening on" in line:
                announced.append(tuple(re.findall(r"http://[\d.:]+", line)))
        proxy_url, metrics_url = announced[0]
        for _ in range(REQUESTS):
            fetch(proxy_url)  # a connection each: the kernel spreads them over both workers

        # The worker that answers a scrape counts up to now; the other writes once a second.
        deadline = time.monotonic() + 5
        while total(samples := scrape(metrics_url), "sticky_proxy_requests_total") < REQUESTS:
            assert time.monotonic() < deadline, "the workers' counts never added up"
            time.sleep(0.2)
        assert total(samples, "nginx_ingress_controller_requests") == REQUESTS
        assert total(samples, "nginx_ingress_controller_request_duration_seconds_count") == (
            total(samples, "sticky_proxy_request_duration_seconds_count")
        )
        assert total(samples, "nginx_ingress_controller_response_size_sum") == (
            total(samples, "sticky_proxy_response_size_bytes_sum")
        )
        requests = [dict(labels) for name, labels in samples
                    if name == "nginx_ingress_controller_requests"]  # fmt: skip
        assert [r["status"] for r in requests] == ["200"]
        assert dict(CONTROLLER).items() <= requests[0].items()

        # one series each, whatever the number of workers
        reload_series = {name: (labels, value) for (name, labels), value in samples.items()
                         if name.startswith("nginx_ingress_controller_config")}  # fmt: skip
        assert set(reload_series) == {
            "nginx_ingress_controller_config_hash",
            "nginx_ingress_controller_config_last_reload_successful",
            "nginx_ingress_controller_config_last_reload_successful_timestamp_seconds",
        }
        assert all(labels == CONTROLLER for labels, _ in reload_series.values())
        assert reload_series["nginx_ingress_controller_config_last_reload_successful"][1] == 1
        successes = total(samples, "nginx_ingress_controller_success")
        assert successes == samples["sticky_proxy_config_reloads_total", (("result", "success"),)]

        proxy.send_signal(signal.SIGTERM)
        assert proxy.wait(timeout=15) == 0
    finally:
        if proxy.poll() is None:
            proxy.kill()
            proxy.wait()

"""`python -m proxy demo` as a user runs it: real backends, the real proxy, Ctrl-C."""

from __future__ import annotations

import http.cookiejar
import json
import re
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DEMO = (sys.executable, "-m", "proxy", "demo")


def uuid_through(opener: urllib.request.OpenerDirector, url: str) -> str:
    with opener.open(url, timeout=5) as response:
        body: dict[str, str] = json.load(response)
        return body["uuid"]


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_demo_is_sticky_and_stops_everything(stop: signal.Signals) -> None:
    process = subprocess.Popen(
        [*DEMO, "--replicas", "3", "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        lines = []
        while not (line := process.stdout.readline()).startswith("Ctrl-C"):
            assert line, f"demo ended early: {process.communicate(timeout=10)[1]}"
            lines.append(line)
        text = "".join(lines)
        curl = re.search(r"curl -c \S+ -b \S+ (http://\S+)", text)
        assert curl is not None, text
        backend_ports = [int(port) for port in re.findall(r"backend  http://127.0.0.1:(\d+)", text)]
        assert len(backend_ports) == 3

        jar = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
        )
        assert len({uuid_through(jar, curl[1]) for _ in range(5)}) == 1

        process.send_signal(stop)
        _, stderr = process.communicate(timeout=20)
    finally:
        if process.poll() is None:  # a failed assertion: still stop it the way a user would
            process.terminate()
            process.communicate(timeout=20)
    assert process.returncode == 0, stderr
    assert "Traceback" not in stderr
    for port in backend_ports:  # the demo stopped its backends before exiting
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=5).close()

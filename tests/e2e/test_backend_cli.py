"""`python -m backend` as the demo and the Kubernetes manifests run it."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path
from uuid import UUID

REPO = Path(__file__).resolve().parents[2]


def test_announces_its_port_answers_and_exits_cleanly_on_sigterm() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "backend", "--host", "127.0.0.1", "--port", "0"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith("listening on http://127.0.0.1:"), line
        url = line.removeprefix("listening on ").strip()
        assert not url.endswith(":0")
        with urllib.request.urlopen(url + "/", timeout=5) as response:
            assert UUID(json.load(response)["uuid"]).version == 4
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=10)
    finally:
        process.kill()
        process.wait()
    assert process.returncode == 0, stderr
    assert "Traceback" not in stderr


def test_bad_port_is_a_usage_error() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "backend", "--port", "70000"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert "--port" in result.stderr

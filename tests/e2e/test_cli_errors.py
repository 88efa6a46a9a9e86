"""`python -m proxy` with bad flags, as a user runs it: one line naming the flag, exit 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BACKEND = ("--backend", "http://127.0.0.1:8001")


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        ((*BACKEND, "--proxy-body-size", "12x"), "--proxy-body-size"),
        ((*BACKEND, "--listen", "localhost"), "--listen"),
        ((*BACKEND, "--metrics-listen", "::1:10254"), "--metrics-listen"),
        ((*BACKEND, "--affinity-mode", "sticky"), "--affinity-mode"),
        (("--backend", "https://127.0.0.1:8001"), "--backend"),
        (("--backend", "http://127.0.0.1:8001/app"), "--backend"),
        ((), "--backend"),
        ((*BACKEND, "--session-cookie-secure", "yes"), "--session-cookie-secure"),
        (
            (*BACKEND, "--session-cookie-change-on-failure", "1"),
            "--session-cookie-change-on-failure",
        ),
        ((*BACKEND, "--proxy-next-upstream", "error http_501"), "--proxy-next-upstream"),
        ((*BACKEND, "--proxy-connect-timeout", "0"), "--proxy-connect-timeout"),
        ((*BACKEND, "--workers", "0"), "--workers"),
        ((*BACKEND, "--tls-cert", str(REPO / "README.md")), "--tls-cert and --tls-key"),
        ((*BACKEND, "--tls-cert", "README.md", "--tls-key", "README.md"), "--tls-cert"),
        ((*BACKEND, "--tls-cert", "/nonexistent.pem", "--tls-key", "/x.pem"), "/nonexistent.pem"),
        ((*BACKEND, "--tls-listen", "8443"), "--tls-listen"),
        ((*BACKEND, "--https-port", "0"), "--https-port"),
        (
            (*BACKEND, "--workers", "2", "--state-dir", "/nonexistent"),
            "--state-dir: /nonexistent: not a writable directory",
        ),
        ((*BACKEND, "--state-dir", "README.md"), "--state-dir: README.md: not a writable"),
    ],
)
def test_bad_serve_flag(flags: tuple[str, ...], named: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "proxy", "serve", *flags],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("sticky-proxy: error: ")
    assert named in lines[0]
    assert result.stdout == ""

"""`serve` on a read-only root filesystem, as `docker run --read-only` runs it (no tmpfs on /tmp;
/dev/shm, a separate tmpfs, stays writable): TLS certificates load, and `--workers` finds a
place for its shared files, or says in one line that there is none.

Each proxy runs in a mount namespace of its own (`unshare --mount`) where `/` is remounted
read-only; the network is the test's, so the test talks to it on loopback as usual.
"""

from __future__ import annotations

import re
import shutil
import signal
import ssl
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from tests.certs import self_signed

REPO = Path(__file__).resolve().parents[2]
OWN_MOUNTS = ("unshare", "--user", "--map-root-user", "--mount")
READ_ONLY_ROOT = "mount -o remount,bind,ro /"
LOCAL = ("--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0")


def read_only_root_works() -> bool:
    if shutil.which("unshare") is None:
        return False
    script = f'{READ_ONLY_ROOT} && ! touch "$1"'
    probe = subprocess.run([*OWN_MOUNTS, "sh", "-c", script, "sh", "/tmp/.sticky-proxy-probe"],
                           capture_output=True, check=False)  # fmt: skip
    return probe.returncode == 0


pytestmark = pytest.mark.skipif(
    not read_only_root_works(), reason="needs unshare, and user and mount namespaces"
)


def on_read_only_root(*flags: str, shm: bool = True, tmpfs: Path | None = None) -> list[str]:
    """`python -m proxy serve FLAGS` with `/` read-only, and /dev/shm too unless `shm`; with a
    writable tmpfs on `tmpfs`, as a pod's emptyDir volume."""
    steps = [*([f"mount -t tmpfs tmpfs {tmpfs}"] if tmpfs else []), READ_ONLY_ROOT,
             *([] if shm else ["mount -o remount,bind,ro /dev/shm"]), 'exec "$@"']  # fmt: skip
    proxy = (sys.executable, "-m", "proxy", "serve", *flags)
    return [*OWN_MOUNTS, "sh", "-c", " && ".join(steps), "sh", *proxy]


def listening(
    proxy: subprocess.Popen[str], log: list[str], text: str = "proxy listening on"
) -> str:
    """Read the proxy's log into `log` up to a line holding `text`; that line."""
    assert proxy.stderr is not None
    while True:
        line = proxy.stderr.readline()
        assert line, f"the proxy exited: {''.join(log)}{proxy.communicate(timeout=10)[1]}"
        log.append(line)
        if text in line:
            return line


def stop(proxy: subprocess.Popen[str]) -> str:
    """SIGTERM, then the rest of its log; it must have exited 0."""
    proxy.send_signal(signal.SIGTERM)
    _, rest = proxy.communicate(timeout=30)
    assert proxy.returncode == 0, rest
    return rest


def test_a_tls_certificate_loads_without_a_writable_filesystem(
    backend: str, tmp_path: Path
) -> None:
    chain, key = self_signed("127.0.0.1")
    (tmp_path / "tls.crt").write_bytes(chain)
    (tmp_path / "tls.key").write_bytes(key)
    command = on_read_only_root(
        "--backend", backend, *LOCAL, "--tls-listen", "127.0.0.1:0",
        "--tls-cert", str(tmp_path / "tls.crt"), "--tls-key", str(tmp_path / "tls.key"),
    )  # fmt: skip
    proxy = subprocess.Popen(command, cwd=REPO, stderr=subprocess.PIPE, text=True)
    log: list[str] = []
    try:
        opened = listening(proxy, log, "TLS on https://")
        (address,) = re.findall(r"https://([\d.:]+)", opened)
        listening(proxy, log)
        context = ssl.create_default_context(cadata=chain.decode())
        with urllib.request.urlopen(f"https://{address}/", context=context, timeout=10) as answer:
            assert answer.status == 200
            assert b"uuid" in answer.read()
        assert "Traceback" not in stop(proxy)
    finally:
        if proxy.poll() is None:
            proxy.kill()
            proxy.wait()


def test_workers_keep_their_shared_files_in_dev_shm_when_nothing_else_is_writable(
    backend: str,
) -> None:
    command = on_read_only_root(
        "--workers", "2", "--backend", backend, *LOCAL, "--tls-listen", "off"
    )
    proxy = subprocess.Popen(command, cwd=REPO, stderr=subprocess.PIPE, text=True)
    log: list[str] = []
    try:
        said = listening(proxy, log, "workers share their files in ")
        (directory,) = re.findall(r"in (/dev/shm/\S+)", said)
        url = re.findall(r"http://[\d.:]+", listening(proxy, log))[0]
        listening(proxy, log)  # both workers
        for _ in range(4):
            with urllib.request.urlopen(url, timeout=10) as answer:
                assert answer.status == 200
        assert Path(directory).is_dir()  # /dev/shm is the host's: the test sees it too
        stop(proxy)
        assert not Path(directory).exists()
    finally:
        if proxy.poll() is None:
            proxy.kill()
            proxy.wait()


def test_workers_with_nowhere_to_write_say_so_in_one_line(backend: str) -> None:
    command = on_read_only_root(
        "--workers", "2", "--backend", backend, *LOCAL, "--tls-listen", "off", shm=False
    )
    result = subprocess.run(
        command, cwd=REPO, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 1, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("sticky-proxy: error: --workers: no writable directory")
    assert "/dev/shm" in lines[0] and "--state-dir" in lines[0]


def test_workers_take_the_state_dir_they_are_given(backend: str, tmp_path: Path) -> None:
    state = tmp_path / "state"  # in the proxy's namespace, a tmpfs: the only writable place
    state.mkdir()
    command = on_read_only_root(
        "--workers", "2", "--state-dir", str(state), "--backend", backend, *LOCAL,
        "--tls-listen", "off", shm=False, tmpfs=state,
    )  # fmt: skip
    proxy = subprocess.Popen(command, cwd=REPO, stderr=subprocess.PIPE, text=True)
    log: list[str] = []
    try:
        said = listening(proxy, log, "workers share their files in ")
        assert f"workers share their files in {state}/sticky-proxy-" in said
        url = re.findall(r"http://[\d.:]+", listening(proxy, log))[0]
        listening(proxy, log)  # both workers
        with urllib.request.urlopen(url, timeout=10) as answer:
            assert answer.status == 200
        stop(proxy)
    finally:
        if proxy.poll() is None:
            proxy.kill()
            proxy.wait()

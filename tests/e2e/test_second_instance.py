"""Two `serve --manifests` on one machine, each with its own --listen and --metrics-listen: the
default TLS port (0.0.0.0:8443) is bound only once there is a certificate to serve, so the second
one starts; when the certificate comes, one of them gets the port and the other says so in one
line and goes on serving plain HTTP.

Both run in a network namespace of their own (`unshare --net`, loopback only), so that 0.0.0.0:8443
there is nobody else's port and nothing outside the test can reach it.
"""

from __future__ import annotations

import asyncio
import base64
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from tests.certs import self_signed
from tests.integration.cluster import Obj, web_app, write_manifest

REPO = Path(__file__).resolve().parents[2]
OWN_NETWORK = ("unshare", "--user", "--map-root-user", "--net")
LOOPBACK_UP = 'ip link set lo up && exec "$@"'
TLS_OPENED = "sticky_proxy: TLS on https://0.0.0.0:8443\n"
TLS_REFUSED = "TLS on 0.0.0.0:8443 not opened: Address already in use; plain HTTP only"


def namespaces_work() -> bool:
    if not all(shutil.which(tool) for tool in ("unshare", "nsenter", "ip")):
        return False
    probe = subprocess.run([*OWN_NETWORK, "sh", "-c", LOOPBACK_UP, "sh", "true"],
                           capture_output=True, check=False)  # fmt: skip
    return probe.returncode == 0


pytestmark = pytest.mark.skipif(
    not namespaces_work(), reason="needs unshare, nsenter and ip, and user and network namespaces"
)


class Serve:
    """One `serve` process and the lines of its log so far."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.log: list[str] = []

    async def until_logged(self, *texts: str, limit: float = 15, lines: int = 1) -> None:
        """Read the log until `lines` lines hold one of `texts`."""
        assert self.process.stderr is not None
        async with asyncio.timeout(limit):
            while sum(any(text in line for text in texts) for line in self.log) < lines:
                line = (await self.process.stderr.readline()).decode()
                assert line, f"serve exited ({self.process.returncode}): {''.join(self.log)}"
                self.log.append(line)

    async def inside(self, code: str) -> str:
        """Run Python `code` in this process's network namespace; its output."""
        probe = await asyncio.create_subprocess_exec(
            *enter_network_of(self), sys.executable, "-c", code,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(probe.communicate(), 15)
        assert probe.returncode == 0, err.decode()
        return out.decode()


@asynccontextmanager
async def serving(
    manifests: Path, port: int, *flags: str, join: Serve | None = None
) -> AsyncIterator[Serve]:
    """`serve --manifests` on 127.0.0.1:`port` (metrics on `port` + 1) in a new network
    namespace, or in that of `join`; killed after."""
    listeners = ("--listen", f"127.0.0.1:{port}", "--metrics-listen", f"127.0.0.1:{port + 1}")
    command = (sys.executable, "-m", "proxy", "serve", "--manifests", str(manifests), *listeners,
               *flags)  # fmt: skip
    if join is None:
        argv = [*OWN_NETWORK, "sh", "-c", LOOPBACK_UP, "sh", *command]
    else:
        argv = [*enter_network_of(join), *command]
    process = await asyncio.create_subprocess_exec(
        *argv, cwd=REPO, stderr=asyncio.subprocess.PIPE, start_new_session=True
    )
    serve = Serve(process)
    try:
        await serve.until_logged("proxy listening on")
        yield serve
    finally:
        if process.returncode is None:
            os.killpg(process.pid, signal.SIGKILL)  # its group: with --workers, them too
        await process.wait()


def enter_network_of(serve: Serve) -> tuple[str, ...]:
    return ("nsenter", f"--target={serve.process.pid}", "--user", "--net",
            "--preserve-credentials")  # fmt: skip


def tls_secret(chain: bytes, key: bytes) -> dict[str, object]:
    return {
        "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
        "metadata": {"name": "web-tls", "namespace": "default"},
        "data": {"tls.crt": base64.b64encode(chain).decode(),
                 "tls.key": base64.b64encode(key).decode()},
    }  # fmt: skip


def status_of(url: str) -> str:
    """Python code printing the HTTP status of `url`."""
    return (
        "import urllib.request, urllib.error\n"
        "try:\n"
        f"    print(urllib.request.urlopen({url!r}, timeout=5).status)\n"
        "except urllib.error.HTTPError as error:\n"
        "    print(error.code)\n"
    )


def without_pods(directory: Path) -> Path:
    """An Ingress for app.test, its Service and no pods, in a file in `directory`."""
    manifest = directory / "web.yaml"
    write_manifest(manifest, web_app([]))
    return manifest


def with_tls(objects: list[Obj]) -> list[Obj]:
    """`objects` (an Ingress for app.test first), with TLS for app.test from a new Secret."""
    ingress, *others = objects
    ingress["spec"]["tls"] = [{"hosts": ["app.test"], "secretName": "web-tls"}]
    return [ingress, *others, tls_secret(*self_signed("app.test"))]


# A plain bind, without SO_REUSEADDR: any socket bound to the port, listening or only holding
# it, makes it fail.
BIND_8443 = """\
import socket
try:
    socket.socket().bind(("0.0.0.0", 8443))
    print("free")
except OSError:
    print("taken")
"""

HTTPS_GET = """\
import socket, ssl
context = ssl.create_default_context()
context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
with socket.create_connection(("127.0.0.1", 8443), timeout=5) as plain:
    with context.wrap_socket(plain, server_hostname="app.test") as tls:
        tls.sendall(b"GET / HTTP/1.1\\r\\nHost: app.test\\r\\nConnection: close\\r\\n\\r\\n")
        print(tls.recv(12).decode().split()[1])
"""


async def test_a_second_instance_starts_and_the_first_certificate_opens_tls_once(
    tmp_path: Path,
) -> None:
    manifest = without_pods(tmp_path)
    async with (
        serving(tmp_path, 8080) as first,
        serving(tmp_path, 8090, join=first) as second,
    ):
        await asyncio.sleep(0.5)  # whatever they would bind at start, they have by now
        for serve in (first, second):
            assert not any(TLS_OPENED in line for line in serve.log), serve.log
        assert (await second.inside(status_of("http://127.0.0.1:8091/readyz"))).strip() == "200"

        write_manifest(manifest, with_tls(web_app([])))
        for serve in (first, second):
            await serve.until_logged(TLS_OPENED, TLS_REFUSED, limit=5)
        winner, loser = (first, second) if TLS_OPENED in "".join(first.log) else (second, first)
        assert TLS_OPENED in "".join(winner.log) and TLS_REFUSED in "".join(loser.log)
        errors = [line for line in loser.log if " ERROR " in line]
        assert len(errors) == 1, errors
        assert loser.process.returncode is None and winner.process.returncode is None
        # The one without TLS still serves plain HTTP (404: no route for the host 127.0.0.1).
        port = 8080 if loser is first else 8090
        assert (await loser.inside(status_of(f"http://127.0.0.1:{port}/"))).strip() == "404"


async def test_workers_bind_an_on_demand_tls_port_themselves_with_the_first_certificate(
    tmp_path: Path,
) -> None:
    manifest = without_pods(tmp_path)
    async with serving(tmp_path, 8080, "--workers", "2") as parent:
        await parent.until_logged("proxy listening on", lines=2)  # both workers
        await asyncio.sleep(0.5)
        assert (await parent.inside(BIND_8443)).strip() == "free"  # not even reserved
        write_manifest(manifest, with_tls(web_app([])))
        await parent.until_logged(TLS_OPENED, limit=5, lines=2)  # each worker, on the one port
        assert not any(" ERROR " in line for line in parent.log), parent.log
        # no pods behind the route: the proxy's own 503, over TLS
        assert (await parent.inside(HTTPS_GET)).strip() == "503"

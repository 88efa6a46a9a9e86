"""`sticky-proxy serve|routes --kubernetes --kubeconfig FILE` as a user runs them, against the
fake API server over TLS and real pods on loopback: the seed's Ingress with cookie affinity is
served, and every change of the endpoint set is followed within a second, through a 410 and a
dropped connection; a 403 keeps /readyz at 503."""

from __future__ import annotations

import asyncio
import re
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from tests.integration.cluster import Pods, endpoint_slice, until, web_app
from tests.integration.harness import Upstream
from tests.integration.kubernetes.test_secrets import auth_secret
from tests.kube_fake import kubeconfig
from tests.kube_fake.server import FakeApiServer
from tests.kube_fake.tls import make_pki

REPO = Path(__file__).resolve().parents[2]
TOKEN = "e2e-token"
LISTENING = re.compile(rb"proxy listening on http://([\d.]+:\d+), metrics on http://([\d.]+:\d+)")
COOKIE = "INGRESSCOOKIE"


@dataclass
class Cluster:
    fake: FakeApiServer
    pods: Pods
    config: Path


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    pki = make_pki(tmp_path)
    fake = FakeApiServer(pki)
    fake.tokens[TOKEN] = "system:serviceaccount:sticky-proxy:sticky-proxy"
    await fake.start()
    config = kubeconfig.write(
        tmp_path / "kubeconfig",
        kubeconfig.kubeconfig(
            fake.url, {"token": TOKEN}, cluster={"certificate-authority": str(pki.ca)}
        ),
    )
    pods = Pods()
    yield Cluster(fake, pods, config)
    await pods.stop()
    await fake.stop()


@dataclass
class Proxy:
    """The proxy process, its listeners, and what it logged."""

    process: asyncio.subprocess.Process
    address: str
    metrics: str
    log: bytearray

    async def readyz(self) -> int:
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://{self.metrics}/readyz") as response,
        ):
            return response.status


@pytest.fixture
async def proxy(cluster: Cluster) -> AsyncIterator[list[Proxy]]:
    started: list[Proxy] = []
    yield started
    for running in started:
        if running.process.returncode is None:
            running.process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(10):
            assert await running.process.wait() == 0


async def serve(cluster: Cluster, started: list[Proxy], *flags: str) -> Proxy:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "proxy", "serve", "--kubernetes", "--kubeconfig",
        str(cluster.config), "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0",
        "--shutdown-grace", "1", *flags,
        cwd=REPO, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert process.stderr is not None
    log = bytearray()
    async with asyncio.timeout(15):
        while (found := LISTENING.search(log)) is None:
            line = await process.stderr.readline()
            assert line, f"the proxy exited: {log.decode()}"
            log += line
    running = Proxy(process, found[1].decode(), found[2].decode(), log)
    started.append(running)

    async def keep_reading(stream: asyncio.StreamReader = process.stderr) -> None:
        while line := await stream.readline():
            log.extend(line)

    asyncio.get_running_loop().create_task(keep_reading())
    return running


async def request(proxy: Proxy, cookie: str | None = None) -> tuple[int, str | None, str | None]:
    """(status, the pod that answered, the affinity cookie set, if any)."""
    headers = {"Host": "app.test", **({"Cookie": cookie} if cookie else {})}
    async with (
        aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as session,
        session.get(f"http://{proxy.address}/", headers=headers) as response,
    ):
        pod = (await response.json())["name"] if response.status == 200 else None
        set_cookie = response.cookies.get(COOKIE)
        return response.status, pod, (set_cookie.value if set_cookie else None)


async def answered_by(proxy: Proxy, cookie: str, pods: list[Upstream], what: str) -> float:
    """Seconds until a request with `cookie` is answered by one of `pods` (polled)."""
    names = {pod.name for pod in pods}
    loop = asyncio.get_running_loop()
    start = loop.time()
    async with asyncio.timeout(5):
        while (await request(proxy, cookie))[1] not in names:
            await asyncio.sleep(0.01)
    return loop.time() - start


async def test_serves_the_seed_ingress_and_follows_every_change(
    cluster: Cluster, proxy: list[Proxy]
) -> None:
    fake, pods = cluster.fake, cluster.pods
    a, b = await pods.start(2)
    objects = web_app([a], affinity="cookie", session_cookie_name=COOKIE)
    for obj in objects:
        fake.apply(obj)
    second = endpoint_slice([b], name="web-slice-b")
    fake.apply(second)
    running = await serve(cluster, proxy)
    await until_ready(running)
    # A session pinned to b.
    cookie = None
    for _ in range(50):
        status, pod, value = await request(running)
        assert status == 200 and value
        if pod == b.name:
            cookie = f"{COOKIE}={value}"
            break
    assert cookie is not None
    assert (await request(running, cookie))[1:] == (b.name, None)
    # An EndpointSlice change through the watch moves its traffic: b is deleted, c joins.
    (c,) = await pods.start(1)
    fake.apply(endpoint_slice([c], name="web-slice-b"))
    assert await answered_by(running, cookie, [a, c], "the moved session") < 1.0
    # A 410 in the middle of the stream: the slice deleted meanwhile is not lost.
    await until(lambda: fake.open_watches("endpointslices") == 1, "the watch")
    fake.hold_watches("endpointslices")
    fake.delete(fake.objects["endpointslices"]["default", "web-slice-b"])
    fake.expire_watches("endpointslices")
    assert await answered_by(running, cookie, [a], "the relist") < 1.0
    # A dropped connection: the change made meanwhile arrives after the reconnect.
    await until(lambda: fake.open_watches("endpointslices") == 1, "the watch after the relist")
    fake.end_watches("endpointslices", "drop")
    fake.apply(endpoint_slice([c], name="web-slice-b"))
    fake.apply(endpoint_slice([], name="web-slice"))
    assert await answered_by(running, cookie, [c], "the change after the drop") < 1.0
    metrics = await scrape(running)
    for reason in ("expired", "dropped"):
        series = f'{{reason="{reason}",resource="endpointslices"}} 1.0'
        assert f"sticky_proxy_kubernetes_watch_restarts_total{series}" in metrics


async def until_ready(running: Proxy) -> None:
    async with asyncio.timeout(10):
        while await running.readyz() != 200:
            await asyncio.sleep(0.02)


async def scrape(running: Proxy) -> str:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://{running.metrics}/metrics") as response,
    ):
        return await response.text()


async def test_a_403_keeps_readyz_at_503_until_allowed(
    cluster: Cluster, proxy: list[Proxy]
) -> None:
    fake = cluster.fake
    (pod,) = await cluster.pods.start(1)
    for obj in web_app([pod]):
        fake.apply(obj)
    fake.forbid("ingresses", "list")
    running = await serve(cluster, proxy)
    await until(lambda: len(fake.list_requests("ingresses")) >= 3, "retries with backoff")
    assert await running.readyz() == 503
    early = asyncio.ensure_future(request(running))  # waits in the listening queue, no 503
    await asyncio.sleep(0.1)
    assert not early.done()
    fake.allow("ingresses", "list")
    await until_ready(running)
    assert (await early)[:2] == (200, pod.name)
    assert (await request(running))[1] == pod.name
    refused = [line for line in running.log.decode().splitlines() if "403 Forbidden" in line]
    assert len(refused) == 1, refused
    assert "ingresses.networking.k8s.io: list refused (403 Forbidden)" in refused[0]
    assert 'cannot list resource "ingresses"' in refused[0]


async def routes_of(cluster: Cluster) -> str:
    """`sticky-proxy routes --kubernetes` against the fake cluster: its table (exit 0)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "proxy", "routes", "--kubernetes", "--kubeconfig",
        str(cluster.config), cwd=REPO, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    async with asyncio.timeout(30):
        out, err = await process.communicate()
    assert process.returncode == 0, err
    return out.decode()


async def test_routes_lists_the_cluster_once(cluster: Cluster) -> None:
    (pod,) = await cluster.pods.start(1)
    for obj in web_app([pod], affinity="cookie"):
        cluster.fake.apply(obj)
    out = await routes_of(cluster)
    assert out.splitlines()[0] == "host app.test"
    assert f"{pod.host}:{pod.port}" in out
    assert not cluster.fake.watch_requests("endpointslices"), "one list, no watch"


async def test_routes_lists_http_routes_and_does_without_what_it_may_not_read(
    cluster: Cluster,
) -> None:
    """The Gateway API kinds too: absent CRDs leave them out silently, a kind RBAC forbids is
    one warning, and the Ingresses are listed either way."""
    fake = cluster.fake
    (pod,) = await cluster.pods.start(1)
    for obj in (*web_app([pod]), *gateway_world()):
        fake.apply(obj)

    table = await routes_of(cluster)
    assert "host gw.test" in table and "host app.test" in table
    assert "HTTPRoute default/web Gateway default/gw: Accepted=True(Accepted)" in table
    fake.forbid("referencegrants", "list")
    table = await routes_of(cluster)
    assert "host gw.test" in table
    assert (
        "  referencegrants.gateway.networking.k8s.io: not listed (403 Forbidden: "
        "referencegrants.gateway.networking.k8s.io is forbidden: User "
    ) in table
    fake.uninstall()
    table = await routes_of(cluster)
    assert "host app.test" in table and "gw.test" not in table and "warnings" not in table


def gateway_world() -> list[dict[str, object]]:
    group = "gateway.networking.k8s.io/v1"
    return [
        {"apiVersion": group, "kind": "GatewayClass", "metadata": {"name": "sticky-proxy"},
         "spec": {"controllerName": "sticky-proxy.io/gateway-controller"}},
        {"apiVersion": group, "kind": "Gateway", "metadata": {"name": "gw", "namespace": "default"},
         "spec": {"gatewayClassName": "sticky-proxy",
                  "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}]}},
        {"apiVersion": group, "kind": "HTTPRoute",
         "metadata": {"name": "web", "namespace": "default"},
         "spec": {"parentRefs": [{"name": "gw"}], "hostnames": ["gw.test"],
                  "rules": [{"backendRefs": [{"name": "web", "port": 80}]}]}},
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("command", "code"), [("serve", 2), ("routes", 1)], ids=["serve", "routes"]
)
async def test_a_broken_kubeconfig_is_one_line(tmp_path: Path, command: str, code: int) -> None:
    broken = tmp_path / "config"
    broken.write_text("contexts: [{name: a, context: {cluster: a}}]\ncurrent-context: a\n")
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "proxy", command, "--kubernetes", "--kubeconfig", str(broken),
        *(["--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"] if command == "serve"
          else []),
        cwd=REPO, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    async with asyncio.timeout(30):
        _, err = await process.communicate()
    assert process.returncode == code
    lines = [line for line in err.decode().splitlines() if "error" in line]
    assert lines == [
        f"sticky-proxy: error: kubeconfig {broken}: context 'a': cluster 'a' is not defined"
    ]


async def test_routes_reads_the_auth_secret_an_ingress_names(cluster: Cluster) -> None:
    """Listed after the Ingresses: the Secret an auth-secret names is read whole, another not."""
    fake = cluster.fake
    (pod,) = await cluster.pods.start(1)
    for obj in web_app([pod], auth_type="basic", auth_secret="users"):
        fake.apply(obj)
    fake.apply(auth_secret("users", auth="foo:{PLAIN}bar\nbob:{PLAIN}x\n"))
    fake.apply(auth_secret("unnamed", auth="foo:{PLAIN}bar\n"))
    table = await routes_of(cluster)
    assert "basic auth: 2 users of Secret default/users (401)" in table
    fake.delete({"kind": "Secret", "metadata": {"name": "users", "namespace": "default"}})
    table = await routes_of(cluster)
    assert "auth-secret default/users not found; its paths answer 503" in table

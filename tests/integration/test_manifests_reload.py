"""The --manifests source in a running proxy: every kind of file change goes live within a second,
a broken change keeps the last good routes, and readiness and reload metrics say so."""

from __future__ import annotations

import asyncio
import logging
import os
import statistics
from pathlib import Path

import aiohttp
import pytest

from proxy.app.runtime import ProxyServer, serve
from proxy.app.settings import ServeSettings
from proxy.control.sources.manifests import POLL_INTERVAL, ManifestSource
from proxy.control.sources.source import SourceError
from proxy.control.sources.static import static_snapshot
from proxy.control.translate import TranslateOptions
from proxy.core.values import Address
from tests.integration.cluster import (
    Pods,
    get,
    ingress,
    reload_after,
    reloads,
    rule,
    until,
    web_app,
    write_manifest,
)
from tests.integration.conftest import StartManifestProxy
from tests.integration.harness import GatedSource

LOCAL = ServeSettings(listen=Address("127.0.0.1", 0), metrics_listen=Address("127.0.0.1", 0))


async def admin_get(server: ProxyServer, path: str) -> tuple[int, str]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://{server.metrics_address}{path}") as response,
    ):
        return response.status, await response.text()


async def test_a_change_is_live_within_a_second_at_the_default_interval(
    pods: Pods, tmp_path: Path, manifest_proxy: StartManifestProxy
) -> None:
    first, *others = await pods.start(6)
    manifest = tmp_path / "cluster.yaml"
    write_manifest(manifest, web_app([first]))
    server = await manifest_proxy(manifest, poll_interval=POLL_INTERVAL)

    def serving(count: int) -> bool:
        snapshot = server.publisher.current
        return snapshot is not None and len(snapshot.routes[0].cluster.endpoints) == count

    delays = []
    for count in range(2, len(others) + 2):
        write_manifest(manifest, web_app([first, *others[: count - 1]]))
        delays.append(await until(lambda: serving(count), f"{count} endpoints served"))  # noqa: B023
    # Poll 250 ms, read once the files held still for one more poll: 0.25-0.5 s, then translate.
    assert max(delays) < 1.0, delays
    print(f"reload latency over {len(delays)} edits: median {statistics.median(delays):.3f} s, "
          f"max {max(delays):.3f} s")  # fmt: skip


async def test_in_place_edit_and_files_added_and_removed_in_a_directory(
    pods: Pods, tmp_path: Path, manifest_proxy: StartManifestProxy
) -> None:
    (pod,) = await pods.start(1)
    write_manifest(tmp_path / "app.yaml", web_app([pod]))
    server = await manifest_proxy(tmp_path)
    assert (await get(server, host="other.test")).status == 404

    other = tmp_path / "more" / "other.yaml"
    other.parent.mkdir()
    extra = ingress("other", rule("other.test"))
    assert await reload_after(server, lambda: write_manifest(other, [extra])) == "success"
    assert (await get(server, host="other.test")).status == 200

    # Rewritten in place (truncated and written, as many editors save), not renamed.
    extra["metadata"]["annotations"]["nginx.ingress.kubernetes.io/affinity"] = "cookie"
    assert await reload_after(server, lambda: write_manifest_in_place(other, extra)) == "success"
    assert (await get(server, host="other.test")).cookie("INGRESSCOOKIE")

    assert await reload_after(server, other.unlink) == "success"
    assert (await get(server, host="other.test")).status == 404


def write_manifest_in_place(file: Path, obj: dict[str, object]) -> None:
    staged = file.with_name("staged.yaml.txt")
    write_manifest(staged, [obj])
    file.write_bytes(staged.read_bytes())
    staged.unlink()


async def test_configmap_volume_symlink_swap(
    pods: Pods, tmp_path: Path, manifest_proxy: StartManifestProxy
) -> None:
    first, second = await pods.start(2)
    for stamp, pod in (("..v1", first), ("..v2", second)):
        (tmp_path / stamp).mkdir()
        write_manifest(tmp_path / stamp / "cluster.yaml", web_app([pod]))
    (tmp_path / "..data").symlink_to("..v1")
    (tmp_path / "cluster.yaml").symlink_to("..data/cluster.yaml")
    server = await manifest_proxy(tmp_path)
    assert (await get(server)).pod == first.name

    def swap() -> None:  # as the kubelet does it: a new link renamed over `..data`
        (tmp_path / "..data_tmp").symlink_to("..v2")
        os.replace(tmp_path / "..data_tmp", tmp_path / "..data")

    assert await reload_after(server, swap) == "success"
    assert (await get(server)).pod == second.name


@pytest.mark.parametrize(
    "case",
    [
        ("apiVersion: v1\nkind: Service\nmetadata: {name: [\n", ":4: invalid YAML: "),
        ("- just\n- a list\n", ":1: document 1 is a list, not a Kubernetes object"),
        (
            "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: bad}\n"
            "spec:\n  rules:\n  - http:\n      paths:\n      - {path: /, pathType: Bogus}\n",
            ":1: Ingress default/bad: spec.rules[0].http.paths[0].pathType: 'Bogus'",
        ),
    ],
    ids=["yaml-syntax", "not-an-object", "invalid-ingress"],
)
async def test_a_broken_file_keeps_the_last_good_routes_until_fixed(
    pods: Pods,
    tmp_path: Path,
    manifest_proxy: StartManifestProxy,
    caplog: pytest.LogCaptureFixture,
    case: tuple[str, str],
) -> None:
    broken, named = case
    first, second = await pods.start(2)
    write_manifest(tmp_path / "app.yaml", web_app([first], affinity="cookie"))
    server = await manifest_proxy(tmp_path)
    cookie = (await get(server)).cookie("INGRESSCOOKIE").split(";")[0]
    caplog.set_level(logging.INFO, "sticky_proxy")
    extra = tmp_path / "extra.yaml"

    assert await reload_after(server, lambda: extra.write_text(broken)) == "failure"
    (line,) = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert line.getMessage().startswith(
        f"routing update refused, keeping the last good routes: {extra}{named}"
    )
    assert "\n" not in line.getMessage()
    _, metrics = await admin_get(server, "/metrics")
    assert "sticky_proxy_config_last_reload_successful 0.0" in metrics
    assert 'sticky_proxy_config_reloads_total{result="failure"} 1.0' in metrics
    answer = await get(server, cookie=cookie)
    assert (answer.status, answer.pod, answer.set_cookies) == (200, first.name, ())
    assert (await admin_get(server, "/readyz"))[0] == 200  # still serving, just not updated

    # Nothing changed: the failure is not reported again at every poll.
    await asyncio.sleep(0.3)
    assert reloads(server, "failure") == 1

    # A change elsewhere while the file is still broken is refused too: every reload is whole.
    assert await reload_after(
        server, lambda: write_manifest(tmp_path / "app.yaml", web_app([second], affinity="cookie"))
    ) == "failure"  # fmt: skip
    assert (await get(server)).pod == first.name

    assert await reload_after(server, extra.unlink) == "success"
    assert (await get(server)).pod == second.name
    _, metrics = await admin_get(server, "/metrics")
    assert "sticky_proxy_config_last_reload_successful 1.0" in metrics


async def test_a_half_written_file_is_retried_when_it_changes_again(
    pods: Pods, tmp_path: Path, manifest_proxy: StartManifestProxy
) -> None:
    first, second = await pods.start(2)
    manifest = tmp_path / "cluster.yaml"
    write_manifest(manifest, web_app([first]))
    server = await manifest_proxy(manifest)
    write_manifest(tmp_path / "next.txt", web_app([second]))
    whole = (tmp_path / "next.txt").read_bytes()
    cut = whole.index(b"addresses")  # mid-object: does not translate
    with manifest.open("wb") as writer:
        writer.write(whole[:cut])
        writer.flush()
        await asyncio.sleep(0.3)  # long enough for the half to be read and refused
        writer.write(whole[cut:])
    await until(lambda: reloads(server, "success") == 2, "the whole file loaded")
    assert reloads(server, "failure") == 1
    assert (await get(server)).pod == second.name


async def test_a_first_load_that_fails_gives_up_with_the_file_named(tmp_path: Path) -> None:
    manifest = tmp_path / "cluster.yaml"
    manifest.write_text("kind: Service\nmetadata: {name: [\n")
    source = ManifestSource((manifest,), TranslateOptions())
    server = ProxyServer(LOCAL)
    await server.start(source)
    try:
        assert server.feeding is not None
        with pytest.raises(SourceError, match=rf"^{manifest}:3: invalid YAML: "):
            await asyncio.wait_for(server.feeding, 5)
        assert not server.ready()
    finally:
        await server.stop(grace=0)


async def test_readyz_follows_the_first_snapshot_and_shutdown(pods: Pods) -> None:
    (pod,) = await pods.start(1)
    pod.slow_seconds = 1.0
    source = GatedSource(static_snapshot([pod.endpoint], None, TranslateOptions().upstream))
    server = ProxyServer(LOCAL)
    await server.start(source)
    stopping = None
    try:
        assert await admin_get(server, "/readyz") == (503, "not ready\n")
        _, metrics = await admin_get(server, "/metrics")
        assert 'sticky_proxy_config_reloads_total{result="success"} 0.0' in metrics
        assert 'sticky_proxy_config_reloads_total{result="failure"} 0.0' in metrics
        early = asyncio.ensure_future(get(server))  # waits in the listening queue, no 503
        await asyncio.sleep(0.1)
        assert not early.done()

        source.gate.set()
        await until(server.ready, "ready after the first snapshot")
        assert (await admin_get(server, "/readyz"))[0] == 200
        assert (await early).status == 200
        assert reloads(server, "success") == 1

        in_flight = asyncio.ensure_future(get(server, "/slow"))
        await until(lambda: pod.requests == 2, "the slow request reaching the pod")
        stopping = asyncio.ensure_future(server.stop(grace=5))
        await until(lambda: server.ctx is not None and server.ctx.closing, "shutdown begun")
        assert (await admin_get(server, "/readyz"))[0] == 503
        assert (await in_flight).status == 200
    finally:
        await (stopping or server.stop(grace=0))


async def test_serve_raises_source_error_and_closes_its_listeners(tmp_path: Path) -> None:
    manifest = tmp_path / "cluster.yaml"
    manifest.write_text("[1, 2]\n")
    bound: list[Address] = []
    with pytest.raises(SourceError, match="document 1 is a list"):
        await asyncio.wait_for(
            serve(LOCAL, ManifestSource((manifest,), TranslateOptions()), bound.append), 5
        )
    (address,) = bound
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection(address.host, address.port)

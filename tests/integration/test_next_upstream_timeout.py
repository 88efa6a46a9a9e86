"""proxy-next-upstream-timeout through a real proxy from manifests (docs/behaviour.md,
"Retries"): the time from the first try within which another endpoint may still be tried.

Every pod here fails slowly: it answers `/slow` only after 5 s, and the Ingress's
proxy-read-timeout of 1 s makes each try a timeout of at least a second. Only lower bounds
of time are asserted; the tries are counted on the pods.
"""

from __future__ import annotations

from pathlib import Path
from time import perf_counter

from tests.integration.cluster import Pods, get, web_app, write_manifest
from tests.integration.conftest import StartManifestProxy

SLOW = {"proxy-read-timeout": "1", "proxy-next-upstream-tries": "3"}


async def _tries(
    pods: Pods, manifest: Path, manifest_proxy: StartManifestProxy, **annotations: str
) -> tuple[int, int, float]:
    """(status, tries the pods saw, seconds) for one GET /slow to three slow pods."""
    started = await pods.start(3)
    for pod in started:
        pod.slow_seconds = 5.0
    write_manifest(manifest, web_app(started, **SLOW, **annotations))
    server = await manifest_proxy(manifest)
    began = perf_counter()
    answer = await get(server, "/slow")
    return answer.status, sum(pod.requests for pod in started), perf_counter() - began


async def test_a_timeout_shorter_than_two_failures_stops_after_the_second(
    pods: Pods, manifest: Path, manifest_proxy: StartManifestProxy
) -> None:
    # first failure at ~1 s (< 2: retried), second at ~2 s (>= 2: answered, not retried)
    status, tries, seconds = await _tries(
        pods, manifest, manifest_proxy, **{"proxy-next-upstream-timeout": "2"}
    )
    assert (status, tries) == (504, 2)
    assert seconds >= 2.0


async def test_without_a_timeout_every_try_is_spent(
    pods: Pods, manifest: Path, manifest_proxy: StartManifestProxy
) -> None:
    # ingress-nginx's default, 0: only proxy-next-upstream-tries limits the retries
    status, tries, seconds = await _tries(
        pods, manifest, manifest_proxy, **{"proxy-next-upstream-timeout": "0"}
    )
    assert (status, tries) == (504, 3)
    assert seconds >= 3.0


async def test_a_timeout_shorter_than_one_failure_allows_no_retry(
    pods: Pods, manifest: Path, manifest_proxy: StartManifestProxy
) -> None:
    status, tries, seconds = await _tries(
        pods, manifest, manifest_proxy, **{"proxy-next-upstream-timeout": "1"}
    )
    assert (status, tries) == (504, 1)
    assert seconds >= 1.0

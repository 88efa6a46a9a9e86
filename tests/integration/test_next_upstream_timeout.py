"""proxy-next-upstream-timeout through a real proxy from manifests: the time from the first
try within which another endpoint may still be tried (docs/behaviour.md, "Retries").

Every pod here fails slowly: it answers `/slow` only after 5 s, and the Ingress's
proxy-read-timeout of 1 s makes each try a timeout of at least a second. Only lower bounds
of time are asserted; the tries are counted on the pods.
"""

from __future__ import annotations

from pathlib import Path
from time import perf_counter

import pytest

from tests.integration.cluster import Pods, get, web_app, write_manifest
from tests.integration.conftest import StartManifestProxy

SLOW = {"proxy-read-timeout": "1", "proxy-next-upstream-tries": "3"}


@pytest.mark.parametrize(
    ("timeout", "tries"),
    [
        ("2", 2),  # first failure at ~1 s (< 2: retried), second at ~2 s (>= 2: answered)
        ("1", 1),  # shorter than one failure: no retry at all
        ("0", 3),  # ingress-nginx's default: only proxy-next-upstream-tries limits them
    ],
    ids=["shorter-than-two-failures", "shorter-than-one", "no-limit"],
)
async def test_should_stop_retrying_once_proxy_next_upstream_timeout_has_passed(
    pods: Pods, manifest: Path, manifest_proxy: StartManifestProxy, timeout: str, tries: int
) -> None:
    """Each try fails after at least a second (proxy-read-timeout), on three pods that take 5."""
    started = await pods.start(3)
    for pod in started:
        pod.slow_seconds = 5.0
    annotations = {"proxy-next-upstream-timeout": timeout}
    write_manifest(manifest, web_app(started, **SLOW, **annotations))
    server = await manifest_proxy(manifest)
    began = perf_counter()
    answer = await get(server, "/slow")
    seconds = perf_counter() - began
    assert (answer.status, sum(pod.requests for pod in started)) == (504, tries)
    assert seconds >= tries  # (a lower bound only: each try took its second)

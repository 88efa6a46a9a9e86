"""A reflector against the fake API server: every edge case of README (c) that a list/watch
client meets, and what the reflector's objects look like afterwards. Nothing is mocked: real
TLS, real chunked streams, real disconnects."""

from __future__ import annotations

import asyncio
import itertools
import logging
from typing import Any

import pytest

from proxy.control.sources.kubernetes.reflector import WatchTuning
from proxy.control.sources.kubernetes.resources import (
    ENDPOINT_SLICES,
    HTTP_ROUTES,
    REFERENCE_GRANTS,
    SERVICES,
)
from tests.integration.cluster import until
from tests.integration.kubernetes.conftest import (
    FAST,
    Reflecting,
    StartReflector,
    slice_object,
)
from tests.kube_fake.server import FakeApiServer, internal_error, too_large_status

PLURAL = "endpointslices"


def seed(fake: FakeApiServer, count: int) -> None:
    for number in range(count):
        fake.apply(slice_object(f"web-{number:03}", f"10.0.0.{number % 250 + 1}"))


def resumed_from(fake: FakeApiServer) -> list[str]:
    return [r.query.get("resourceVersion", "") for r in fake.watch_requests(PLURAL)]


async def watches_opened(fake: FakeApiServer, count: int) -> None:
    await until(lambda: fake.open_watches(PLURAL) >= count, f"{count} open watch(es)")


async def watching(
    fake: FakeApiServer, reflect: StartReflector, count: int, watch: bool = True, **options: Any
) -> Reflecting:
    """`count` slices listed by a new reflector, and (unless `watch` is False) its watch open."""
    seed(fake, count)
    state = await reflect(**options)
    if watch:
        await watches_opened(fake, 1)
    return state


async def test_paged_list_with_uneven_pages_then_a_watch_from_its_version(
    fake: FakeApiServer, reflect: StartReflector
) -> None:
    seed(fake, 25)
    fake.uneven_pages = True  # pages shorter than the limit, even empty, with a continue token
    listed_at = str(fake.rv)
    state = await reflect(tuning=WatchTuning(page_size=4, backoff_base=0.05, inactivity=5))
    assert len(state.reflector.objects) == 25
    lists = fake.list_requests(PLURAL)
    assert len(lists) > 25 // 4
    assert all(r.query["limit"] == "4" for r in lists)
    assert "continue" not in lists[0].query and all("continue" in r.query for r in lists[1:])
    obj = state.reflector.objects["default", "web-000"]
    assert (obj["kind"], obj["apiVersion"]) == ("EndpointSlice", "discovery.k8s.io/v1")
    await watches_opened(fake, 1)
    (watch,) = fake.watch_requests(PLURAL)
    assert watch.query["resourceVersion"] == listed_at
    assert watch.query["allowWatchBookmarks"] == "true"
    assert 300 <= int(watch.query["timeoutSeconds"]) <= 600  # jittered, as the tuning says


async def test_an_expired_continue_token_starts_the_list_over(
    fake: FakeApiServer, reflect: StartReflector
) -> None:
    seed(fake, 10)
    original = fake._list

    def expire_after_first_page(*args: object, **kwargs: object) -> object:
        response = original(*args, **kwargs)  # type: ignore[arg-type]
        if len(fake.list_requests(PLURAL)) == 1:
            fake.expire_continue_tokens()
        return response

    fake._list = expire_after_first_page  # type: ignore[method-assign]
    state = await reflect(tuning=WatchTuning(page_size=3, backoff_base=0.05))
    assert len(state.reflector.objects) == 10
    lists = fake.list_requests(PLURAL)
    # page 1, an expired page 2, then the whole list again from the start
    assert [("continue" in r.query) for r in lists[:3]] == [False, True, False]


async def test_changes_arrive_and_a_clean_end_resumes_from_the_last_event(
    fake: FakeApiServer, reflect: StartReflector
) -> None:
    state = await watching(fake, reflect, 2)
    fake.apply(slice_object("web-000", "10.0.9.9"))
    fake.delete(slice_object("web-001"))
    fake.apply(slice_object("web-new", "10.0.9.8"))
    last = str(fake.rv)
    fake.bump(5)  # changes to other resources: gaps in this one's versions
    await until(lambda: state.names() == {"web-000", "web-new"}, "the three changes")
    endpoints = state.reflector.objects["default", "web-000"]["endpoints"]
    assert endpoints == [{"addresses": ["10.0.9.9"], "conditions": {"ready": True}}]
    fake.end_watches(PLURAL, "close")  # timeoutSeconds: a clean end, no event
    await until(lambda: len(fake.watch_requests(PLURAL)) == 2, "a new watch")
    assert resumed_from(fake)[-1] == last
    assert len(fake.list_requests(PLURAL)) == 1, "a clean end needs no list"
    assert state.restarts["closed"] == 1


async def test_bookmarks_move_the_resume_point(
    fake: FakeApiServer, reflect: StartReflector
) -> None:
    fake.bookmark_interval = 0.05
    state = await watching(fake, reflect, 1, watch=False)
    fake.bump(100)  # the bookmark carries a version ahead of any slice's
    await until(lambda: state.reflector._version == str(fake.rv), "a bookmark")
    assert state.changes == 1, "a bookmark is no change"
    fake.end_watches(PLURAL, "close")
    await until(lambda: len(fake.watch_requests(PLURAL)) == 2, "a new watch")
    assert resumed_from(fake)[-1] == str(fake.rv)


@pytest.mark.parametrize("variant", ["cache", "etcd", "gone"])
async def test_410_in_the_stream_relists_and_forgets_what_was_deleted_meanwhile(
    fake: FakeApiServer, reflect: StartReflector, variant: str
) -> None:
    state = await watching(fake, reflect, 3)
    fake.hold_watches(PLURAL)  # the client hears nothing of these:
    fake.delete(slice_object("web-001"))
    fake.apply(slice_object("web-003", "10.0.0.4"))
    fake.expire_watches(PLURAL, variant)  # ... and its version is gone from history
    await until(lambda: state.names() == {"web-000", "web-002", "web-003"}, "the relist")
    assert state.restarts["expired"] >= 1
    assert len(fake.list_requests(PLURAL)) == 2
    await watches_opened(fake, 1)
    assert int(resumed_from(fake)[-1]) >= fake.compacted_at, "never from the expired version"


async def test_http_410_on_the_watch_request_relists(
    fake: FakeApiServer, reflect: StartReflector
) -> None:
    fake.fail(PLURAL, "watch", 410)
    state = await watching(fake, reflect, 2, watch=False)
    await until(lambda: len(fake.list_requests(PLURAL)) == 2, "a second list")
    await watches_opened(fake, 1)
    assert state.restarts["expired"] == 1


async def test_a_version_too_large_backs_off_and_relists(
    fake: FakeApiServer, reflect: StartReflector
) -> None:
    state = await watching(fake, reflect, 1)
    fake.end_watches(PLURAL, "error", too_large_status("99999", fake.rv))
    await until(lambda: len(fake.list_requests(PLURAL)) == 2, "a second list")
    assert state.restarts["error"] == 1


@pytest.mark.parametrize(
    ("how", "payload", "reason"),
    [
        ("error", internal_error(), "error"),  # an ERROR 500 event, then the end of the stream
        ("drop", None, "dropped"),  # half a line, then RST: no terminating chunk
    ],
    ids=["error-500", "cut-mid-event"],
)
async def test_a_broken_watch_resumes_from_the_last_whole_event_without_a_list(
    fake: FakeApiServer,
    reflect: StartReflector,
    how: str,
    payload: dict[str, Any] | None,
    reason: str,
) -> None:
    state = await watching(fake, reflect, 1)
    fake.apply(slice_object("web-001", "10.0.0.2"))
    await until(lambda: "web-001" in state.names(), "the event")
    seen = str(fake.rv)
    fake.end_watches(PLURAL, how, payload)
    fake.delete(slice_object("web-000"))  # while the watch is down
    await until(lambda: state.names() == {"web-001"}, "the deletion, after the reconnect")
    assert resumed_from(fake)[-1] == seen
    assert len(fake.list_requests(PLURAL)) == 1
    assert state.restarts[reason] == 1


async def test_a_silent_connection_is_given_up_after_the_inactivity_timeout(
    fake: FakeApiServer, reflect: StartReflector
) -> None:
    seed(fake, 1)
    tuning = WatchTuning(inactivity=0.3, backoff_base=0.05, backoff_cap=0.5)
    state = await reflect(tuning=tuning)
    await watches_opened(fake, 1)
    fake.end_watches(PLURAL, "freeze")  # no FIN, no RST, no bookmark: nothing at all
    fake.apply(slice_object("web-001", "10.0.0.2"))  # lost on the frozen stream
    took = await until(lambda: "web-001" in state.names(), "the change, via a new watch")
    assert 0.2 < took < 2.0
    assert state.restarts["stalled"] == 1


async def test_429_waits_at_least_retry_after(fake: FakeApiServer, reflect: StartReflector) -> None:
    fake.fail(PLURAL, "watch", 429, retry_after=1)
    state = await watching(fake, reflect, 1, watch=False)
    await until(lambda: len(fake.watch_requests(PLURAL)) == 2, "the retry", limit=3)
    first, second = fake.watch_requests(PLURAL)
    assert second.at - first.at >= 1.0
    assert state.restarts["throttled"] == 1


@pytest.mark.parametrize("code", [500, 503])
async def test_server_errors_on_the_list_are_retried_with_backoff(
    fake: FakeApiServer, reflect: StartReflector, code: int
) -> None:
    fake.fail(PLURAL, "list", code, times=3)
    state = await watching(fake, reflect, 1, watch=False)
    lists = fake.list_requests(PLURAL)
    assert len(lists) == 4
    gaps = [b.at - a.at for a, b in itertools.pairwise(lists)]
    assert all(gap >= FAST.backoff_base / 2 * 0.9 for gap in gaps)
    assert gaps[2] > gaps[0], "the delay grows"
    assert state.restarts["error"] == 3


async def test_403_keeps_it_unsynced_logs_once_and_retries_until_allowed(
    fake: FakeApiServer, reflect: StartReflector, caplog: pytest.LogCaptureFixture
) -> None:
    seed(fake, 1)
    fake.forbid(PLURAL, "list")
    with caplog.at_level(logging.INFO, "sticky_proxy.kubernetes"):
        state = await reflect(synced=False)
        await until(lambda: len(fake.list_requests(PLURAL)) >= 4, "retries")
        assert not state.reflector.synced.is_set()
        fake.allow(PLURAL, "list")
        await until(state.reflector.synced.is_set, "the list, once allowed")
    refused = [r.getMessage() for r in caplog.records if "403" in r.getMessage()]
    assert refused == [
        "endpointslices.discovery.k8s.io: list refused (403 Forbidden): "
        'endpointslices.discovery.k8s.io is forbidden: User "system:serviceaccount:ingress:proxy" '
        'cannot list resource "endpointslices" in API group "discovery.k8s.io" at the cluster '
        "scope; retrying with backoff, not ready until it is allowed"
    ]
    assert state.restarts["forbidden"] >= 3


async def test_never_a_hot_loop_when_every_watch_is_refused(
    fake: FakeApiServer, reflect: StartReflector
) -> None:
    seed(fake, 1)
    fake.fail(PLURAL, "watch", 410, times=1000)  # what made kr8s send 10,548 requests in 20 s
    await reflect(tuning=WatchTuning(backoff_base=0.1, backoff_cap=1.0))
    await asyncio.sleep(2.0)
    requests = len(fake.requests)
    # backoff 0.05-0.1, 0.1-0.2, 0.2-0.4, 0.4-0.8, 0.5-1, ...: a list and a watch each time
    assert requests <= 2 * 8, requests


async def test_huge_events_cut_at_random_bytes(
    fake: FakeApiServer, reflect: StartReflector
) -> None:
    fake.split_chunks = True
    state = await reflect()
    await watches_opened(fake, 1)
    addresses = [f"10.{i // 65536}.{i // 256 % 256}.{i % 256}" for i in range(1000)]
    big = slice_object("big", *addresses)
    big["metadata"]["annotations"] = {"note": "naïve café ✓ " * 100_000}  # ~1.5 MB, UTF-8
    fake.apply(big)
    fake.apply(slice_object("after", "10.9.9.9"))
    await until(lambda: state.names() == {"big", "after"}, "both events")
    assert len(state.reflector.objects["default", "big"]["endpoints"]) == 1000
    assert (
        state.reflector.objects["default", "big"]["metadata"]["annotations"]
        == big["metadata"]["annotations"]
    )


async def test_a_burst_of_deletions(fake: FakeApiServer, reflect: StartReflector) -> None:
    state = await watching(fake, reflect, 300)
    for number in range(300):
        fake.delete(slice_object(f"web-{number:03}"))
    await until(lambda: not state.reflector.objects, "every deletion")


async def test_bookkeeping_only_changes_are_no_change(
    fake: FakeApiServer, reflect: StartReflector
) -> None:
    state = await watching(fake, reflect, 1)
    noisy = slice_object("web-000", "10.0.0.1")
    noisy["metadata"]["annotations"] = {
        "endpoints.kubernetes.io/last-change-trigger-time": "2025-06-03T17:42:11Z"
    }
    noisy["metadata"]["managedFields"] = [{"manager": "kube-controller-manager"}]
    fake.apply(noisy)
    fake.apply(slice_object("web-001", "10.0.0.2"))
    await until(lambda: "web-001" in state.names(), "the second event")
    assert state.changes == 2, "the first list and web-001; not the bookkeeping"


async def test_services_too(fake: FakeApiServer, reflect: StartReflector) -> None:
    fake.apply({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
                "spec": {"ports": [{"port": 80}]}})  # fmt: skip
    state = await reflect(SERVICES)
    assert state.names() == {"web"}
    assert ENDPOINT_SLICES is not SERVICES


async def test_403_on_the_watch_alone_keeps_the_listed_objects(
    fake: FakeApiServer, reflect: StartReflector, caplog: pytest.LogCaptureFixture
) -> None:
    fake.forbid(PLURAL, "watch")  # RBAC can allow list and deny watch
    with caplog.at_level(logging.INFO, "sticky_proxy.kubernetes"):
        state = await watching(fake, reflect, 2, watch=False)
        await until(lambda: len(fake.watch_requests(PLURAL)) >= 3, "watch retries")
        assert state.names() == {"web-000", "web-001"}
        fake.allow(PLURAL, "watch")
        await watches_opened(fake, 1)
        fake.delete(slice_object("web-000"))
        await until(lambda: state.names() == {"web-001"}, "the deletion, once watching")
    refused = [r.getMessage() for r in caplog.records if "403 Forbidden" in r.getMessage()]
    assert len(refused) == 1
    assert refused[0].startswith("endpointslices.discovery.k8s.io: watch refused")
    assert refused[0].endswith("retrying with backoff"), "listed already: ready"


async def test_slices_without_endpoints_or_ports(
    fake: FakeApiServer, reflect: StartReflector
) -> None:
    empty = slice_object("empty", endpoints=None, ports=None)  # what a Service with no pods has
    fake.apply(empty)
    state = await reflect()
    assert state.reflector.objects["default", "empty"]["endpoints"] is None


async def test_the_servers_timeout_ends_the_watch_and_it_is_resumed_at_once(
    fake: FakeApiServer, reflect: StartReflector
) -> None:
    tuning = WatchTuning(watch_timeout=(1, 1), backoff_base=5.0, backoff_cap=5.0)
    state = await watching(fake, reflect, 1, tuning=tuning)
    await until(lambda: len(fake.watch_requests(PLURAL)) == 2, "the next watch", limit=3)
    first, second = fake.watch_requests(PLURAL)
    assert 1.0 <= second.at - first.at < 1.5, "ended by the server after 1 s, resumed without delay"
    assert second.query["resourceVersion"] == first.query["resourceVersion"]
    assert state.restarts["closed"] == 1


def http_route(name: str = "web", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"parentRefs": [{"name": "gw"}], **spec},
    }


async def test_a_crd_not_installed_settles_is_logged_once_and_is_looked_for_again(
    fake: FakeApiServer, reflect: StartReflector, caplog: pytest.LogCaptureFixture
) -> None:
    fake.uninstall("httproutes")
    with caplog.at_level(logging.INFO, "sticky_proxy.kubernetes"):
        state = await reflect(HTTP_ROUTES, synced=False)
        reflector = state.reflector
        await until(reflector.settled.is_set, "settled by the 404")
        await until(lambda: len(fake.list_requests("httproutes")) >= 4, "looked for again")
        assert reflector.absent and not reflector.synced.is_set() and not reflector.objects
        fake.install("httproutes")
        fake.apply(http_route())
        await until(reflector.synced.is_set, "listed once installed")
    assert state.names() == {"web"} and not reflector.absent
    times = [r.at for r in fake.list_requests("httproutes")]
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    assert all(0.2 <= gap <= 0.6 for gap in gaps), gaps  # 0.3 s, jittered by a quarter
    assert [r.getMessage() for r in caplog.records] == [
        "httproutes.gateway.networking.k8s.io: not served by the API server (404: its CRD is "
        "not installed); serving without it, looking again every 0.3 s",
        "httproutes.gateway.networking.k8s.io: served now (gateway.networking.k8s.io/v1); "
        "watching it",
    ]
    assert not state.restarts, "looking for a resource that is not there restarts no watch"


async def test_a_crd_deleted_under_a_watch_takes_its_objects_along(
    fake: FakeApiServer, reflect: StartReflector
) -> None:
    fake.apply(http_route("a"))
    fake.apply(http_route("b"))
    state = await reflect(HTTP_ROUTES)
    await until(lambda: fake.open_watches("httproutes") == 1, "the watch")
    changes = state.changes
    fake.uninstall("httproutes")
    await until(lambda: state.reflector.absent, "absent")
    assert not state.reflector.objects and not state.reflector.synced.is_set()
    assert state.changes > changes
    fake.install("httproutes")
    fake.apply(http_route("c"))
    await until(lambda: state.names() == {"c"}, "back once installed again")


async def test_reference_grants_are_read_as_v1beta1_where_v1_is_not_served(
    fake: FakeApiServer, reflect: StartReflector, caplog: pytest.LogCaptureFixture
) -> None:
    fake.install("referencegrants", versions=("v1beta1",))
    grant = {
        "apiVersion": "gateway.networking.k8s.io/v1beta1",
        "kind": "ReferenceGrant",
        "metadata": {"name": "grant", "namespace": "default"},
        "spec": {
            "from": [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "namespace": "a"}],
            "to": [{"group": "", "kind": "Service"}],
        },
    }
    fake.apply(grant)
    with caplog.at_level(logging.INFO, "sticky_proxy.kubernetes"):
        state = await reflect(REFERENCE_GRANTS)
    (listed,) = state.reflector.objects.values()
    assert listed["apiVersion"] == "gateway.networking.k8s.io/v1beta1"
    assert [r.path for r in fake.list_requests("referencegrants")] == [
        "/apis/gateway.networking.k8s.io/v1/referencegrants",
        "/apis/gateway.networking.k8s.io/v1beta1/referencegrants",
    ]
    assert [r.getMessage() for r in caplog.records] == [
        "referencegrants.gateway.networking.k8s.io: gateway.networking.k8s.io/v1 not served; "
        "reading gateway.networking.k8s.io/v1beta1"
    ]
    await until(lambda: fake.open_watches("referencegrants") == 1, "the watch")
    (watch,) = fake.watch_requests("referencegrants")
    assert watch.path == "/apis/gateway.networking.k8s.io/v1beta1/referencegrants"
    fake.apply({**grant, "metadata": {"name": "second", "namespace": "default"}})
    await until(lambda: state.names() == {"grant", "second"}, "a change through the v1beta1 watch")
    assert not state.restarts


async def test_a_status_change_alone_is_no_routing_change_for_the_kinds_whose_status_we_write(
    fake: FakeApiServer, reflect: StartReflector
) -> None:
    fake.apply(http_route())
    state = await reflect(HTTP_ROUTES)
    statuses = 0

    def status_changed() -> None:
        nonlocal statuses
        statuses += 1

    state.reflector.on_change(status_changed, status=True)
    await until(lambda: fake.open_watches("httproutes") == 1, "the watch")
    changes = state.changes
    route = fake.objects["httproutes"]["default", "web"]
    fake.apply({**route, "status": {"parents": []}})
    await until(lambda: statuses == 1, "the status listener hears of it")
    assert state.changes == changes
    fake.apply({**route, "spec": {"parentRefs": [{"name": "other"}]}})
    await until(lambda: state.changes == changes + 1, "a spec change is a routing change")
    assert statuses == 2

"""The publisher warms each new table's affinity rings in a thread, and only while it is current."""

from __future__ import annotations

import asyncio
import gc
import logging
import weakref

import pytest

from proxy.control.publisher import Publisher, warm_rings
from proxy.control.sources.static import static_snapshot
from proxy.core.model import Affinity, Endpoint, UpstreamPolicy
from proxy.core.routing import Snapshot
from proxy.system.heap import collect_everything, freeze_live_objects
from tests.tables import affinity_table


def table(*clusters: str) -> Snapshot:
    return affinity_table(clusters, endpoints=5)


def cold(snapshot: Snapshot) -> list[str]:
    return [c.name for c in snapshot.clusters if c.balancer.cold]


def test_warm_rings_builds_every_ring_of_a_wanted_table() -> None:
    snapshot = table("warm-a", "warm-b")
    assert cold(snapshot) == ["warm-a", "warm-b"]
    warm_rings(snapshot, lambda _: True)
    assert cold(snapshot) == []


def test_warm_rings_stops_once_the_table_is_replaced() -> None:
    snapshot = table("stop-a", "stop-b", "stop-c")
    asked: list[Snapshot] = []

    def wanted(candidate: Snapshot) -> bool:
        asked.append(candidate)
        return len(asked) == 1  # replaced after the first ring

    warm_rings(snapshot, wanted)
    assert cold(snapshot) == ["stop-b", "stop-c"]


def test_publishing_in_a_running_loop_warms_the_new_table() -> None:
    async def publish_and_wait() -> list[str]:
        publisher = Publisher()
        snapshot = table("live-a", "live-b")
        assert publisher.publish(snapshot)
        for _ in range(200):  # bounded: 2 s
            if not cold(snapshot):
                break
            await asyncio.sleep(0.01)
        return cold(snapshot)

    assert asyncio.run(publish_and_wait()) == []


def test_publishing_without_a_loop_leaves_rings_to_their_first_use() -> None:
    snapshot = table("lazy-a")
    Publisher().publish(snapshot)
    assert cold(snapshot) == ["lazy-a"]
    assert snapshot.routes[0].cluster.balancer.ring is not None
    assert cold(snapshot) == []


def test_a_stopping_publisher_warms_no_more_rings() -> None:
    publisher = Publisher()
    snapshot = table("stopping-a", "stopping-b")
    publisher.publish(snapshot)  # no loop: nothing warms yet
    publisher.stop_warming()
    warm_rings(snapshot, publisher.wants_rings_of)
    assert cold(snapshot) == ["stopping-a", "stopping-b"]


def test_a_published_table_is_out_of_the_cycle_collectors_sight() -> None:
    first, second = table("seen-a"), table("seen-b")
    publisher = Publisher()
    for snapshot in (first, second):
        publisher.publish(snapshot)
        # frozen: no full collection walks a table that may hold millions of objects
        assert not any(tracked is snapshot for tracked in gc.get_objects())
    replaced = weakref.ref(first.clusters[0].balancer)
    del first
    # Frozen, yet freed by reference counting once replaced: a table holds no reference cycle
    # (one that did would stay frozen, and leak, with every rebuild).
    assert replaced() is None


def test_the_reload_line_counts_the_draining_endpoints(caplog: pytest.LogCaptureFixture) -> None:
    endpoints = [Endpoint(f"10.9.0.{i}", 80, draining=i > 3) for i in range(1, 6)]
    with caplog.at_level(logging.INFO, "sticky_proxy.publisher"):
        Publisher().publish(static_snapshot(endpoints, Affinity(), UpstreamPolicy()))
    assert [r.getMessage() for r in caplog.records] == [
        "routing updated: 1 routes, 1 clusters, 5 endpoints (2 draining)"
    ]


class _Node:
    loop: _Node | None = None


def test_the_periodic_full_collection_frees_cycles_that_were_frozen_alive() -> None:
    node = _Node()
    node.loop = node
    freed = weakref.ref(node)
    freeze_live_objects()
    del node
    gc.collect()
    assert freed() is not None  # ordinary collections never look at frozen objects
    collect_everything()
    assert freed() is None

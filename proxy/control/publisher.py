"""The one place a new routing snapshot enters the data plane.

Sources publish whole states; the publisher skips identical ones and swaps the reference in one
assignment, so a request sees either the old table or the new one, never a mix. It is the sink
every source reports to (`proxy.control.sources.source.SnapshotSink`): accepted and refused
reloads are counted and logged here, once for every source.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from proxy.core.routing import Snapshot
from proxy.system.heap import freeze_live_objects

log = logging.getLogger("sticky_proxy.publisher")


def warm_rings(snapshot: Snapshot, wanted: Callable[[Snapshot], bool]) -> None:
    """Build the affinity rings of `snapshot` (they are built lazily), for as long as it is
    `wanted`: a table replaced meanwhile is not worth finishing."""
    for cluster in snapshot.clusters:
        if not wanted(snapshot):
            return
        cluster.balancer.warm()


def _not_counted(accepted: bool, build_seconds: float | None) -> None:
    """No metrics to count reloads in (tests, tools)."""


class Publisher:
    """`count_reload` is told of every update a source delivers, accepted or refused, and how
    long the source took to build an accepted one (the metrics); `on_new_table` of each table
    swapped in, after the swap (the runtime opens its listeners on the first one)."""

    def __init__(
        self,
        count_reload: Callable[[bool, float | None], None] = _not_counted,
        on_new_table: Callable[[Snapshot], None] | None = None,
    ) -> None:
        self.current: Snapshot | None = None
        self._count_reload = count_reload
        self._on_new_table = on_new_table
        self._stopping = False  # set by `stop_warming`: no ring is worth building any more

    def publish(self, snapshot: Snapshot, build_seconds: float | None = None) -> bool:
        """Swap in `snapshot`, built in `build_seconds` (None: not measured); False when it
        routes exactly like the current one."""
        self._count_reload(True, build_seconds)
        previous = self.current
        if snapshot == previous:
            return False
        self.current = snapshot
        freeze_live_objects()
        self._warm(snapshot)
        # A warning stands for as long as the objects that cause it do: say it when it appears,
        # not again on every endpoint change while it stays.
        already_said = set(previous.warnings) if previous is not None else set()
        for warning in snapshot.warnings:
            if warning not in already_said:
                log.warning("%s", warning)
        clusters = snapshot.clusters
        log.info("routing updated: %d routes, %d clusters, %d endpoints (%d draining)",
                 len(snapshot.routes), len(clusters), snapshot.endpoint_count,
                 snapshot.draining)  # fmt: skip
        if self._on_new_table is not None:
            self._on_new_table(snapshot)
        return True

    def _warm(self, snapshot: Snapshot) -> None:
        """Build the new table's rings in a thread: until one is built, the first request to its
        cluster would build it on the event loop."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop (the `routes` command, tests): rings stay lazy
        loop.run_in_executor(None, warm_rings, snapshot, self.wants_rings_of)

    def wants_rings_of(self, snapshot: Snapshot) -> bool:
        """Whether building the rings of `snapshot` is still worth it: it is current, and the
        proxy is not stopping."""
        return snapshot is self.current and not self._stopping

    def stop_warming(self) -> None:
        """The proxy is stopping: a warm-up in progress ends after its current ring, so the
        process need not wait seconds for the rings of a large table on its way out."""
        self._stopping = True

    def reject(self, problem: str) -> None:
        self._count_reload(False, None)
        log.error("routing update refused, keeping the last good routes: %s", problem)

    def get(self) -> Snapshot | None:
        return self.current

    @property
    def ready(self) -> bool:
        return self.current is not None

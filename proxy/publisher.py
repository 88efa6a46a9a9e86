"""The one place a new routing snapshot enters the data plane.

Sources publish whole states; the publisher skips identical ones and swaps the reference in one
assignment, so a request sees either the old table or the new one, never a mix.
"""

from __future__ import annotations

import logging

from proxy.core.routing import Snapshot

log = logging.getLogger("sticky_proxy.publisher")


class Publisher:
    def __init__(self) -> None:
        self.current: Snapshot | None = None

    def publish(self, snapshot: Snapshot) -> bool:
        """Swap in `snapshot`; False when it routes exactly like the current one."""
        if snapshot == self.current:
            return False
        self.current = snapshot
        for warning in snapshot.warnings:
            log.warning("%s", warning)
        log.info("routing updated: %d routes", len(snapshot.routes))
        return True

    def get(self) -> Snapshot | None:
        return self.current

    @property
    def ready(self) -> bool:
        return self.current is not None

"""The status of our GatewayClasses, Gateways and HTTPRoutes, written to the API server (what
`kubectl get gateway` shows and what the Gateway API conformance suite waits for).

After every routing change, and every change of those objects or of the --publish-service
Service, the status each should have (`gateway_status.plan_updates`) is compared with what the
server holds and only what differs is merge-patched into the status subresource. A refused write
is retried with backoff; an HTTPRoute whose parents another controller changed meanwhile (409
Conflict) is written again from the version the watch brings.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from proxy.control.sources.kubernetes.backoff import Backoff
from proxy.control.sources.kubernetes.client import ApiError, KubeClient
from proxy.control.sources.kubernetes.gateway_status import (
    GatewayObjects,
    StatusUpdate,
    plan_updates,
    rfc3339,
    without_times,
)
from proxy.control.sources.kubernetes.reflector import Key
from proxy.control.sources.kubernetes.status import LoadBalancerIngress, write_when_wanted
from proxy.core.model import ObjectStatus
from proxy.core.routing import Snapshot

log = logging.getLogger("sticky_proxy.kubernetes")


def utc_now() -> datetime:
    return datetime.now(UTC)


class _Conflict(Exception):
    """An object changed between our read and our write."""


class GatewayStatusWriter:
    def __init__(
        self,
        client: KubeClient,
        controller: str,
        objects: Callable[[], GatewayObjects],
        addresses: Callable[[], Sequence[LoadBalancerIngress] | None],
        backoff: Backoff,
        *,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._client = client
        self._controller = controller
        self._objects = objects
        self._addresses = addresses
        self._backoff = backoff
        self._clock = clock
        self._statuses: Sequence[ObjectStatus] | None = None
        self._wanted = asyncio.Event()
        # What was written to each object, without its times, and the resourceVersion it had
        # then: until the watch delivers the written version, the cached object shows the old.
        self._written: dict[tuple[str, Key], tuple[Any, str]] = {}

    def routes_changed(self, snapshot: Snapshot) -> None:
        """A new table, built from a complete view of the Gateway API objects."""
        self._statuses = snapshot.statuses
        self._wanted.set()

    def objects_changed(self) -> None:
        if self._statuses is not None:
            self._wanted.set()

    async def run(self) -> None:
        await write_when_wanted(
            self._wanted, self._write_or_wait, self._backoff, "Gateway API status"
        )

    async def _write_or_wait(self) -> None:
        try:
            await self._write()
        except _Conflict as conflict:
            log.info("%s: changed meanwhile; its status is written again", conflict)
            await asyncio.sleep(self._backoff.next_delay())
            self._wanted.set()

    async def _write(self) -> None:
        if self._statuses is None:
            return
        now = rfc3339(self._clock())
        updates = plan_updates(
            self._statuses, self._objects(), self._controller, self._addresses(), now
        )
        for update in updates:
            memo = (update.resource.plural, update.key)
            meaning = without_times(update.status)
            if self._written.get(memo) == (meaning, update.version):
                continue  # written already; the watch has not brought it back yet
            if not await self._patch(update):
                continue
            self._written[memo] = (meaning, update.version)
            log.info("%s: status %s", update.ref, _summary(update, self._controller))

    async def _patch(self, update: StatusUpdate) -> bool:
        """Whether the object took the update; False when it no longer exists."""
        namespace, name = update.key
        try:
            await self._client.merge_patch(
                update.resource.item(namespace, name, "status"), update.patch()
            )
        except ApiError as error:
            if error.code == 404:
                return False  # deleted meanwhile: its DELETED event is on the way
            if error.code == 409:
                raise _Conflict(update.ref) from None
            raise
        return True


def _summary(update: StatusUpdate, controller: str) -> str:
    """The conditions written, for the log: `Accepted=True, ResolvedRefs=False (BackendNotFound)`
    and, for a route, per parent Gateway of ours."""
    status = update.status
    if "parents" in status:
        parts = []
        for parent in status["parents"]:
            if parent.get("controllerName") != controller:
                continue
            ref = parent.get("parentRef") or {}
            where = f"{ref.get('namespace', update.key[0])}/{ref.get('name')}"
            parts.append(f"Gateway {where}: {_conditions(parent.get('conditions'))}")
        return "; ".join(parts) if parts else "no parents of ours"
    text = _conditions(status.get("conditions"))
    if "addresses" in status:
        shown = ", ".join(str(a.get("value")) for a in status["addresses"])
        text += f"; addresses {shown or '(none)'}"
    return text


def _conditions(conditions: Any) -> str:
    return ", ".join(
        f"{c.get('type')}={c.get('status')}"
        + (f" ({c.get('reason')})" if c.get("status") != "True" else "")
        for c in conditions or ()
    )

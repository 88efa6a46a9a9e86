"""One resource's objects, kept current: list, then watch, and start again whatever happens.

The loop (kopf's and client-go's): a paged list gives every object and the resourceVersion of that
moment; a watch from there gives each change after it. A watch ends all the time (the server's
timeout, a dropped connection, a restart) and is resumed from the last resourceVersion seen,
bookmarks included. When that version is too old (410 Gone) nothing short of a new list can say
what changed: the list replaces the objects, so whatever was deleted meanwhile is gone too.

Never a hot loop: the next attempt waits a jittered, doubling delay (at least what the server
asked with Retry-After) unless the last one made progress, i.e. received an event, or was a
watch the server ended cleanly after a while. A 403 keeps the resource unsynced (so the proxy
unready, if it never listed) and is logged once per streak, naming the verb and the resource.

An optional resource (the Gateway API kinds, whose CRDs a cluster may not have) is `settled` once
the server has answered for it at all: listed, forbidden, or not served. A 404 means the CRD is
not installed: it is logged once, the objects are forgotten, and the list is tried again every
`absent_retry` seconds (jittered) until the resource appears, without counting restarts.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from contextlib import aclosing
from dataclasses import dataclass, replace
from typing import Any, NoReturn

from proxy.control.sources.kubernetes.backoff import Backoff
from proxy.control.sources.kubernetes.client import (
    ApiError,
    Disconnected,
    KubeClient,
    KubeError,
    Stalled,
)
from proxy.control.sources.kubernetes.events import WatchEvent
from proxy.control.sources.kubernetes.exec_plugin import CredentialError
from proxy.control.sources.kubernetes.resources import Resource

log = logging.getLogger("sticky_proxy.kubernetes")

Key = tuple[str, str]  # (namespace, name); namespace "" for cluster-scoped objects
Obj = dict[str, Any]

# Metadata that changes without changing what the object means for routing.
_NOISE_METADATA = ("resourceVersion", "managedFields", "generation")
_NOISE_ANNOTATIONS = ("endpoints.kubernetes.io/last-change-trigger-time",)
# Of an object trimmed to `keep_data`: enough to name it (its annotations may hold all of it,
# kubectl's last-applied-configuration).
_KEPT_METADATA = ("name", "namespace", "resourceVersion")
# A watch that the server ended cleanly after this long, even without an event, was healthy:
# resuming at once is fine.
HEALTHY_WATCH_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class WatchTuning:
    page_size: int = 500  # client-go's reflector default
    # The server ends each watch after timeoutSeconds, drawn from this range so that many
    # proxies do not all come back at once (kube-apiserver's own default is 30-60 min).
    watch_timeout: tuple[int, int] = (300, 600)
    # More than the ~60 s between the server's bookmarks: silence beyond it is a dead connection.
    inactivity: float = 70.0
    backoff_base: float = 0.25
    backoff_cap: float = 30.0
    # A resource the server does not serve (a CRD not installed) is looked for again this often.
    absent_retry: float = 60.0
    # The first table waits this long at most for optional resources whose first list failed
    # for another reason than 403 or 404 (a 429 at startup): they are usually served a moment
    # later, and a table without the cluster's HTTPRoutes would answer their hosts 404.
    optional_wait: float = 10.0


def _nothing(_: Key) -> bool:
    return False


async def list_all(
    client: KubeClient,
    resource: Resource,
    namespace: str | None,
    page_size: int,
    named: Callable[[Key], bool] = _nothing,
) -> tuple[list[Obj], str]:
    """Every object, page by page, and the resourceVersion the list is a snapshot of.

    A continue token that expired (410: the list took longer than the server keeps a snapshot)
    starts the list over; the server's offer of an inconsistent remainder is declined.
    """
    path = resource.collection(namespace)
    restarts = 0
    while True:
        try:
            return await _list_pages(client, path, resource, page_size, named)
        except ApiError as error:
            if not error.expired or restarts == 2:
                raise
            restarts += 1
            log.info("%s: the list's continue token expired; listing again", resource.qualified)


async def _list_pages(
    client: KubeClient, path: str, resource: Resource, page_size: int, named: Callable[[Key], bool]
) -> tuple[list[Obj], str]:
    items: list[Obj] = []
    selection = {"fieldSelector": resource.field_selector} if resource.field_selector else {}
    params = {"limit": str(page_size), **selection}
    while True:
        page = await client.get(path, params)
        for item in page.get("items") or ():
            kept = _kept(item, resource, named)
            if kept is not None:
                items.append(kept)
        metadata = page.get("metadata") or {}
        token = metadata.get("continue")
        if not token:
            return items, str(metadata.get("resourceVersion") or "")
        params = {"limit": str(page_size), "continue": token, **selection}


def _kept(obj: Obj, resource: Resource, named: Callable[[Key], bool] = _nothing) -> Obj | None:
    """What is kept of a listed or watched object: typed, and trimmed to `keep_data` where the
    resource has it, or to all of `data` for a Secret `named` names (None when nothing of it is
    left to keep)."""
    if not resource.keep_data and not resource.named_data:
        return _with_type(obj, resource)
    data = obj.get("data")
    if not isinstance(data, dict):
        data = {}
    whole = resource.named_data and named(object_key(obj))
    kept = dict(data) if whole else {k: data[k] for k in resource.keep_data if k in data}
    if not kept:
        return None
    metadata = obj.get("metadata") or {}
    return {
        "kind": resource.kind,
        "apiVersion": resource.api_version,
        "metadata": {k: metadata[k] for k in _KEPT_METADATA if k in metadata},
        "type": obj.get("type"),
        "data": kept,
    }


def _with_type(obj: Obj, resource: Resource) -> Obj:
    """List items come without kind and apiVersion; translation (and logs) need both."""
    if obj.get("kind") != resource.kind or obj.get("apiVersion") != resource.api_version:
        obj = {"kind": resource.kind, "apiVersion": resource.api_version, **obj}
    return obj


def object_key(obj: Obj) -> Key:
    metadata = obj.get("metadata") or {}
    return (str(metadata.get("namespace") or ""), str(metadata.get("name") or ""))


def same_meaning(old: Obj | None, new: Obj | None, *, status: bool = True) -> bool:
    """Whether two versions of an object differ only in bookkeeping (resourceVersion,
    managedFields, an endpoints trigger time), and with `status=False` in their status too:
    such a MODIFIED need not rebuild the routes."""
    if old is None or new is None:
        return old is new
    return _meaning(old, status) == _meaning(new, status)


def _meaning(obj: Obj, status: bool) -> Obj:
    metadata = {k: v for k, v in (obj.get("metadata") or {}).items() if k not in _NOISE_METADATA}
    annotations = metadata.pop("annotations", None)
    if isinstance(annotations, dict):
        annotations = {k: v for k, v in annotations.items() if k not in _NOISE_ANNOTATIONS}
    if annotations:  # none left is the same as none at all
        metadata["annotations"] = annotations
    meaning = {**obj, "metadata": metadata}
    if not status:
        meaning.pop("status", None)
    return meaning


class Reflector:
    """`objects` mirror the server's for one resource (in one namespace, or all); listeners are
    called whenever they change in a way that matters; `synced` is set by a list (and cleared
    while an optional resource is not served); `settled` once the first table may be built
    without waiting any longer for this resource."""

    def __init__(
        self,
        client: KubeClient,
        resource: Resource,
        namespace: str | None,
        *,
        count_restart: Callable[[str, str], None],
        tuning: WatchTuning,
        rng: random.Random | None = None,
        named: Callable[[Key], bool] | None = None,
        after: asyncio.Event | None = None,
    ) -> None:
        self.resource = resource
        self.namespace = namespace
        self.objects: dict[Key, Obj] = {}
        self.synced = asyncio.Event()
        self.settled = asyncio.Event()
        self.absent = False  # an optional resource the server does not serve (404)
        self._versions = (resource.version, *resource.older_versions)
        self._serving = resource  # with the version the server serves
        self._client = client
        self._listeners: list[Callable[[], None]] = []
        self._status_listeners: list[Callable[[], None]] = []
        self._count_restart = count_restart
        self._tuning = tuning
        self._rng = rng or random.Random()
        self._version = ""  # where the next watch resumes
        self._events = 0  # events received by the current watch
        self._refused: set[str] = set()  # verbs whose 403 was logged in this streak
        # Which objects' changes matter for routing (None: all): a watch event on another is
        # kept, and rebuilds nothing (a relist still counts every change)
        self.matters: Callable[[Key], bool] | None = None
        # Secrets whose every key is kept (auth-secret); `relist` when what it names changes
        self._named = named
        self._relist_wanted = asyncio.Event()
        self._after = after  # the first list waits for it (the Ingresses that name Secrets)

    def on_change(self, listener: Callable[[], None], *, status: bool = False) -> None:
        """Call `listener` when the objects change for routing; with `status`, also when only
        the status of a resource whose status this proxy writes changed."""
        (self._status_listeners if status else self._listeners).append(listener)

    def _changed(self, routing: bool = True) -> None:
        listeners = (
            [*self._listeners, *self._status_listeners] if routing else self._status_listeners
        )
        for listener in listeners:
            listener()

    def _compare(self, old: Obj | None, new: Obj | None) -> tuple[bool, bool]:
        """(changed for routing, changed at all) between two versions of an object."""
        if same_meaning(old, new):
            return False, False
        routing = not (self.resource.status_written and same_meaning(old, new, status=False))
        return routing, True

    @property
    def known(self) -> bool:
        """Whether `objects` are what the server holds: listed, or not served at all."""
        return self.synced.is_set() or self.absent

    @property
    def name(self) -> str:
        where = f" in {self.namespace}" if self.namespace and self.resource.namespaced else ""
        which = f" ({self.resource.field_selector})" if self.resource.label else ""
        return f"{self.resource.qualified}{which}{where}"

    def relist(self) -> None:
        """List again soon (a watch in progress ends): `named` names other objects now."""
        self._relist_wanted.set()

    async def run(self) -> NoReturn:
        if self._after is not None:
            await self._after.wait()
        loop = asyncio.get_running_loop()
        backoff = Backoff(self._tuning.backoff_base, self._tuning.backoff_cap, self._rng)
        relist = True
        while True:
            started, self._events = loop.time(), 0
            verb = "list" if relist else "watch"
            retry_after: float | None = None
            try:
                if relist:
                    self._relist_wanted.clear()
                    await self._relist()
                    relist, verb = False, "watch"
                if not await self._watch_until_relist():
                    relist = True  # asked for: no restart to count, no backoff
                    continue
                reason = "closed"
            except (KubeError, CredentialError) as error:
                if self._not_served(error):
                    relist = True
                    if not self._older_version():
                        await self._not_installed()
                    continue
                reason, relist_needed, retry_after = self._judge(error, verb)
                relist = relist or relist_needed
            # Progress: events arrived, or the server kept an accepted watch open a while. A list
            # alone is none: list, watch, 410, list... must back off like any other failure.
            lasted = loop.time() - started >= HEALTHY_WATCH_SECONDS
            healthy = self._events > 0 or (reason == "closed" and lasted)
            if healthy:
                backoff.reset()
                self._allowed_again()
            self._count_restart(self.resource.series, reason)
            if not (healthy and reason in ("closed", "expired")):
                await asyncio.sleep(backoff.next_delay(retry_after))

    def _not_served(self, error: Exception) -> bool:
        """A 404 for a whole collection: the resource (its CRD) is not installed."""
        return self.resource.optional and isinstance(error, ApiError) and error.code == 404

    def _older_version(self) -> bool:
        """Moves on to the next older version the resource may be served as; False when none
        is left (and starts from the newest again, for the next look)."""
        index = self._versions.index(self._serving.version) + 1
        if index == len(self._versions):
            self._serving = self.resource
            return False
        self._serving = replace(self.resource, version=self._versions[index])
        return True

    async def _not_installed(self) -> None:
        if not self.absent:
            self.absent = True
            log.info(
                "%s: not served by the API server (404: its CRD is not installed); serving "
                "without it, looking again every %g s",
                self.name,
                self._tuning.absent_retry,
            )
            self.synced.clear()
            if self.objects:  # the CRD was deleted, and its objects with it
                self.objects = {}
                self._changed()
        self.settled.set()
        retry = self._tuning.absent_retry
        await asyncio.sleep(self._rng.uniform(0.75 * retry, 1.25 * retry))

    async def _relist(self) -> None:
        items, version = await list_all(
            self._client, self._serving, self.namespace, self._tuning.page_size,
            self._named or _nothing,
        )  # fmt: skip
        listed = {object_key(obj): obj for obj in items}
        compared = [self._compare(self.objects.get(key), obj) for key, obj in listed.items()]
        added_or_removed = listed.keys() != self.objects.keys()
        routing = added_or_removed or any(r for r, _ in compared)
        changed = added_or_removed or any(c for _, c in compared)
        vanished = self.objects.keys() - listed.keys()
        if vanished and self.synced.is_set():
            log.info("%s: %d deleted while not watching", self.name, len(vanished))
        if self.absent:
            self.absent = False
            log.info("%s: served now (%s); watching it", self.name, self._serving.api_version)
        elif self._serving is not self.resource and not self.synced.is_set():
            log.info("%s: %s not served; reading %s", self.name, self.resource.api_version,
                     self._serving.api_version)  # fmt: skip
        self.objects = listed
        self._version = version
        self._allowed_again()
        first = not self.synced.is_set()
        self.synced.set()
        self.settled.set()
        if routing or first:
            self._changed()
        elif changed:
            self._changed(routing=False)

    def _allowed_again(self) -> None:
        if self._refused:
            log.warning("%s: %s allowed again", self.name, " and ".join(sorted(self._refused)))
            self._refused.clear()

    async def _watch_until_relist(self) -> bool:
        """Watch until the server ends the watch (True) or `relist` is asked for (False)."""
        if self._named is None:
            await self._watch()  # (the resources without `named` are never asked to relist)
            return True
        if self._relist_wanted.is_set():
            return False
        watching = asyncio.ensure_future(self._watch())
        wanted = asyncio.ensure_future(self._relist_wanted.wait())
        try:
            await asyncio.wait((watching, wanted), return_when=asyncio.FIRST_COMPLETED)
        finally:
            wanted.cancel()
            if not watching.done():
                watching.cancel()
                await asyncio.wait((watching,))  # its stream closed before the list starts
        if watching.cancelled():
            return False
        watching.result()  # the watch's own end: closed, or an error for `run` to judge
        return True

    async def _watch(self) -> None:
        low, high = self._tuning.watch_timeout
        params = {
            "allowWatchBookmarks": "true",
            "resourceVersion": self._version,
            "timeoutSeconds": str(self._rng.randint(low, high)),
        }
        if self.resource.field_selector:
            params["fieldSelector"] = self.resource.field_selector
        events = self._client.watch(
            self._serving.collection(self.namespace), params, self._tuning.inactivity
        )
        async with aclosing(events):
            async for event in events:
                self._events += 1
                self._apply(event)

    def _apply(self, event: WatchEvent) -> None:
        version = event.resource_version
        if event.type != "BOOKMARK":
            obj = _kept(event.object, self._serving, self._named or _nothing)
            key = object_key(event.object)
            old = self.objects.get(key)
            if event.type == "DELETED" or obj is None:  # gone, or holds nothing to keep now
                self.objects.pop(key, None)
                new = None
            else:
                self.objects[key] = new = obj
            routing, changed = self._compare(old, new)
            if changed:
                matters = self.matters
                self._changed(routing and (matters is None or matters(key)))
        if version:  # a bookmark's version counts as well: it may be far ahead of any object's
            self._version = version

    def _judge(self, error: Exception, verb: str) -> tuple[str, bool, float | None]:
        """(restart reason, whether a relist is needed, the server's Retry-After)."""
        if isinstance(error, Stalled):
            log.info("%s: %s; reconnecting", self.name, error)
            return "stalled", False, None
        if isinstance(error, Disconnected):
            log.info("%s: %s", self.name, error)
            return "dropped", False, None
        if isinstance(error, CredentialError):
            log.warning("%s: no credentials: %s", self.name, error)
            return "unauthorized", False, None
        assert isinstance(error, ApiError)
        if error.expired:
            log.info("%s: resourceVersion expired (%s); relisting", self.name, error.message)
            return "expired", True, None
        if error.code == 403:
            if verb not in self._refused:
                self._refused.add(verb)
                log.error(
                    "%s: %s refused (403 Forbidden): %s; retrying with backoff%s",
                    self.name,
                    verb,
                    error.message,
                    self._meanwhile(),
                )
            if self.resource.optional:
                self.settled.set()  # a missing RBAC rule for it must not keep Ingresses unserved
            return "forbidden", False, error.retry_after
        too_large = "ResourceVersionTooLarge" in error.causes  # a lagging server: list afresh
        log.warning("%s: %s failed: %s", self.name, verb, error)
        if error.code == 401:
            return "unauthorized", False, error.retry_after
        if error.code == 429:
            return "throttled", False, error.retry_after
        return "error", too_large, error.retry_after

    def _meanwhile(self) -> str:
        if self.synced.is_set():
            return ""
        if self.resource.optional:
            return ", serving without it until it is allowed"
        return ", not ready until it is allowed"

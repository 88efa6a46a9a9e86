"""The fake API server: an aiohttp app on 127.0.0.1 port 0, over TLS, holding objects in memory.

It speaks the API server's wire format: lists with a resourceVersion and continue
tokens (items without kind/apiVersion), chunked watch streams of one JSON event per line,
BOOKMARK events, ERROR events, and Status bodies for HTTP errors. Every change bumps one global
resourceVersion, so each resource sees gaps, as in a real cluster.

Edge cases are produced on demand: `compact()` ages out history (watches from
before it get ERROR 410), `end_watches()` ends the open streams in any of the ways a real
server or network does (ERROR 410/500/504, HTTP-level close, an abrupt cut mid-line, a silent
freeze), `fail()` answers the next requests with 410/429/500/503 and Retry-After, `forbid()`
answers 403 per resource and verb, tokens are accepted or revoked at runtime, continue tokens
expire on `expire_continue_tokens()`, and `split_chunks` cuts the stream at random bytes.

The Gateway API kinds behave as custom resources: `uninstall()` takes their CRDs away (their
objects are deleted, their watches end, and every request for them is answered 404, as for any
resource the server does not know), `install()` brings them back, under the versions given
(ReferenceGrant as v1 and v1beta1 by default, or v1beta1 alone as older releases). The server
keeps their `metadata.generation` (1 at creation, one more for each change of `spec`), keeps
their status when an object is applied without one, and takes status merge patches on the
`/status` subresource, with `metadata.resourceVersion` in the patch as a precondition (409
Conflict when the object changed since).
"""

from __future__ import annotations

import asyncio
import base64
import copy
import json
import random
import socket
import ssl
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.kube_fake.tls import Pki

Obj = dict[str, Any]
Key = tuple[str, str]

GATEWAY_GROUP = "gateway.networking.k8s.io"
# (API group, plural) → (kind, apiVersion, namespaced): the paths of README b.1.
KINDS: dict[tuple[str, str], tuple[str, str, bool]] = {
    ("", "services"): ("Service", "v1", True),
    ("", "endpoints"): ("Endpoints", "v1", True),
    ("discovery.k8s.io", "endpointslices"): ("EndpointSlice", "discovery.k8s.io/v1", True),
    ("networking.k8s.io", "ingresses"): ("Ingress", "networking.k8s.io/v1", True),
    ("networking.k8s.io", "ingressclasses"): ("IngressClass", "networking.k8s.io/v1", False),
    ("", "secrets"): ("Secret", "v1", True),
    ("", "configmaps"): ("ConfigMap", "v1", True),
    ("", "namespaces"): ("Namespace", "v1", False),
    (GATEWAY_GROUP, "gatewayclasses"): ("GatewayClass", f"{GATEWAY_GROUP}/v1", False),
    (GATEWAY_GROUP, "gateways"): ("Gateway", f"{GATEWAY_GROUP}/v1", True),
    (GATEWAY_GROUP, "httproutes"): ("HTTPRoute", f"{GATEWAY_GROUP}/v1", True),
    (GATEWAY_GROUP, "referencegrants"): ("ReferenceGrant", f"{GATEWAY_GROUP}/v1", True),
}
# The fields a fieldSelector may name, as the real server's field label conversion allows them
# (every kind has the metadata ones; Secrets add `type`, Namespaces `status.phase`).
_METADATA_FIELDS = frozenset({"metadata.name", "metadata.namespace"})
FIELD_LABELS = {
    "secrets": _METADATA_FIELDS | {"type"},
    "namespaces": _METADATA_FIELDS | {"status.phase"},
}
PLURALS = {kind: (group, plural) for (group, plural), (kind, _, _) in KINDS.items()}
# The custom resources (CRDs) and the versions a current Gateway API install serves them as.
CUSTOM: dict[str, tuple[str, ...]] = {
    "gatewayclasses": ("v1",),
    "gateways": ("v1",),
    "httproutes": ("v1",),
    "referencegrants": ("v1", "v1beta1"),
}
ENDPOINTS_WARNING = (
    '299 - "v1 Endpoints is deprecated in v1.33+; use discovery.k8s.io/v1 EndpointSlice"'
)
CONTINUE_EXPIRED = (
    "The provided continue parameter is too old to display a consistent list result. You can "
    "start a new list without the continue parameter, or use the continue token in this response "
    "to retrieve the remainder of the results. Continuing with the provided token results in an "
    "inconsistent list - objects that were created, modified, or deleted between the time the "
    "first chunk was returned and now may show up in the list."
)


def status(
    code: int, reason: str, message: str, details: Obj | None = None, metadata: Obj | None = None
) -> Obj:
    """A Status, its fields in the API server's order (README b.5)."""
    body: Obj = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": metadata or {},
        "status": "Failure",
        "message": message,
        "reason": reason,
    }
    if details is not None:
        body["details"] = details
    body["code"] = code
    return body


def expired_status(requested: str, oldest: int, variant: str = "cache") -> Obj:
    """ERROR 410 in one of the forms of README b.4: watch cache, etcd, or legacy `Gone`."""
    if variant == "etcd":
        return status(410, "Expired", "The resourceVersion for the provided watch is too old.")
    reason = "Gone" if variant == "gone" else "Expired"
    return status(410, reason, f"too old resource version: {requested} ({oldest - 1})")


def internal_error(message: str = "etcd is unhappy") -> Obj:
    return status(
        500,
        "InternalError",
        f"Internal error occurred: {message}",
        {"causes": [{"message": message}]},
    )


def too_large_status(requested: str, current: int) -> Obj:
    return status(
        504,
        "Timeout",
        f"Timeout: Too large resource version: {requested}, current: {current}",
        {
            "causes": [
                {"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}
            ],
            "retryAfterSeconds": 1,
        },
    )


def truthy(value: str | None) -> bool:
    """The API server's query booleans (README b.2): absent, "0" and "false" are false."""
    return value is not None and value.lower() not in ("0", "false")


def line(event: Obj) -> bytes:
    """One event as the API server frames it: compact JSON, raw UTF-8, a newline."""
    return json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"


@dataclass
class Fault:
    """The next `times` requests of `verb` on `plural` are answered with `code`."""

    plural: str
    verb: str
    code: int
    retry_after: int | None = None
    times: int = 1


@dataclass
class RequestRecord:
    method: str
    path: str
    query: dict[str, str]
    user: str | None
    verb: str
    plural: str | None
    at: float


@dataclass(eq=False)
class _Watch:
    plural: str
    namespace: str | None
    kind: str
    api_version: str
    fields: dict[str, str] = field(default_factory=dict)  # fieldSelector, as `type=...`
    queue: asyncio.Queue[tuple[str, Any]] = field(default_factory=asyncio.Queue)
    held: bool = False  # changes are not delivered (the client is about to get a 410)

    def shown(self, obj: Obj) -> Obj:
        """`obj` as this watch's version presents it."""
        return obj if obj.get("apiVersion") == self.api_version else {
            **obj, "apiVersion": self.api_version
        }  # fmt: skip


@dataclass
class _ListSnapshot:
    rv: int
    items: list[Obj]
    expired: bool = False


class FakeApiServer:
    def __init__(self, pki: Pki, certificate: str = "ip", seed: int = 0) -> None:
        self.pki = pki
        self._certificate = certificate
        self.rng = random.Random(seed)
        self.rv = 1000
        self.compacted_at = 0  # a watch from a resourceVersion below this gets 410
        self.objects: dict[str, dict[Key, Obj]] = {plural: {} for _, plural in KINDS}
        self.history: list[tuple[int, str, str, Obj]] = []  # (rv, plural, type, object)
        self.tokens: dict[str, str] = {}  # bearer token → user name
        self.forbidden: set[tuple[str, str]] = set()  # (plural, verb)
        self.faults: list[Fault] = []
        self.requests: list[RequestRecord] = []
        self.status_patches: list[tuple[str, str, Obj]] = []  # (namespace, name, patch)
        self.patches: list[tuple[str, str, str, Obj]] = []  # (plural, namespace, name, patch)
        # The versions each custom resource is served as; none: its CRD is not installed.
        self.served: dict[str, tuple[str, ...]] = dict(CUSTOM)
        self.bookmark_interval: float | None = None
        self.split_chunks = False  # cut every event at random byte offsets into several chunks
        self.uneven_pages = False  # pages of fewer items than the limit, even none
        self._watches: set[_Watch] = set()
        self._lists: dict[int, _ListSnapshot] = {}
        self._stopping = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.url = ""

    # --- lifecycle -----------------------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1") -> str:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
        await self._runner.setup()
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.pki.cert(self._certificate), self.pki.key(self._certificate))
        context.load_verify_locations(self.pki.ca)
        context.verify_mode = ssl.CERT_OPTIONAL  # a client certificate, or a bearer token
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.create_server((host, 0), family=family)
        await web.SockSite(self._runner, sock, ssl_context=context).start()
        bracketed = f"[{host}]" if ":" in host else host
        self.url = f"https://{bracketed}:{sock.getsockname()[1]}"
        return self.url

    async def stop(self) -> None:
        self._stopping.set()
        if self._runner is not None:
            await self._runner.cleanup()

    # --- the world -----------------------------------------------------------------------------

    def apply(self, obj: Obj) -> Obj:
        """Create or replace `obj` (a watch sees ADDED or MODIFIED); returns it as stored.

        A custom resource keeps its status when `obj` has none (the status subresource is
        written apart) and gets its generation from the server."""
        plural, key = self._locate(obj)
        stored = copy.deepcopy(obj)
        stored["metadata"].setdefault("uid", f"uid-{plural}-{key[0]}-{key[1]}")
        old = self.objects[plural].get(key)
        if plural == "secrets":
            _store_secret(stored, old)
        if plural in CUSTOM:
            generation = 1
            if old is not None:
                generation = old["metadata"].get("generation", 1)
                generation += old.get("spec") != stored.get("spec")
                if "status" not in stored and "status" in old:
                    stored["status"] = copy.deepcopy(old["status"])
            stored["metadata"]["generation"] = generation
        event = "MODIFIED" if old is not None else "ADDED"
        self.objects[plural][key] = stored
        self._record(plural, event, stored)
        return stored

    def uninstall(self, *plurals: str) -> None:
        """Delete these custom resources' CRDs: their objects go (each watch sees it), the
        watches end, and from now on every request for them is answered 404."""
        for plural in plurals or tuple(CUSTOM):
            for obj in list(self.objects[plural].values()):
                self.delete(obj)
            self.served[plural] = ()
            self.end_watches(plural, "close")

    def install(self, *plurals: str, versions: tuple[str, ...] | None = None) -> None:
        """Create these custom resources' CRDs, served as `versions` (default: as current
        Gateway API releases serve them)."""
        for plural in plurals or tuple(CUSTOM):
            self.served[plural] = versions or CUSTOM[plural]

    def delete(self, obj: Obj) -> None:
        plural, key = self._locate(obj)
        stored = self.objects[plural].pop(key)
        self._record(plural, "DELETED", stored)

    def bump(self, count: int = 1) -> None:
        """Changes elsewhere in the cluster: the resourceVersion moves, no event here."""
        self.rv += count

    def compact(self) -> None:
        """Forget the history so far: a watch from any version seen until now gets ERROR 410
        (the version moves on, as other changes in the cluster move it)."""
        self.rv += 1
        self.compacted_at = self.rv
        self.history.clear()

    def _locate(self, obj: Obj) -> tuple[str, Key]:
        group, plural = PLURALS[obj["kind"]]
        namespaced = KINDS[group, plural][2]
        metadata = obj.setdefault("metadata", {})
        if namespaced:
            metadata.setdefault("namespace", "default")
        return plural, (metadata.get("namespace", "") if namespaced else "", metadata["name"])

    def _record(self, plural: str, event: str, obj: Obj) -> None:
        self.rv += 1
        obj["metadata"]["resourceVersion"] = str(self.rv)
        snapshot = copy.deepcopy(obj)
        self.history.append((self.rv, plural, event, snapshot))
        for watch in self._watches:
            if (
                watch.plural == plural
                and not watch.held
                and _in_namespace(snapshot, watch.namespace)
                and _has_fields(snapshot, watch.fields)
            ):
                watch.queue.put_nowait(("event", {"type": event, "object": watch.shown(snapshot)}))

    # --- injecting edge cases ------------------------------------------------------------------

    def fail(
        self, plural: str, verb: str, code: int, *, retry_after: int | None = None, times: int = 1
    ) -> None:
        self.faults.append(Fault(plural, verb, code, retry_after, times))

    def forbid(self, plural: str, verb: str) -> None:
        self.forbidden.add((plural, verb))

    def allow(self, plural: str, verb: str) -> None:
        self.forbidden.discard((plural, verb))

    def expire_continue_tokens(self) -> None:
        for snapshot in self._lists.values():
            snapshot.expired = True

    def open_watches(self, plural: str | None = None) -> int:
        return sum(1 for w in self._watches if plural is None or w.plural == plural)

    def end_watches(self, plural: str, how: str, payload: Obj | None = None) -> int:
        """End every open watch of `plural`: `close` (the clean end of timeoutSeconds), `error`
        (an ERROR event with the Status `payload`, then the end), `drop` (cut the connection
        inside an event line, no terminating chunk), `freeze` (send nothing more, ever)."""
        watches = [w for w in self._watches if w.plural == plural]
        for watch in watches:
            watch.queue.put_nowait((how, payload))
        return len(watches)

    def hold_watches(self, plural: str) -> None:
        """The open watches of `plural` deliver no more changes: what happens next reaches
        their clients only through a relist (after `expire_watches`)."""
        for watch in self._watches:
            if watch.plural == plural:
                watch.held = True

    def expire_watches(self, plural: str, variant: str = "cache") -> int:
        """History compacted under open watches: each gets ERROR 410 and must relist."""
        requested = str(self.rv - 1)
        self.compact()
        return self.end_watches(
            plural, "error", expired_status(requested, self.compacted_at, variant)
        )

    def watch_requests(self, plural: str) -> list[RequestRecord]:
        return [r for r in self.requests if r.plural == plural and r.verb == "watch"]

    def list_requests(self, plural: str) -> list[RequestRecord]:
        return [r for r in self.requests if r.plural == plural and r.verb == "list"]

    # --- requests ------------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        parts = [part for part in request.path.split("/") if part]
        if parts in (["version"], ["api"], ["apis"]):
            return web.json_response({"major": "1", "minor": "33", "gitVersion": "v1.33.1"})
        route = _route(parts)
        query = dict(request.query)
        watching = truthy(query.get("watch"))
        if route is None:
            return _error(404, "NotFound", "the server could not find the requested resource")
        group, version, plural, namespace, name, subresource = route
        kind, api_version, namespaced = KINDS[group, plural]
        if group:
            api_version = f"{group}/{version}"
        verb = _verb(request.method, name, subresource, watching)
        user = self._user(request)
        self.requests.append(
            RequestRecord(
                request.method,
                request.path,
                query,
                user,
                verb,
                plural,
                asyncio.get_running_loop().time(),
            )
        )
        if user is None:
            return _error(401, "Unauthorized", "Unauthorized")
        if version not in self.served.get(plural, ("v1",)):
            return _error(404, "NotFound", "the server could not find the requested resource")
        if (plural, verb) in self.forbidden:
            return self._forbidden(user, verb, group, plural, namespace)
        fault = self._take_fault(plural, verb)
        if fault is not None:
            return _fault_response(fault, query.get("resourceVersion", ""))
        headers = {"Warning": ENDPOINTS_WARNING} if plural == "endpoints" else {}
        unknown = set(_field_selector(query)) - FIELD_LABELS.get(plural, _METADATA_FIELDS)
        if unknown:
            return _error(400, "BadRequest", f"field label not supported: {min(unknown)}")
        if verb == "watch":
            watch = _Watch(plural, namespace, kind, api_version, _field_selector(query))
            return await self._watch(request, watch, query, headers)
        if verb == "list":
            return self._list(plural, kind, api_version, namespace, query=query, headers=headers)
        key = (namespace or "" if namespaced else "", name or "")
        obj = self.objects[plural].get(key)
        if obj is None:
            return _error(
                404,
                "NotFound",
                f'{_qualified(group, plural)} "{name}" not found',
                {"name": name, "group": group, "kind": plural},
            )
        if verb == "patch" and subresource == "status":
            patch = await request.json()
            if request.content_type != "application/merge-patch+json":
                return _error(415, "UnsupportedMediaType", "only merge patches here")
            expected = (patch.get("metadata") or {}).get("resourceVersion")
            if expected is not None and expected != obj["metadata"]["resourceVersion"]:
                return _error(
                    409,
                    "Conflict",
                    f'Operation cannot be fulfilled on {_qualified(group, plural)} "{name}": the '
                    "object has been modified; please apply your changes to the latest version "
                    "and try again",
                    {"name": name, "group": group, "kind": plural},
                )
            self.status_patches.append((key[0], key[1], patch))
            self.patches.append((plural, key[0], key[1], patch))
            updated = copy.deepcopy(obj)
            updated["status"] = _merge_patch(updated.get("status") or {}, patch.get("status"))
            return web.json_response(self.apply(updated))
        return web.json_response(obj, headers=headers)

    def _user(self, request: web.Request) -> str | None:
        peer = request.transport.get_extra_info("peercert") if request.transport else None
        if peer:
            subject = dict(item for rdn in peer["subject"] for item in rdn)
            return str(subject["commonName"])
        authorization = request.headers.get("Authorization", "")
        token = authorization.removeprefix("Bearer ") if authorization.startswith("Bearer ") else ""
        return self.tokens.get(token) if token else None

    def _forbidden(
        self, user: str, verb: str, group: str, plural: str, namespace: str | None
    ) -> web.Response:
        scope = f'in the namespace "{namespace}"' if namespace else "at the cluster scope"
        message = (
            f'{_qualified(group, plural)} is forbidden: User "{user}" cannot {verb} '
            f'resource "{plural}" in API group "{group}" {scope}'
        )
        details = {"group": group, "kind": plural} if group else {"kind": plural}
        return _error(403, "Forbidden", message, details)

    def _take_fault(self, plural: str, verb: str) -> Fault | None:
        for fault in self.faults:
            if fault.plural == plural and fault.verb == verb and fault.times > 0:
                fault.times -= 1
                return fault
        return None

    def _list(
        self,
        plural: str,
        kind: str,
        api_version: str,
        namespace: str | None,
        *,
        query: dict[str, str],
        headers: dict[str, str],
    ) -> web.Response:
        token = query.get("continue")
        if token:
            snapshot_id, offset = _read_continue(token)
            snapshot = self._lists[snapshot_id]
            if snapshot.expired:
                fresh = _continue_token(len(self._lists) + 1000, offset)
                return _error(410, "Expired", CONTINUE_EXPIRED, metadata={"continue": fresh})
        else:
            items = [
                {k: v for k, v in copy.deepcopy(obj).items() if k not in ("kind", "apiVersion")}
                for key, obj in sorted(self.objects[plural].items())
                if _in_namespace(obj, namespace) and _has_fields(obj, _field_selector(query))
            ]
            snapshot_id, offset = len(self._lists), 0
            snapshot = self._lists[snapshot_id] = _ListSnapshot(self.rv, items)
        limit = int(query.get("limit") or 0) or len(snapshot.items) + 1
        if self.uneven_pages:
            limit = self.rng.randint(0, limit)
        page = snapshot.items[offset : offset + limit]
        metadata: Obj = {"resourceVersion": str(snapshot.rv)}
        rest = len(snapshot.items) - offset - len(page)
        if rest > 0 or (self.uneven_pages and not page and offset < len(snapshot.items)):
            metadata["continue"] = _continue_token(snapshot_id, offset + len(page))
            metadata["remainingItemCount"] = rest
        body = {
            "kind": f"{kind}List",
            "apiVersion": api_version,
            "metadata": metadata,
            "items": page,
        }
        return web.json_response(body, headers=headers)

    async def _watch(
        self,
        request: web.Request,
        watch: _Watch,
        query: dict[str, str],
        headers: dict[str, str],
    ) -> web.StreamResponse:
        plural, namespace = watch.plural, watch.namespace
        requested = query.get("resourceVersion", "")
        response = web.StreamResponse(
            headers={
                "Content-Type": "application/json",
                "Cache-Control": "no-cache, private",
                **headers,
            }
        )
        response.enable_chunked_encoding()
        await response.prepare(request)  # the head goes out at once, before any event
        if requested and requested != "0":
            start = int(requested)
            if start < self.compacted_at:
                await response.write(
                    line({"type": "ERROR", "object": expired_status(requested, self.compacted_at)})
                )
                return response
            if start > self.rv:
                await asyncio.sleep(0.05)  # the real server waits 3 s for its cache to catch up
                await response.write(
                    line({"type": "ERROR", "object": too_large_status(requested, self.rv)})
                )
                return response
            backlog = [
                {"type": t, "object": watch.shown(o)}
                for rv, p, t, o in self.history
                if p == plural
                and rv > start
                and _in_namespace(o, namespace)
                and _has_fields(o, watch.fields)
            ]
        else:  # no version: the current state as synthetic ADDED events, in key order
            backlog = [
                {"type": "ADDED", "object": watch.shown(copy.deepcopy(o))}
                for _, o in sorted(self.objects[plural].items())
                if _in_namespace(o, namespace) and _has_fields(o, watch.fields)
            ]
        self._watches.add(watch)  # no await since the backlog was taken: nothing is missed
        try:
            for event in backlog:
                await self._send(response, line(event))
            return await self._stream(request, response, watch, query)
        finally:
            self._watches.discard(watch)

    async def _stream(
        self,
        request: web.Request,
        response: web.StreamResponse,
        watch: _Watch,
        query: dict[str, str],
    ) -> web.StreamResponse:
        kind, api_version = watch.kind, watch.api_version
        loop = asyncio.get_running_loop()
        timeout = int(query.get("timeoutSeconds") or 1800)
        deadline = loop.time() + timeout
        bookmarks = truthy(query.get("allowWatchBookmarks")) and self.bookmark_interval
        while (left := deadline - loop.time()) > 0:
            wait = (
                min(left, self.bookmark_interval) if bookmarks and self.bookmark_interval else left
            )
            try:
                async with asyncio.timeout(wait):
                    what, payload = await watch.queue.get()
            except TimeoutError:
                if bookmarks:
                    await self._send(
                        response,
                        line(
                            {
                                "type": "BOOKMARK",
                                "object": {
                                    "kind": kind,
                                    "apiVersion": api_version,
                                    "metadata": {"resourceVersion": str(self.rv)},
                                },
                            }
                        ),
                    )
                continue
            if what == "event":
                await self._send(response, line(payload))
            elif what == "error":
                await self._send(response, line({"type": "ERROR", "object": payload}))
                return response
            elif what == "close":
                return response
            elif what == "drop":
                cut = line(
                    {"type": "ADDED", "object": {"kind": kind, "metadata": {"name": "x" * 200}}}
                )
                await response.write(cut[: len(cut) // 2])
                assert request.transport is not None
                request.transport.abort()  # no terminating chunk: the client sees a broken body
                return response
            elif what == "freeze":
                await self._stopping.wait()  # silence, with the connection left open
                return response
        return response  # timeoutSeconds: the terminating chunk and nothing else

    async def _send(self, response: web.StreamResponse, data: bytes) -> None:
        if not self.split_chunks:
            await response.write(data)
            return
        cuts = sorted(self.rng.sample(range(1, len(data)), min(3, len(data) - 1)))
        for start, end in zip([0, *cuts], [*cuts, len(data)], strict=True):
            await response.write(data[start:end])


def _route(
    parts: list[str],
) -> tuple[str, str, str, str | None, str | None, str | None] | None:
    """(group, version, plural, namespace, name, subresource) of a resource path (README b.1)."""
    if parts[:2] == ["api", "v1"]:
        group, version, rest = "", "v1", parts[2:]
    elif len(parts) >= 3 and parts[0] == "apis":
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return None
    namespace = None
    # /api/v1/namespaces/NAME is a Namespace, /api/v1/namespaces/NAME/services its Services
    if len(rest) >= 3 and rest[0] == "namespaces" and (group, rest[2]) in KINDS:
        namespace, rest = rest[1], rest[2:]
    if not 1 <= len(rest) <= 3 or (group, rest[0]) not in KINDS:
        return None
    if namespace is not None and not KINDS[group, rest[0]][2]:
        return None
    name, subresource = [*rest[1:], None, None][:2]
    return group, version, rest[0], namespace, name, subresource


def _store_secret(secret: Obj, old: Obj | None) -> None:
    """As the real server stores a Secret: `type` defaults to Opaque (so the fieldSelector
    `type=Opaque` matches one written without it), `stringData` is merged into base64 `data` and
    never shown, and the type of an existing Secret cannot change (it is immutable)."""
    secret.setdefault("type", "Opaque")
    plain = secret.pop("stringData", None) or {}
    encoded = {k: base64.b64encode(v.encode()).decode() for k, v in plain.items()}
    if encoded:
        secret["data"] = {**(secret.get("data") or {}), **encoded}
    if old is not None and old["type"] != secret["type"]:
        raise ValueError(f"Secret {secret['metadata']['name']}: type is immutable (422)")


def _verb(method: str, name: str | None, subresource: str | None, watch: bool) -> str:
    if method == "GET":
        return "get" if name else ("watch" if watch else "list")
    return {"PATCH": "patch", "PUT": "update"}.get(method, method.lower())


def _qualified(group: str, plural: str) -> str:
    return f"{plural}.{group}" if group else plural


def _in_namespace(obj: Obj, namespace: str | None) -> bool:
    return namespace is None or obj["metadata"].get("namespace") == namespace


def _field_selector(query: dict[str, str]) -> dict[str, str]:
    """`fieldSelector=type=kubernetes.io/tls,metadata.name=x` as {path: value}: equality only,
    which is all the proxy asks for (the real server also knows `!=`)."""
    selector = query.get("fieldSelector") or ""
    return dict(term.split("=", 1) for term in selector.split(",") if term)


def _has_fields(obj: Obj, fields: dict[str, str]) -> bool:
    for path, wanted in fields.items():
        value: Any = obj
        for step in path.split("."):
            value = value.get(step) if isinstance(value, dict) else None
        if value != wanted:
            return False
    return True


def _error(
    code: int,
    reason: str,
    message: str,
    details: Obj | None = None,
    *,
    metadata: Obj | None = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    return web.json_response(
        status(code, reason, message, details, metadata), status=code, headers=headers
    )


def _fault_response(fault: Fault, requested: str) -> web.Response:
    headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else None
    if fault.code == 429:
        details = {"retryAfterSeconds": fault.retry_after or 1}
        return _error(
            429,
            "TooManyRequests",
            "Too many requests, please try again later.",
            details,
            headers=headers,
        )
    if fault.code == 410:
        return _error(410, "Expired", f"too old resource version: {requested} (1)")
    if fault.code == 503:
        return _error(
            503,
            "ServiceUnavailable",
            "the server is currently unable to handle the request",
            headers=headers,
        )
    body = internal_error()
    return web.json_response(body, status=fault.code, headers=headers)


def _continue_token(snapshot_id: int, offset: int) -> str:
    raw = json.dumps({"v": "meta.k8s.io/v1", "id": snapshot_id, "start": offset}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _read_continue(token: str) -> tuple[int, int]:
    data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    return int(data["id"]), int(data["start"])


def _merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: mappings merge key by key, null deletes, anything else replaces."""
    if not isinstance(patch, dict):
        return patch
    merged = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = _merge_patch(merged.get(key), value)
    return merged

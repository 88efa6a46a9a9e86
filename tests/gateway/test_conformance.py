"""The Gateway API conformance suite's HTTPRoute tests (v1.6.1), ported: each test's manifests
on the suite's base objects, served from `--manifests` by a real proxy to real echo backends on
loopback, and every request the Go test makes checked as it checks it. Status is checked on
what translation concludes (`sticky-proxy routes` prints the same).

The data is in tests/gateway/conformance/ (its README says how to read it). A case this proxy
does not pass is listed in KNOWN with the reason; the test fails when an unlisted case fails and
when a listed one passes, so the list stays exactly what does not work.
"""

from __future__ import annotations

import asyncio
import copy
import ssl
from collections import Counter
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest
import yaml

from proxy.app.runtime import ProxyServer
from proxy.control.translate import TranslateOptions, translate
from proxy.core.model import ObjectStatus
from tests.certs import self_signed
from tests.gateway.echo import Echo, start_echo
from tests.integration.cluster import reload_after, write_manifest
from tests.integration.conftest import StartManifestProxy

Obj = dict[str, Any]
DATA = Path(__file__).parent / "conformance"
BASE = yaml.safe_load((DATA / "base.yaml").read_text())
FILES = sorted(DATA.glob("httproute-*.yaml"))
CLASS_NAME = "sticky-proxy"
INFRA = "gateway-conformance-infra"
TIMEOUT_CODES = {408, 504}  # the suite counts either as a timeout

# What does not pass, by ShortName and case index (or "status N", "distribution",
# "repeated"), with the reason. See docs/gateway-api.md, "Not built yet".
NOT_BUILT = "not built yet"
SHARED_LISTENER = (
    "every Gateway is served on the proxy's one HTTP listener, so a request cannot pick a Gateway "
    "or a listener port, and a route on another Gateway's listener with the same host and path "
    "can answer it"
)


def _each(cases: Iterable[int | str], reason: str) -> dict[int | str, str]:
    return dict.fromkeys(cases, reason)


KNOWN: dict[str, dict[int | str, str]] = {
    "HTTPRouteCORS": _each([*range(17), "status 0", "status 1"], f"CORS: {NOT_BUILT}"),
    "HTTPRouteListenerPortMatching": _each([1, 3, 4], SHARED_LISTENER),
    "HTTPRouteMultipleGateways": _each([1], SHARED_LISTENER),
    "HTTPRouteRedirectPortAndScheme": _each([6], SHARED_LISTENER),
    "HTTPRouteRequestMirror": _each([0, 1, "status 0"], f"RequestMirror: {NOT_BUILT}"),
    "HTTPRouteRequestMultipleMirrors": _each([0, 1, "status 0"], f"RequestMirror: {NOT_BUILT}"),
    "HTTPRouteRequestPercentageMirror": _each(
        [0, 1, 2, "distribution", "status 0"], f"RequestMirror: {NOT_BUILT}"
    ),
}


def documents(text: str) -> list[Obj]:
    objects = [doc for doc in yaml.safe_load_all(text) if doc]
    for obj in objects:
        if obj.get("kind") == "Gateway":
            obj["spec"]["gatewayClassName"] = CLASS_NAME
    return objects


def short_name(file: Path) -> str:
    return str(yaml.safe_load(file.read_text())["short_name"])


# --- the world ---------------------------------------------------------------------------------


def endpoint_slices(objects: Iterable[Obj], echoes: dict[tuple[str, str], Echo]) -> list[Obj]:
    """One slice per Service that selects pods by `app` (the suite's Deployments are echoes):
    every Service port, on the echo's port."""
    slices = []
    for obj in objects:
        if obj.get("kind") != "Service" or "selector" not in obj["spec"]:
            continue
        namespace, name = obj["metadata"]["namespace"], obj["metadata"]["name"]
        echo = echoes.get((namespace, obj["spec"]["selector"].get("app", name)))
        if echo is None:
            continue
        ports = [{"name": port.get("name", ""), "port": echo.port} for port in obj["spec"]["ports"]]
        slices.append(
            {
                "apiVersion": "discovery.k8s.io/v1",
                "kind": "EndpointSlice",
                "metadata": {
                    "name": f"{name}-echo",
                    "namespace": namespace,
                    "labels": {"kubernetes.io/service-name": name},
                },
                "addressType": "IPv4",
                "ports": [{**port, "protocol": "TCP"} for port in ports],
                "endpoints": [_endpoint(echo)],
            }
        )
    return slices


def _endpoint(echo: Echo) -> Obj:
    return {
        "addresses": ["127.0.0.1"],
        "conditions": {"ready": True, "serving": True, "terminating": False},
        "targetRef": {"kind": "Pod", "name": echo.pod, "namespace": echo.namespace},
    }


class World:
    def __init__(self, test: Obj, manifest: Path) -> None:
        self.test = test
        self.objects = documents(BASE["manifests"]) + documents(test["manifests"])
        self.manifest = manifest
        self.echoes: dict[tuple[str, str], Echo] = {}  # by namespace and app (Deployment)
        self.trust = b""  # the runtime certificate, which HTTPS clients trust

    async def start_echoes(self) -> None:
        for backend in BASE["backends"]:
            key = (backend["namespace"], backend["service"])
            if key not in self.echoes:
                self.echoes[key] = await start_echo(*key)
        for step in self.test.get("setup_before_cases") or []:
            self.fill_slices(step["endpointslices"], self.echoes[(INFRA, "infra-backend-v1")])

    def fill_slices(self, names: list[str], echo: Echo) -> None:
        """What the suite's setup does to hand-made slices: the IPv4 ones get the pods of
        infra-backend-v1 (here its echo, on its port); the others stay as they are."""
        for obj in self.objects:
            metadata = obj["metadata"]
            if obj.get("kind") != "EndpointSlice" or metadata["name"] not in names:
                continue
            if obj["addressType"] == "IPv4":
                obj["endpoints"] = [_endpoint(echo)]
                obj["ports"] = [{**port, "port": echo.port} for port in obj["ports"]]

    def add_runtime_secret(self) -> None:
        """The certificate the suite makes at its start (base.yaml, `runtime_secrets`)."""
        (spec,) = BASE["runtime_secrets"]
        chain, key = self_signed("*.org", "*.wildcard.org")
        self.trust = chain
        self.objects.append(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "type": "kubernetes.io/tls",
                "metadata": {"name": spec["name"], "namespace": spec["namespace"]},
                "stringData": {"tls.crt": chain.decode(), "tls.key": key.decode()},
            }
        )

    def write(self) -> None:
        write_manifest(self.manifest, self.all_objects())

    def all_objects(self) -> list[Obj]:
        return self.objects + endpoint_slices(self.objects, self.echoes)

    def delete(self, what: Obj) -> None:
        self.objects = [
            obj
            for obj in self.objects
            if (obj.get("kind"), obj["metadata"].get("namespace"), obj["metadata"]["name"])
            != (what["kind"], what.get("namespace"), what["name"])
        ]

    def statuses(self) -> tuple[ObjectStatus, ...]:
        return translate(copy.deepcopy(self.all_objects()), TranslateOptions()).statuses


# --- requests ----------------------------------------------------------------------------------


class Sender:
    def __init__(self, server: ProxyServer, session: aiohttp.ClientSession, trust: bytes) -> None:
        assert server.address is not None
        self.address = str(server.address)
        self.tls_address = str(server.tls_address)
        self.session = session
        self.trust = ssl.create_default_context(cadata=trust.decode()) if trust else None
        if self.trust is not None:
            # The suite's certificate names "*.org", which Go's client accepts for example.org
            # and OpenSSL refuses (a wildcard over a one-label suffix): trust the chain alone.
            self.trust.check_hostname = False

    async def send(self, request: Obj) -> tuple[int, dict[str, str], Obj | None]:
        """(status, response headers joined by name in lower case, the echo's JSON or None)."""
        headers = {"Host": request.get("host") or self.address}
        headers.update(request.get("headers") or {})
        echo_set = request.get("backend_set_response_headers") or {}
        headers["X-Echo-Set-Header"] = ",".join(f"{k}:{v}" for k, v in echo_set.items())
        https = request.get("protocol") == "https"
        address = f"https://{self.tls_address}" if https else f"http://{self.address}"
        async with self.session.request(
            request.get("method", "GET"),
            address + request["path"],
            headers=headers,
            allow_redirects=False,
            ssl=self.trust if https else True,
            server_hostname=request.get("sni") if https else None,
        ) as response:
            joined: dict[str, list[str]] = {}
            for name, value in response.headers.items():
                joined.setdefault(name.lower(), []).append(value)
            body = None
            if response.content_type == "application/json":
                body = await response.json()
            return response.status, {k: ",".join(v) for k, v in joined.items()}, body

    async def websocket(self, case: Obj) -> str | None:
        async with self.session.ws_connect(f"http://{self.address}{case['request']['path']}") as ws:
            for step in case["websocket"]["exchanges"]:
                if "send_text" in step:
                    await ws.send_str(step["send_text"])
                    if (await ws.receive_str()) != step["expect_text"]:
                        return "the text frame did not come back"
                else:
                    await ws.send_bytes(bytes(step["send_binary"]))
                    if list(await ws.receive_bytes()) != step["expect_binary"]:
                        return "the binary frame did not come back"
        return None


def check_case(case: Obj, status: int, headers: dict[str, str], echo: Obj | None) -> str | None:
    """Why the answer fails the case's expectation, or None."""
    expected = case["response"]["status"]
    allowed = set(expected) if isinstance(expected, list) else {expected}
    if allowed & TIMEOUT_CODES:
        allowed |= TIMEOUT_CODES
    if status not in allowed:
        return f"status {status}, expected {expected}"
    if "redirect" in case:
        return check_redirect(case["redirect"], headers.get("location", ""))
    if status not in (200, 204):
        return None
    return check_response_headers(case["response"], headers) or check_backend(case, echo)


def check_response_headers(expected: Obj, headers: dict[str, str]) -> str | None:
    for name, value in (expected.get("headers") or {}).items():
        if headers.get(name.lower()) != value:
            return f"response header {name}: {headers.get(name.lower())!r}, expected {value!r}"
    for name, values in (expected.get("header_values_any_of") or {}).items():
        if headers.get(name.lower()) not in values:
            return f"response header {name}: {headers.get(name.lower())!r} not in {values}"
    for name in expected.get("absent_headers") or ():
        if name.lower() in headers:
            return f"response header {name} should be absent"
    return None


def check_backend(case: Obj, echo: Obj | None) -> str | None:
    backend = case.get("backend")
    if backend is None:
        return None
    if echo is None:
        return "no echo answer"
    if echo["namespace"] != backend["namespace"]:
        return f"served by namespace {echo['namespace']}, expected {backend['namespace']}"
    if backend.get("service") and not echo["pod"].startswith(backend["service"]):
        return f"served by pod {echo['pod']}, expected {backend['service']}"
    seen = case.get("backend_request")
    if seen is None:
        return None
    if echo["path"] != seen["path"]:
        return f"backend saw path {echo['path']!r}, expected {seen['path']!r}"
    if echo["method"] != seen.get("method", "GET"):
        return f"backend saw method {echo['method']}"
    if seen.get("host") is not None and echo["host"] != seen["host"]:
        return f"backend saw host {echo['host']!r}, expected {seen['host']!r}"
    received = {name.lower(): ",".join(values) for name, values in echo["headers"].items()}
    for name, value in (seen.get("headers") or {}).items():
        if received.get(name.lower()) != value:
            return f"backend saw {name}: {received.get(name.lower())!r}, expected {value!r}"
    for name in seen.get("absent_headers") or ():
        if name.lower() in received:
            return f"backend saw {name}, which should be absent"
    return None


def check_redirect(expected: Obj, location: str) -> str | None:
    parts = urlsplit(location)
    ports = expected.get("port")
    port = "" if parts.port is None else str(parts.port)
    if isinstance(ports, list) and port not in ports:
        return f"Location {location}: port {port!r}, expected one of {ports}"
    if isinstance(ports, str) and port != ports:
        return f"Location {location}: port {port!r}, expected {ports!r}"
    if expected.get("scheme") and parts.scheme != expected["scheme"]:
        return f"Location {location}: scheme, expected {expected['scheme']}"
    if expected.get("host") is not None and parts.hostname != expected["host"]:
        return f"Location {location}: host, expected {expected['host']}"
    if expected.get("path") is not None and parts.path != expected["path"]:
        return f"Location {location}: path, expected {expected['path']}"
    return None


# --- status --------------------------------------------------------------------------------------


# What the suite checks of status that is the API server's, not translation's: addresses,
# observedGeneration after a patch, Pods being ready. Not evaluated here.
NOT_EVALUATED = frozenset({
    "HTTPRouteMustHaveLatestConditions", "generation changed", "NamespacesMustBeReady", None,
})  # fmt: skip


def check_status(entry: Obj, statuses: tuple[ObjectStatus, ...]) -> str | None:
    """Why the conditions translation reached fail the entry, or None."""
    check = entry.get("check")
    if check in NOT_EVALUATED:
        return None
    if "route" in entry:
        namespace, name = entry["route"].split("/")
        parents = [
            s for s in statuses if (s.kind, s.namespace, s.name) == ("HTTPRoute", namespace, name)
        ]
        if check == "HTTPRouteMustHaveNoAcceptedParents":
            accepted = [p for p in parents if _condition(p, "Accepted") == (True, "Accepted")]
            return f"accepted by {[p.parent for p in accepted]}" if accepted else None
        parent = f"Gateway {entry['parent']}" if "parent" in entry else None
        if parent is None and "parent_ref" in entry:
            ref = entry["parent_ref"]
            parent = f"Gateway {ref['namespace']}/{ref['name']}"
        found = [p for p in parents if p.parent == parent]
        if not found:
            return f"no status for parent {parent} (have {[p.parent for p in parents]})"
        return _conditions_hold(found[0], entry.get("conditions") or [])
    if "gateway" in entry:
        namespace, name = entry["gateway"].split("/")
        listeners = [
            s for s in statuses
            if (s.kind, s.namespace, s.name) == ("Gateway", namespace, name) and s.parent
        ]  # fmt: skip
        if check == "GatewayMustHaveZeroRoutes":
            busy = [s.parent for s in listeners if s.attached_routes]
            return f"routes attached to {busy}" if busy else None
        if check == "GatewayStatusMustHaveListeners":
            return _listeners_hold(entry["listeners_exactly"], listeners)
        if check == "GatewayAndHTTPRoutesMustBeAccepted":
            if not listeners:
                return "no listener status"
            for listener in listeners:
                problem = _conditions_hold(listener, entry.get("conditions") or [])
                if problem:
                    return f"{listener.parent}: {problem}"
            return None
    raise AssertionError(f"unknown status check {check!r}")


def _condition(status: ObjectStatus, kind: str) -> tuple[bool, str] | None:
    for condition in status.conditions:
        if condition.type == kind:
            return condition.status, condition.reason
    return None


def _conditions_hold(status: ObjectStatus, expected: list[Obj]) -> str | None:
    for want in expected:
        found = _condition(status, want["type"])
        wanted_status = str(want["status"]) == "True"
        if found is None or found[0] != wanted_status:
            return f"{want['type']} is {found}, expected {want['status']}"
        if want.get("reason") and found[1] != want["reason"]:
            return f"{want['type']} reason {found[1]}, expected {want['reason']}"
    return None


def _listeners_hold(expected: list[Obj], listeners: list[ObjectStatus]) -> str | None:
    by_name = {s.parent.removeprefix("listener "): s for s in listeners}
    if set(by_name) != {want["name"] for want in expected}:
        return f"listeners {sorted(by_name)}"
    for want in expected:
        found = by_name[want["name"]]
        if "attached_routes" in want and found.attached_routes != want["attached_routes"]:
            return f"{want['name']}: {found.attached_routes} routes attached"
        problem = _conditions_hold(found, want.get("conditions") or [])
        if problem:
            return f"{want['name']}: {problem}"
    return None


# --- the test ------------------------------------------------------------------------------------


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(
        cookie_jar=aiohttp.DummyCookieJar(), timeout=aiohttp.ClientTimeout(total=10)
    ) as client:
        yield client


async def run_test(
    test: Obj, world: World, server: ProxyServer, sender: Sender
) -> dict[int | str, str]:
    """Every case and status entry of one conformance test: {which: why} for those failing."""
    failures: dict[int | str, str] = {}
    statuses = world.statuses()  # the suite waits for the status before any request
    for index, entry in enumerate(test.get("status") or []):
        problem = check_status(entry, statuses)
        if problem is not None:
            failures[f"status {index}"] = problem
    for index, case in enumerate(test.get("cases") or []):
        for step in case.get("before") or []:
            world.delete(step["delete"])
            assert await reload_after(server, world.write) == "success"
        problem = await run_case(case, sender)
        if problem is not None:
            failures[index] = problem
    if "distribution" in test and "per_case" in test["distribution"]:
        failures["distribution"] = "RequestMirror is not built"  # counted in mirror logs
    elif "distribution" in test:
        problem = await run_distribution(test["distribution"], sender)
        if problem is not None:
            failures["distribution"] = problem
    if "repeated_requests" in test:
        problem = await run_repeated(test["repeated_requests"], sender)
        if problem is not None:
            failures["repeated"] = problem
    return failures


async def run_case(case: Obj, sender: Sender) -> str | None:
    request = case["request"]
    try:
        if request.get("protocol") == "websocket":
            return await sender.websocket(case)
        if "mirrored_to" in case:
            return "RequestMirror is not built"
        status, headers, echo = await sender.send(request)
    except (aiohttp.ClientError, TimeoutError) as error:
        return f"request failed: {error!r}"
    return check_case(case, status, headers, echo)


async def run_distribution(spec: Obj, sender: Sender) -> str | None:
    counts: Counter[str] = Counter()
    total = spec["total_requests"]
    semaphore = asyncio.Semaphore(spec["concurrency"])

    async def one() -> None:
        async with semaphore:
            _, _, echo = await sender.send(spec["request"])
            assert echo is not None
            counts[echo["pod"].rsplit("-", 2)[0]] += 1

    await asyncio.gather(*(one() for _ in range(total)))
    for service, weight in spec["expected_weights"].items():
        share = counts[service] / total
        if abs(share - weight) > spec["tolerance"]:
            return f"{service}: {share:.3f} of requests, expected {weight} ± {spec['tolerance']}"
    return None


async def run_repeated(spec: Obj, sender: Sender) -> str | None:
    for _ in range(spec["count"]):
        _, _, echo = await sender.send(spec["request"])
        assert echo is not None
        values = echo["headers"].get("Backend", [])
        if len(values) != 1 or not echo["pod"].startswith(values[0]):
            return f"pod {echo['pod']} saw Backend: {values}"
    return None


@pytest.mark.parametrize("file", FILES, ids=short_name)
async def test_conformance(
    file: Path,
    tmp_path: Path,
    manifest_proxy: StartManifestProxy,
    session: aiohttp.ClientSession,
) -> None:
    test = yaml.safe_load(file.read_text())
    world = World(test, tmp_path / "world.yaml")
    world.add_runtime_secret()
    await world.start_echoes()
    try:
        world.write()
        server = await manifest_proxy(world.manifest, tls=True)
        failures = await run_test(test, world, server, Sender(server, session, world.trust))
    finally:
        for echo in world.echoes.values():
            await echo.stop()
    known = KNOWN.get(test["short_name"], {})
    unexpected = {k: v for k, v in failures.items() if k not in known}
    fixed = sorted(str(k) for k in known if k not in failures)
    assert not unexpected, f"failing and not in KNOWN: {unexpected}"
    assert not fixed, f"in KNOWN but passing now: {fixed}"

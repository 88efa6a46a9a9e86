"""A Kubernetes cluster on loopback for the manifest tests, and the objects that describe it.

Pods are upstream servers on 127.0.0.2, .3, ... all listening on one port, the way a Deployment's
pods share a container port; a Service `web` (port 80 named `http`, targetPort `http`) and
EndpointSlices (whose ports carry the Service port's name) list them, written to real files that
a real proxy watches.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from proxy.app.runtime import ProxyServer
from tests.integration.harness import Upstream, start_upstream, url

Obj = dict[str, Any]
NAMESPACE = "default"
ANNOTATION = "nginx.ingress.kubernetes.io/"


# --- objects -----------------------------------------------------------------------------------


def path(
    text: str = "/", service: str = "web", port: int | str = 80, path_type: str = "Prefix"
) -> Obj:
    port_ref = {"number": port} if isinstance(port, int) else {"name": port}
    return {
        "path": text,
        "pathType": path_type,
        "backend": {"service": {"name": service, "port": port_ref}},
    }


def rule(host: str | None, *paths: Obj) -> Obj:
    http = {"http": {"paths": list(paths or [path()])}}
    return {"host": host, **http} if host else http


def ingress(name: str, *rules: Obj, ingress_class: str = "sticky", **annotations: str) -> Obj:
    """An Ingress; annotations by their ingress-nginx name with `_` for `-` (affinity_mode=...)."""
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {
            "name": name,
            "namespace": NAMESPACE,
            "annotations": {
                ANNOTATION + key.replace("_", "-"): value for key, value in annotations.items()
            },
        },
        "spec": {"ingressClassName": ingress_class, "rules": list(rules)},
    }


def service(name: str = "web", port: int = 80, target_port: int | str = "http") -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {"ports": [{"name": "http", "port": port, "targetPort": target_port}]},
    }


def endpoint_slice(
    pods: Sequence[Upstream],
    service_name: str = "web",
    name: str | None = None,
    draining: Iterable[Upstream] = (),
) -> Obj:
    """One slice holding `pods` (ready), and `draining` (serving but terminating)."""
    draining = list(draining)
    everyone = [*pods, *draining]
    ports = {pod.port for pod in everyone}
    assert len(ports) <= 1, "a slice has one port for all its endpoints"
    conditions = {"ready": True, "serving": True, "terminating": False}
    leaving = {"ready": False, "serving": True, "terminating": True}
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": name or f"{service_name}-slice",
            "namespace": NAMESPACE,
            "labels": {"kubernetes.io/service-name": service_name},
        },
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": port, "protocol": "TCP"} for port in ports],
        "endpoints": [
            {
                "addresses": [pod.host],
                "conditions": leaving if pod in draining else conditions,
                "targetRef": {"kind": "Pod", "name": pod.name, "namespace": NAMESPACE},
            }
            for pod in everyone
        ],
    }


def web_app(
    pods: Sequence[Upstream], *rules: Obj, draining: Iterable[Upstream] = (), **annotations: str
) -> list[Obj]:
    """The usual world: Ingress `web` (host app.test, `/`, or `rules`), Service `web`, one slice."""
    return [
        ingress("web", *(rules or [rule("app.test")]), **annotations),
        service(),
        endpoint_slice(pods, draining=draining),
    ]


def write_manifest(file: Path, objects: Iterable[Obj]) -> None:
    """Replace `file` atomically (write a temporary file, rename it over), as `kubectl` users and
    ConfigMap updates do; the proxy must never see half of it."""
    temporary = file.with_name(f".{file.name}.tmp")
    temporary.write_text(yaml.safe_dump_all(list(objects), sort_keys=False))
    os.replace(temporary, file)


# --- pods --------------------------------------------------------------------------------------


class Pods:
    """Upstream servers on consecutive loopback addresses, all on one port picked at the start."""

    def __init__(self) -> None:
        self.started: list[Upstream] = []
        self.port = 0

    async def start(self, count: int) -> list[Upstream]:
        new = []
        for _ in range(count):
            number = len(self.started) + 2
            host = f"127.0.0.{number}"
            pod = await start_upstream(f"pod-{number}", self.port, host=host)
            self.port = pod.port  # the first one picks a free port; the others share it
            self.started.append(pod)
            new.append(pod)
        return new

    async def stop(self) -> None:
        for pod in self.started:
            await pod.stop()


def by_endpoint(pods: Iterable[Upstream]) -> dict[str, Upstream]:
    """`ip:port` (the node text affinity hashes) → pod."""
    return {pod.endpoint.node: pod for pod in pods}


# --- waiting for the proxy ---------------------------------------------------------------------

WAIT_LIMIT = 10.0  # generous: CI machines are small and sometimes busy


async def until(condition: Callable[[], bool], what: str, limit: float = WAIT_LIMIT) -> float:
    """Seconds until `condition()` held, polled every 10 ms; fails the test after `limit`."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    while not condition():
        if loop.time() - start > limit:
            raise AssertionError(f"{what}: not within {limit} s")
        await asyncio.sleep(0.01)
    return loop.time() - start


def reloads(server: ProxyServer, result: str) -> int:
    value = server.metrics.registry.get_sample_value(
        "sticky_proxy_config_reloads_total", {"result": result}
    )
    assert value is not None, "the reload counter is exported from startup"
    return int(value)


async def reload_after(server: ProxyServer, change: Callable[[], object]) -> str:
    """Make `change` to the files and wait until the proxy has reloaded them: "success" or
    "failure", whichever the reload counter says."""
    before = {result: reloads(server, result) for result in ("success", "failure")}
    change()
    await until(
        lambda: any(reloads(server, result) > count for result, count in before.items()),
        "the proxy reloading the changed manifests",
    )
    return "success" if reloads(server, "success") > before["success"] else "failure"


# --- requests ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    status: int
    pod: str | None  # the upstream that answered, None for the proxy's own answers
    set_cookies: tuple[str, ...]  # the affinity cookie and any others, as sent

    def cookie(self, name: str) -> str:
        """The one Set-Cookie for `name`, whole (value and attributes)."""
        (found,) = [c for c in self.set_cookies if c.startswith(name + "=")]
        return found

    def value(self, name: str) -> str:
        return self.cookie(name).split(";")[0].removeprefix(name + "=")


async def get(
    server: ProxyServer,
    target: str = "/",
    host: str = "app.test",
    cookie: str | None = None,
    headers: dict[str, str] | None = None,
) -> Answer:
    """One request with exactly these Host and Cookie headers (and `headers`): no cookie jar in
    between."""
    headers = {"Host": host, **({"Cookie": cookie} if cookie else {}), **(headers or {})}
    async with (
        aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as session,
        session.get(url(server, target), headers=headers) as response,
    ):
        json = response.content_type == "application/json"
        pod = (await response.json())["name"] if json else None
        return Answer(response.status, pod, tuple(response.headers.getall("Set-Cookie", ())))

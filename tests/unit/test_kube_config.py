"""Which cluster and credentials `--kubernetes` uses: kubeconfig merging and selection, the pod's
service account, and the one-line errors for what cannot be used."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
import yaml

from proxy.control.sources.kubernetes.config import (
    ClusterAccess,
    ExecConfig,
    KubeConfigError,
    UserAuth,
    find_access,
    in_cluster_access,
    load_kubeconfig,
)

PEM = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


def config(
    *,
    clusters: dict[str, dict[str, Any]] | None = None,
    users: dict[str, dict[str, Any]] | None = None,
    contexts: dict[str, dict[str, Any]] | None = None,
    current: str | None = None,
) -> dict[str, Any]:
    document: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": n, "cluster": c} for n, c in (clusters or {}).items()],
        "users": [{"name": n, "user": u} for n, u in (users or {}).items()],
        "contexts": [{"name": n, "context": c} for n, c in (contexts or {}).items()],
    }
    if current is not None:
        document["current-context"] = current
    return document


def write(path: Path, document: dict[str, Any] | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(document if isinstance(document, str) else yaml.safe_dump(document))
    return path


def only_cluster(server: str) -> dict[str, Any]:
    return config(clusters={"c": {"server": server}}, contexts={"c": {"cluster": "c"}}, current="c")


def minikube(tmp_path: Path) -> Path:
    """The kubeconfig minikube writes: certificate files next to it, relative paths."""
    return write(
        tmp_path / "kube" / "config",
        config(
            clusters={
                "minikube": {
                    "server": "https://192.168.49.2:8443",
                    "certificate-authority": "ca.crt",
                }
            },
            users={
                "minikube": {
                    "client-certificate": "profiles/client.crt",
                    "client-key": "/abs/client.key",
                }
            },
            contexts={
                "minikube": {"cluster": "minikube", "user": "minikube", "namespace": "default"}
            },
            current="minikube",
        ),
    )


def test_minikube_kubeconfig_with_relative_certificate_paths(tmp_path: Path) -> None:
    access = load_kubeconfig([minikube(tmp_path)], None, required=True)
    kube = tmp_path / "kube"
    assert access == ClusterAccess(
        server="https://192.168.49.2:8443",
        ca=kube / "ca.crt",
        user=UserAuth(
            client_cert=kube / "profiles" / "client.crt", client_key=Path("/abs/client.key")
        ),
        origin=f"kubeconfig {kube / 'config'}, context minikube",
    )


def test_kubeconfig_variable_merges_files_the_first_to_name_an_entry_wins(tmp_path: Path) -> None:
    first = write(
        tmp_path / "a" / "config",
        config(
            clusters={"prod": {"server": "https://prod:6443", "certificate-authority": "ca.pem"}},
            users={"me": {"token": "first"}},
        ),
    )
    second = write(
        tmp_path / "b" / "config",
        config(
            clusters={
                "prod": {"server": "https://other:6443"},
                "dev": {"server": "https://dev:6443"},
            },
            users={"me": {"token": "second"}},
            contexts={
                "prod": {"cluster": "prod", "user": "me"},
                "dev": {"cluster": "dev", "user": "me"},
            },
            current="dev",
        ),
    )
    env = {"KUBECONFIG": f"{first}:{tmp_path / 'missing'}:{second}"}
    chosen = find_access(None, None, env, tmp_path)
    assert (chosen.server, chosen.user.token) == ("https://dev:6443", "first")
    prod = find_access(None, "prod", env, tmp_path)
    assert prod.server == "https://prod:6443"
    assert prod.ca == tmp_path / "a" / "ca.pem"  # relative to the file that defined it


def test_the_first_file_with_a_current_context_decides_it(tmp_path: Path) -> None:
    clusters = {"one": {"server": "https://one:443"}, "two": {"server": "https://two:443"}}
    contexts = {"one": {"cluster": "one"}, "two": {"cluster": "two"}}
    first = write(tmp_path / "1", config(clusters=clusters, contexts=contexts, current="two"))
    second = write(tmp_path / "2", config(current="one"))
    access = find_access(None, None, {"KUBECONFIG": f"{second}:{first}"}, tmp_path)
    assert access.server == "https://one:443"


def test_selection_order_flag_then_variable_then_pod_then_home(tmp_path: Path) -> None:
    home_config = minikube(tmp_path / "home")
    (tmp_path / "home" / ".kube").mkdir()
    home_config.rename(tmp_path / "home" / ".kube" / "config")
    flag = write(tmp_path / "flag", only_cluster("https://flag:1"))
    variable = write(tmp_path / "var", only_cluster("https://var:1"))
    account = tmp_path / "sa"
    write(account / "token", "t0ken\n")
    pod = {"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"}
    home = tmp_path / "home"
    env = {"KUBECONFIG": str(variable), **pod}
    assert find_access(flag, None, env, home, account).server == "https://flag:1"
    assert find_access(None, None, env, home, account).server == "https://var:1"
    assert find_access(None, None, pod, home, account).server == "https://10.96.0.1:443"
    assert find_access(None, None, {}, home, account).server == "https://192.168.49.2:8443"


def test_in_cluster_brackets_an_ipv6_service_host(tmp_path: Path) -> None:
    write(tmp_path / "token", "abc")
    env = {"KUBERNETES_SERVICE_HOST": "fd00:10:96::1", "KUBERNETES_SERVICE_PORT": "443"}
    access = in_cluster_access(env, tmp_path)
    assert access.server == "https://[fd00:10:96::1]:443"
    assert (access.ca, access.user) == (
        tmp_path / "ca.crt",
        UserAuth(token_file=tmp_path / "token"),
    )


def test_inline_data_and_exec_plugins_are_read(tmp_path: Path) -> None:
    encoded = base64.b64encode(PEM).decode()
    path = write(
        tmp_path / "config",
        config(
            clusters={
                "eks": {
                    "server": "https://eks.example:443",
                    "certificate-authority-data": encoded,
                    "tls-server-name": "kubernetes",
                    "insecure-skip-tls-verify": False,
                }
            },
            users={
                "eks": {
                    "client-certificate-data": encoded,
                    "client-key-data": encoded,
                    "exec": {
                        "apiVersion": "client.authentication.k8s.io/v1beta1",
                        "command": "bin/get-token",
                        "args": ["--cluster", "x"],
                        "env": [{"name": "AWS_PROFILE", "value": "ops"}],
                        "provideClusterInfo": True,
                    },
                }
            },
            contexts={"eks": {"cluster": "eks", "user": "eks"}},
            current="eks",
        ),
    )
    access = load_kubeconfig([path], None)
    assert (access.ca, access.tls_server_name) == (PEM, "kubernetes")
    assert (access.user.client_cert, access.user.client_key) == (PEM, PEM)
    assert access.user.exec == ExecConfig(
        api_version="client.authentication.k8s.io/v1beta1",
        command=str(tmp_path / "bin" / "get-token"),  # a path relative to the kubeconfig
        args=("--cluster", "x"),
        env=(("AWS_PROFILE", "ops"),),
        provide_cluster_info=True,
    )


@pytest.mark.parametrize(
    ("cluster", "user", "complaint"),
    [
        ({}, {}, r"cluster 'c': server is missing"),
        ({"server": "http://plain:8080"}, {}, r"only https:// API servers"),
        ({"server": "https://x", "proxy-url": "http://p"}, {}, r"proxy-url is not supported"),
        ({"server": "https://x", "certificate-authority-data": "%%"}, {}, r"not base64"),
        (
            {"server": "https://x"},
            {"auth-provider": {"name": "gcp"}},
            r"user 'u': auth-provider 'gcp' is not supported .*exec credential plugin",
        ),
        ({"server": "https://x"}, {"username": "a", "password": "b"}, r"basic auth"),
        ({"server": "https://x"}, {"client-certificate": "c.crt"}, r"go together"),
        (
            {"server": "https://x"},
            {"exec": {"apiVersion": "client.authentication.k8s.io/v1alpha1", "command": "x"}},
            r"v1alpha1.* not supported",
        ),
        (
            {"server": "https://x"},
            {
                "exec": {
                    "apiVersion": "client.authentication.k8s.io/v1",
                    "command": "x",
                    "interactiveMode": "Always",
                }
            },
            r"needs a terminal",
        ),
    ],
)
def test_unusable_entries_are_one_line_naming_file_and_entry(
    tmp_path: Path, cluster: dict[str, Any], user: dict[str, Any], complaint: str
) -> None:
    path = write(
        tmp_path / "config",
        config(
            clusters={"c": cluster},
            users={"u": user},
            contexts={"x": {"cluster": "c", "user": "u"}},
            current="x",
        ),
    )
    with pytest.raises(KubeConfigError, match=rf"^kubeconfig {path}: .*{complaint}") as raised:
        load_kubeconfig([path], None)
    assert "\n" not in str(raised.value)


@pytest.mark.parametrize(
    ("text", "context", "complaint"),
    [
        ("clusters: [1, 2]\n", None, r"clusters\[0\] needs a name"),
        ("a: [\n", None, r"config:2: invalid YAML"),
        ("- 1\n", None, r"not a kubeconfig"),
        ("", None, r"no current-context; choose one with --context"),
        ("contexts: [{name: a, context: {cluster: a}}]\n", "b", r"no context 'b' \(contexts: a\)"),
        ("contexts: [{name: a, context: {cluster: a}}]\n", "a", r"cluster 'a' is not defined"),
    ],
)
def test_broken_kubeconfigs(tmp_path: Path, text: str, context: str | None, complaint: str) -> None:
    path = write(tmp_path / "config", text)
    with pytest.raises(KubeConfigError, match=complaint):
        load_kubeconfig([path], context, required=True)


def test_missing_files(tmp_path: Path) -> None:
    with pytest.raises(KubeConfigError, match=r"kubeconfig .*/nope: no such file"):
        find_access(tmp_path / "nope", None, {}, tmp_path)
    with pytest.raises(KubeConfigError, match=r"no kubeconfig: none of .*/a, .*/b exists"):
        find_access(None, None, {"KUBECONFIG": f"{tmp_path / 'a'}:{tmp_path / 'b'}"}, tmp_path)
    with pytest.raises(KubeConfigError, match=r"\.kube/config: no such file"):
        find_access(None, None, {}, tmp_path)


def test_pod_without_token_or_port_and_context_without_kubeconfig(tmp_path: Path) -> None:
    pod = {"KUBERNETES_SERVICE_HOST": "10.0.0.1", "KUBERNETES_SERVICE_PORT": "443"}
    with pytest.raises(KubeConfigError, match=r"no service account token at"):
        find_access(None, None, pod, tmp_path, tmp_path / "sa")
    with pytest.raises(KubeConfigError, match=r"_PORT must both be set"):
        in_cluster_access({"KUBERNETES_SERVICE_HOST": "10.0.0.1"}, tmp_path)
    with pytest.raises(KubeConfigError, match=r"--context: needs a kubeconfig"):
        find_access(None, "prod", pod, tmp_path, tmp_path)

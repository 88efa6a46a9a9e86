"""Where the cluster is and who we are to it: a kubeconfig context, or the pod's service account.

Read once at startup; a mistake here is the user's, so it is one line naming the file and the
entry (`KubeConfigError`, exit code 2), before anything listens. Which credentials apply, as
kubectl and client-go decide it: `--kubeconfig FILE` alone; else `$KUBECONFIG`, its files merged
(the first file to name an entry or a current-context wins); else the service account when the
process runs in a pod; else `~/.kube/config`. A context's namespace is not a default here: an
ingress controller watches every namespace unless `--namespace` says otherwise.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from proxy.control.sources.source import SourceError

SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
EXEC_API_VERSIONS = ("client.authentication.k8s.io/v1", "client.authentication.k8s.io/v1beta1")
INTERACTIVE_MODES = ("Never", "IfAvailable", "Always")

# A certificate or key: a file, or the PEM bytes a kubeconfig's `*-data` field holds.
Pem = Path | bytes


class KubeConfigError(SourceError):
    """The kubeconfig or service account cannot be used; one line naming the file and entry."""


@dataclass(frozen=True, slots=True)
class ExecConfig:
    """A credential plugin (`users[].user.exec`), run to get a token or a client certificate."""

    api_version: str
    command: str
    args: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    interactive_mode: str = "IfAvailable"
    provide_cluster_info: bool = False


@dataclass(frozen=True, slots=True)
class UserAuth:
    token: str | None = None
    token_file: Path | None = None  # re-read every minute and after a 401: tokens rotate
    client_cert: Pem | None = None
    client_key: Pem | None = None
    exec: ExecConfig | None = None


@dataclass(frozen=True, slots=True)
class ClusterAccess:
    server: str  # https://host:port, IPv6 hosts in brackets
    ca: Pem | None = None  # None: the system's trusted CAs
    insecure: bool = False  # insecure-skip-tls-verify
    tls_server_name: str | None = None  # the name to verify the certificate against
    user: UserAuth = field(default_factory=UserAuth)
    origin: str = ""  # how logs name it: `kubeconfig ~/.kube/config, context minikube`


def find_access(
    kubeconfig: Path | None,
    context: str | None,
    env: Mapping[str, str],
    home: Path,
    service_account: Path = SERVICE_ACCOUNT_DIR,
) -> ClusterAccess:
    """The cluster to talk to, chosen as kubectl and client-go choose it (module docstring)."""
    if kubeconfig is not None:
        return load_kubeconfig([kubeconfig], context, required=True)
    if env.get("KUBECONFIG"):
        paths = [Path(part) for part in env["KUBECONFIG"].split(os.pathsep) if part]
        return load_kubeconfig(list(dict.fromkeys(paths)), context)
    if env.get("KUBERNETES_SERVICE_HOST"):
        if context is not None:
            raise KubeConfigError("--context: needs a kubeconfig (--kubeconfig or $KUBECONFIG)")
        return in_cluster_access(env, service_account)
    return load_kubeconfig([home / ".kube" / "config"], context, required=True)


def in_cluster_access(env: Mapping[str, str], service_account: Path) -> ClusterAccess:
    """The API server as a pod sees it: the service's address in the environment, the token and
    CA the kubelet mounts."""
    host, port = env.get("KUBERNETES_SERVICE_HOST", ""), env.get("KUBERNETES_SERVICE_PORT", "")
    if not host or not port:
        raise KubeConfigError("in a pod: KUBERNETES_SERVICE_HOST and _PORT must both be set")
    token = service_account / "token"
    if not token.is_file():
        raise KubeConfigError(f"in a pod: no service account token at {token}")
    return ClusterAccess(
        server=f"https://[{host}]:{port}" if ":" in host else f"https://{host}:{port}",
        ca=service_account / "ca.crt",
        user=UserAuth(token_file=token),
        origin=f"service account in {service_account}",
    )


# --- kubeconfig --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Entry:
    """A named cluster, user or context, and the directory of the file that defined it: relative
    paths in it are relative to that file, whichever file the merge took it from."""

    fields: Mapping[str, Any]
    base: Path
    file: Path


def load_kubeconfig(
    paths: Sequence[Path], context: str | None, *, required: bool = False
) -> ClusterAccess:
    """Merge `paths` (missing ones skipped unless `required`) and read the chosen context."""
    merged: dict[str, dict[str, _Entry]] = {"clusters": {}, "users": {}, "contexts": {}}
    current: str | None = None
    read: list[Path] = []
    for path in paths:
        document = _read_document(path, required)
        if document is None:
            continue
        read.append(path)
        for section, key in (("clusters", "cluster"), ("users", "user"), ("contexts", "context")):
            for entry_name, fields in _named_entries(document, section, key, path):
                merged[section].setdefault(entry_name, _Entry(fields, path.parent, path))
        current = current or _optional_text(document, "current-context", path)
    if not read:
        raise KubeConfigError(f"no kubeconfig: none of {', '.join(map(str, paths))} exists")
    name = context or current
    where = ", ".join(map(str, read))
    if not name:
        raise KubeConfigError(f"kubeconfig {where}: no current-context; choose one with --context")
    chosen = merged["contexts"].get(name)
    if chosen is None:
        known = ", ".join(sorted(merged["contexts"])) or "none"
        raise KubeConfigError(f"kubeconfig {where}: no context {name!r} (contexts: {known})")
    ctx = _Reader(chosen, f"context {name!r}")
    cluster_name, user_name = ctx.required_text("cluster"), ctx.text("user")
    cluster = merged["clusters"].get(cluster_name)
    if cluster is None:
        raise ctx.error(f"cluster {cluster_name!r} is not defined")
    user = merged["users"].get(user_name) if user_name else None
    if user_name and user is None:
        raise ctx.error(f"user {user_name!r} is not defined")
    access = _cluster(_Reader(cluster, f"cluster {cluster_name!r}"))
    return ClusterAccess(
        server=access.server,
        ca=access.ca,
        insecure=access.insecure,
        tls_server_name=access.tls_server_name,
        user=_user(_Reader(user, f"user {user_name!r}")) if user else UserAuth(),
        origin=f"kubeconfig {where}, context {name}",
    )


def _read_document(path: Path, required: bool) -> Mapping[str, Any] | None:
    try:
        text = path.read_text()
    except FileNotFoundError:
        if required:
            raise KubeConfigError(f"kubeconfig {path}: no such file") from None
        return None
    except OSError as error:
        raise KubeConfigError(f"kubeconfig {path}: {error.strerror or error}") from None
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as error:
        line = getattr(getattr(error, "problem_mark", None), "line", None)
        at = f":{line + 1}" if line is not None else ""
        raise KubeConfigError(f"kubeconfig {path}{at}: invalid YAML") from None
    if document is None:
        return {}  # an empty file, as `touch ~/.kube/config` leaves it
    if not isinstance(document, Mapping):
        raise KubeConfigError(f"kubeconfig {path}: not a kubeconfig (a mapping is expected)")
    return document


def _named_entries(
    document: Mapping[str, Any], section: str, key: str, path: Path
) -> list[tuple[str, Mapping[str, Any]]]:
    entries = document.get(section) or []
    if not isinstance(entries, list):
        raise KubeConfigError(f"kubeconfig {path}: {section} is not a list")
    found = []
    for index, entry in enumerate(entries):
        name = entry.get("name") if isinstance(entry, Mapping) else None
        fields = entry.get(key) if isinstance(entry, Mapping) else None
        if not isinstance(name, str) or not name or not isinstance(fields, Mapping | None):
            raise KubeConfigError(f"kubeconfig {path}: {section}[{index}] needs a name and {key}")
        found.append((name, fields or {}))
    return found


def _optional_text(document: Mapping[str, Any], key: str, path: Path) -> str | None:
    value = document.get(key)
    if value is not None and not isinstance(value, str):
        raise KubeConfigError(f"kubeconfig {path}: {key} is not a string")
    return value or None


class _Reader:
    """One cluster, user or context entry, read with messages naming file and entry."""

    def __init__(self, entry: _Entry, what: str) -> None:
        self.entry = entry
        self.what = what

    def error(self, problem: str) -> KubeConfigError:
        return KubeConfigError(f"kubeconfig {self.entry.file}: {self.what}: {problem}")

    def text(self, key: str) -> str | None:
        value = self.entry.fields.get(key)
        if value is not None and not isinstance(value, str):
            raise self.error(f"{key} is not a string")
        return value or None

    def required_text(self, key: str) -> str:
        value = self.text(key)
        if value is None:
            raise self.error(f"{key} is missing")
        return value

    def flag(self, key: str) -> bool:
        value = self.entry.fields.get(key, False)
        if not isinstance(value, bool):
            raise self.error(f"{key} is not true or false")
        return value

    def path(self, key: str) -> Path | None:
        value = self.text(key)
        return None if value is None else self.entry.base / Path(value).expanduser()

    def pem(self, key: str) -> Pem | None:
        """`key` (a file) or `key-data` (base64 PEM); the data wins, as in client-go."""
        data = self.text(f"{key}-data")
        if data is None:
            return self.path(key)
        try:
            return base64.b64decode(data, validate=True)
        except binascii.Error:
            raise self.error(f"{key}-data is not base64") from None


def _cluster(cluster: _Reader) -> ClusterAccess:
    server = cluster.required_text("server")
    if not server.startswith("https://"):
        raise cluster.error(f"server {server!r}: only https:// API servers are supported")
    if cluster.text("proxy-url") is not None:
        raise cluster.error("proxy-url is not supported")
    return ClusterAccess(
        server=server.rstrip("/"),
        ca=cluster.pem("certificate-authority"),
        insecure=cluster.flag("insecure-skip-tls-verify"),
        tls_server_name=cluster.text("tls-server-name"),
    )


def _user(user: _Reader) -> UserAuth:
    fields = user.entry.fields
    if "auth-provider" in fields:
        provider = fields["auth-provider"]
        name = provider.get("name") if isinstance(provider, Mapping) else None
        raise user.error(
            f"auth-provider {name or ''!r} is not supported (removed from kubectl 1.26); "
            "use its exec credential plugin instead (gke-gcloud-auth-plugin, kubelogin, ...)"
        )
    if "username" in fields or "password" in fields:
        raise user.error("basic auth (username/password) is not supported")
    cert, key = user.pem("client-certificate"), user.pem("client-key")
    if (cert is None) != (key is None):
        raise user.error("client-certificate and client-key go together")
    exec_fields = fields.get("exec")
    if exec_fields is not None and not isinstance(exec_fields, Mapping):
        raise user.error("exec is not a mapping")
    entry = _Entry(exec_fields or {}, user.entry.base, user.entry.file)
    return UserAuth(
        token=user.text("token"),
        token_file=user.path("tokenFile"),
        client_cert=cert,
        client_key=key,
        exec=None if exec_fields is None else _exec(_Reader(entry, f"{user.what} exec")),
    )


def _exec(plugin: _Reader) -> ExecConfig:
    api_version = plugin.required_text("apiVersion")
    if api_version not in EXEC_API_VERSIONS:
        raise plugin.error(f"apiVersion {api_version!r} is not supported (v1 or v1beta1)")
    command = plugin.required_text("command")
    # client-go: a command with a path separator is relative to the kubeconfig; a bare name is
    # looked up on PATH.
    if os.sep in command and not os.path.isabs(command):
        command = str(plugin.entry.base / command)
    args = plugin.entry.fields.get("args") or []
    if not isinstance(args, list) or not all(isinstance(arg, str) for arg in args):
        raise plugin.error("args is not a list of strings")
    env = []
    for variable in plugin.entry.fields.get("env") or []:
        name = variable.get("name") if isinstance(variable, Mapping) else None
        value = variable.get("value") if isinstance(variable, Mapping) else None
        if not isinstance(name, str) or not isinstance(value, str):
            raise plugin.error("env entries need a name and a value")
        env.append((name, value))
    mode = plugin.text("interactiveMode") or "IfAvailable"
    if mode not in INTERACTIVE_MODES:
        raise plugin.error(f"interactiveMode {mode!r} is not Never, IfAvailable or Always")
    if mode == "Always":
        raise plugin.error("interactiveMode Always needs a terminal; a proxy has none")
    return ExecConfig(
        api_version=api_version,
        command=command,
        args=tuple(args),
        env=tuple(env),
        interactive_mode=mode,
        provide_cluster_info=plugin.flag("provideClusterInfo"),
    )

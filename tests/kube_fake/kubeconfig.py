"""Kubeconfig files for the fake API server, written as kubectl and minikube write them."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import yaml


def kubeconfig(
    server: str,
    user: dict[str, Any],
    *,
    cluster: dict[str, Any] | None = None,
    namespace: str | None = None,
    name: str = "fake",
) -> dict[str, Any]:
    """One cluster, user and context, all called `name`, and that context current."""
    context: dict[str, Any] = {"cluster": name, "user": name}
    if namespace:
        context["namespace"] = namespace
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": name, "cluster": {"server": server, **(cluster or {})}}],
        "users": [{"name": name, "user": user}],
        "contexts": [{"name": name, "context": context}],
        "current-context": name,
    }


def write(path: Path, config: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def data(file: Path) -> str:
    """A file as a kubeconfig `*-data` field holds it."""
    return base64.b64encode(file.read_bytes()).decode()

"""The --kubernetes flags, parsed into settings; misplaced or malformed ones: one line, exit 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from proxy.app.cli import parse_command
from proxy.app.settings import KubernetesSettings, RoutesCommand, ServeCommand


def test_kubernetes_flags_reach_the_settings() -> None:
    command = parse_command(
        [
            "serve",
            "--kubernetes",
            "--kubeconfig",
            "/k/config",
            "--context",
            "minikube",
            "--namespace",
            "shop",
            "--ingress-class",
            "edge",
            "--endpoints-api",
            "endpoints",
            "--publish-service",
            "ingress/sticky-proxy",
        ]
    )
    assert isinstance(command, ServeCommand)
    settings = command.settings
    assert settings.kubernetes == KubernetesSettings(
        kubeconfig=Path("/k/config"),
        context="minikube",
        namespace="shop",
        publish_service=("ingress", "sticky-proxy"),
    )
    assert (settings.ingress_class, settings.endpoints_api) == ("edge", "endpoints")
    assert settings.manifests == () and settings.backends == ()


def test_kubernetes_alone_uses_every_default() -> None:
    command = parse_command(["serve", "--kubernetes"])
    assert isinstance(command, ServeCommand)
    assert command.settings.kubernetes == KubernetesSettings()


def test_routes_from_the_cluster() -> None:
    command = parse_command(["routes", "--kubernetes", "--context", "kind", "--namespace", "a"])
    assert command == RoutesCommand(
        (), "sticky", "endpointslices", KubernetesSettings(context="kind", namespace="a")
    )


@pytest.mark.parametrize(
    ("argv", "line"),
    [
        (["serve", "--kubernetes", "--manifests", "x"], "--manifests: not allowed with"),
        (["serve", "--manifests", "x", "--context", "a"], "--context: only with --kubernetes"),
        (["serve", "--backend", "http://a", "--kubeconfig", "k"], "--kubeconfig: only with"),
        (["serve", "--kubernetes", "--affinity", "none"], "--affinity: only with --backend"),
        (["serve", "--kubernetes", "--namespace", "Shop"], "--namespace: 'Shop' is not a namesp"),
        (["serve", "--kubernetes", "--publish-service", "a/"], "--publish-service: '' is not"),
        (["routes", "--manifests", "x", "--namespace", "a"], "--namespace: only with --kubernet"),
        (["routes", "--kubernetes", "--publish-service", "a/b"], "unrecognized arguments"),
    ],
)
def test_misplaced_or_malformed_kubernetes_flags(
    argv: list[str], line: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        parse_command(argv)
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"sticky-proxy: error: {line}"), err
    assert err.count("\n") == 1

"""What each command does once the command line is parsed: `serve`, `routes` and `demo`.

Exit codes: 0; 1 when the environment refuses (a taken port, an unreachable cluster for `routes`,
invalid objects for `routes`); 2 for bad input found only now (manifests that do not load), as a
bad flag.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

import uvloop

from proxy.app.demo import run_demo
from proxy.app.settings import (
    Command,
    DemoCommand,
    KubernetesSettings,
    RoutesCommand,
    ServeCommand,
)
from proxy.control.sources.manifest_files import ManifestFileError
from proxy.control.sources.manifests import ManifestSource, load_snapshot
from proxy.control.sources.source import Source, SourceError
from proxy.control.sources.static import StaticSource, static_snapshot
from proxy.control.translate import ManifestError, TranslateOptions
from proxy.control.translate.describe import describe
from proxy.core.routing import Snapshot

if TYPE_CHECKING:  # imported when needed: a bad flag is reported without loading them
    from proxy.control.sources.kubernetes.config import ClusterAccess
    from proxy.observability.metrics import Metrics

PROG = "sticky-proxy"


def run(command: Command) -> int:
    """Runs `command` (serve and demo: until SIGINT/SIGTERM); the process exit code."""
    if isinstance(command, RoutesCommand):
        return show_routes(command)
    # Imported only now so a bad flag is reported without loading the data plane.
    from proxy.app import runtime  # noqa: PLC0415

    logging.basicConfig(
        level=command.settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        if isinstance(command, DemoCommand):
            return uvloop.run(run_demo(command.settings, command.replicas, runtime.serve))
        if command.settings.workers > 1:
            from proxy.app.workers import run_workers  # noqa: PLC0415

            return run_workers(command)
        # the Kubernetes source counts its watch restarts there too
        metrics = runtime.new_metrics(command.settings)
        uvloop.run(runtime.serve(command.settings, _source(command, metrics), metrics=metrics))
    except KeyboardInterrupt:  # Ctrl-C before the runtime took over SIGINT: a normal stop
        return 0
    except SourceError as error:  # manifests that do not load: a bad input, as a bad flag
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # the environment refused, e.g. the listen address is taken
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 1
    return 0


def _source(command: ServeCommand, metrics: Metrics) -> Source:
    settings = command.settings
    options = TranslateOptions(
        settings.ingress_class,
        settings.endpoints_api,
        settings.upstream,
        settings.gateway_controller,
        settings.session_key,
    )
    if settings.kubernetes is not None:
        from proxy.control.sources.kubernetes.source import KubernetesSource  # noqa: PLC0415

        kube = settings.kubernetes
        return KubernetesSource(
            _cluster_access(kube),
            options,
            metrics,
            namespace=kube.namespace,
            publish_service=kube.publish_service,
            tls=settings.tls_listen is not None,
        )
    if settings.manifests:
        return ManifestSource(settings.manifests, options)
    return StaticSource(static_snapshot(command.endpoints, settings.affinity, settings.upstream))


def show_routes(command: RoutesCommand, out: TextIO = sys.stdout) -> int:
    """`sticky-proxy routes`: the table on `out`, exit 0; invalid input: one line, exit 1."""
    options = TranslateOptions(
        command.ingress_class, command.endpoints_api, gateway_controller=command.gateway_controller
    )
    try:
        if command.kubernetes is not None:
            snapshot = _list_cluster(command.kubernetes, options)
        else:
            snapshot = load_snapshot(command.manifests, options)
    except (ManifestFileError, ManifestError, SourceError) as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 1
    print(describe(snapshot), file=out)
    return 0


def _cluster_access(kube: KubernetesSettings) -> ClusterAccess:
    """Which cluster and credentials; KubeConfigError (a SourceError) names what is wrong."""
    from proxy.control.sources.kubernetes.config import find_access  # noqa: PLC0415

    return find_access(kube.kubeconfig, kube.context, os.environ, Path.home())


def _list_cluster(kube: KubernetesSettings, options: TranslateOptions) -> Snapshot:
    """The cluster's routes from one list of each resource; SourceError when it cannot be had."""
    from proxy.control.sources.kubernetes.client import KubeError  # noqa: PLC0415
    from proxy.control.sources.kubernetes.exec_plugin import CredentialError  # noqa: PLC0415
    from proxy.control.sources.kubernetes.source import list_snapshot  # noqa: PLC0415

    access = _cluster_access(kube)
    try:
        return uvloop.run(list_snapshot(access, options, kube.namespace))
    except (KubeError, CredentialError) as error:
        raise SourceError(f"{access.server}: {error}") from None

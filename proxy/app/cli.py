"""The `sticky-proxy` command line (docs/behaviour.md, "Flags"): flags in, a command out.

Every bad flag or value ends the same way: one line on stderr naming the flag, exit code 2, before
anything starts listening. Manifests that do not load are the same kind of mistake: exit code 2
from `serve`, as `nginx -t`; `routes`, the tool for checking them, says so with exit code 1.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, NoReturn, TypeVar, get_args

from proxy.app.commands import PROG, run
from proxy.app.settings import (
    DEFAULT_TLS_LISTEN,
    Command,
    DemoCommand,
    KubernetesSettings,
    RoutesCommand,
    ServeCommand,
    ServeSettings,
)
from proxy.control.sources.static import static_backends
from proxy.control.translate.options import EndpointsApi
from proxy.core.access import DEFAULT_HEADER, DEFAULT_TRUSTED, RealIp, parse_ranges
from proxy.core.balancing import LoadBalance
from proxy.core.cookies import CookieSettings
from proxy.core.model import Affinity, AffinityMode, TlsCertificate, UpstreamPolicy
from proxy.core.values import (
    Address,
    format_bool,
    format_next_upstream,
    format_seconds,
    format_size,
    parse_bool,
    parse_cookie_domain,
    parse_cookie_name,
    parse_cookie_path,
    parse_count,
    parse_host_port,
    parse_namespace,
    parse_namespaced_name,
    parse_next_upstream,
    parse_object_name,
    parse_port,
    parse_positive,
    parse_seconds,
    parse_size,
    parse_timeout,
    parse_workers,
)
from proxy.dataplane.context import LIMIT_STATUS
from proxy.dataplane.tls_contexts import load_default_certificate
from proxy.system import build

T = TypeVar("T")

_DEFAULT = "(default: %(default)s)"
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # an HTTP field name (RFC 9110 §5.1)
# Every default comes from the settings dataclasses, shown in --help as the flags spell them.
SERVE = ServeSettings()
UPSTREAM = SERVE.upstream
AFFINITY = Affinity()


class _ArgumentParser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # One line, program then flag first: argparse would also dump the usage and prefix the
        # subcommand ("sticky-proxy serve: error: argument --x: ...").
        message = message.removeprefix("argument ").replace("with argument ", "with ")
        self.exit(2, f"{PROG}: error: {message}\n")


def _value(parse: Callable[[str], T]) -> Callable[[str], T]:
    """Adapts a `proxy.core.values` parser to argparse, which then names the flag in the message."""

    def convert(text: str) -> T:
        try:
            return parse(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    return convert


def _header_name(text: str) -> str:
    if not _TOKEN.fullmatch(text):
        raise ValueError(f"{text!r} is not a header name")
    return text


def _limit_status(text: str) -> int:
    """nginx's limit_req_status and limit_conn_status take 400 to 599."""
    if not text.isdigit() or not 400 <= int(text) <= 599:
        raise ValueError(f"{text!r} is not a status from 400 to 599")
    return int(text)


def _real_ip(args: argparse.Namespace) -> RealIp | None:
    if not args.use_forwarded_headers:
        return None
    # (argparse runs `type` on a default given as text, so both are parsed here)
    return RealIp(args.forwarded_for_header.lower().encode(), args.proxy_real_ip_cidr)


def _workers(text: str) -> int:
    return parse_workers(text, os.cpu_count() or 1)


def build_parser() -> argparse.ArgumentParser:
    parser = _ArgumentParser(
        prog=PROG,
        description="Cookie-based sticky sessions for Kubernetes workloads, as ingress-nginx.",
        allow_abbrev=False,  # abbreviations would break as soon as a longer flag is added
    )
    parser.add_argument(
        "--version",
        action="version",
        version=f"{PROG} {build.describe()}",
        help="the version, and whether the per-request code runs compiled (mypyc) or interpreted",
    )
    commands = parser.add_subparsers(dest="command", metavar="command")

    serve = commands.add_parser(
        "serve",
        help="run the proxy",
        description="Run the proxy on the routes of one source: --backend, --manifests or "
        "--kubernetes.",
        allow_abbrev=False,
    )
    _add_listen_flags(serve, "0.0.0.0")
    serve.add_argument(
        "--workers",
        type=_value(_workers),
        default=str(SERVE.workers),
        metavar="N|auto",
        help="proxy processes sharing the ports, auto = one per CPU " + _DEFAULT,
    )
    serve.add_argument(
        "--state-dir",
        type=Path,
        metavar="PATH",
        help="with --workers: the directory in which they share metrics and session counts, "
        "in files of their own removed at exit (default: $TMPDIR, /tmp or /var/tmp, whichever "
        "is writable, else /dev/shm)",
    )
    serve.add_argument(
        "--log-level",
        choices=("debug", "info", "warning", "error"),
        default=SERVE.log_level,
        help=_DEFAULT,
    )
    serve.add_argument(
        "--access-log",
        choices=("off", "json", "combined"),
        default=SERVE.access_log,
        help="one line per request " + _DEFAULT,
    )
    serve.add_argument(
        "--ingress-nginx-metrics",
        action="store_true",
        help="also export ingress-nginx's request and reload series (nginx_ingress_controller_*) "
        "for its dashboards and alerts",
    )
    sources = serve.add_mutually_exclusive_group()
    sources.add_argument(
        "--backend",
        dest="backends",
        action="extend",
        nargs="+",
        default=[],
        metavar="URL",
        help="http://host[:port] of an upstream; one cluster for every host and path",
    )
    _add_manifests_flag(sources)
    _add_kubernetes_flag(sources)
    selection = _add_selection_flags(serve)
    selection.add_argument(
        "--session-key-file",
        type=Path,
        metavar="PATH",
        help="the key that signs Gateway API session tokens whose lifetime the proxy enforces "
        "(sessionPersistence with absoluteTimeout); give every replica the same one, e.g. from "
        "a Secret (default: a random key per start, shared by --workers)",
    )
    serve.set_defaults(
        # Each source's own flags, for telling a user who gives them to the other source.
        manifests_only=_flags_of(selection),
        backend_only=_flags_of(_add_affinity_flags(serve)),
        kubernetes_only=_flags_of(_add_kubernetes_flags(serve, publish=True)),
    )
    _add_proxy_flags(serve)
    _add_tls_flags(serve)

    routes = commands.add_parser(
        "routes",
        help="print the routes Kubernetes objects make, and every ignored annotation",
        description="Print the routing table the objects resolve to (host, path, cluster, "
        "endpoints, affinity) and every ignored or invalid annotation; exit 1 on invalid input.",
        allow_abbrev=False,
    )
    objects = routes.add_mutually_exclusive_group(required=True)
    _add_manifests_flag(objects)
    _add_kubernetes_flag(objects)
    _add_selection_flags(routes)
    routes.set_defaults(kubernetes_only=_flags_of(_add_kubernetes_flags(routes, publish=False)))

    demo = commands.add_parser(
        "demo",
        help="start demo backends and the proxy in front of them",
        description="Start demo backends and the proxy; print the URL and a curl line to try.",
        allow_abbrev=False,
    )
    demo.add_argument(
        "--replicas",
        type=_value(parse_positive),
        default="3",
        help="demo backends to start " + _DEFAULT,
    )
    _add_listen_flags(demo, "127.0.0.1")
    _add_affinity_flags(demo)
    return parser


def _add_manifests_flag(parser: argparse._ActionsContainer) -> None:
    parser.add_argument(
        "--manifests",
        action="extend",
        nargs="+",
        type=Path,
        default=[],
        metavar="PATH",
        help="YAML/JSON files or directories of Kubernetes objects (Ingress, Service, "
        "EndpointSlice, Endpoints, IngressClass); re-read when they change",
    )


def _add_kubernetes_flag(parser: argparse._ActionsContainer) -> None:
    parser.add_argument(
        "--kubernetes",
        action="store_true",
        help="the cluster's Ingresses, Services and EndpointSlices, listed and watched from the "
        "API server (kubeconfig, or the pod's service account)",
    )


def _add_kubernetes_flags(
    parser: argparse.ArgumentParser, publish: bool
) -> argparse._ArgumentGroup:
    group = parser.add_argument_group("Kubernetes API", "with --kubernetes")
    group.add_argument(
        "--kubeconfig",
        type=Path,
        metavar="PATH",
        help="kubeconfig file (default: $KUBECONFIG, in a pod its service account, "
        "else ~/.kube/config)",
    )
    group.add_argument("--context", metavar="NAME", help="kubeconfig context (default: current)")
    group.add_argument(
        "--namespace",
        type=_value(parse_namespace),
        metavar="NS",
        help="watch this namespace only (default: every namespace)",
    )
    if publish:
        group.add_argument(
            "--publish-service",
            type=_value(parse_namespaced_name),
            metavar="NAMESPACE/NAME",
            help="write this Service's address into the status of the Ingresses served",
        )
    else:
        parser.set_defaults(publish_service=None)
    return group


def _flags_of(group: argparse._ArgumentGroup) -> tuple[str, ...]:
    return tuple(flag for action in group._group_actions for flag in action.option_strings)


def _add_selection_flags(parser: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    group = parser.add_argument_group("Kubernetes objects", "with --manifests or --kubernetes")
    group.add_argument(
        "--ingress-class",
        type=_value(parse_object_name),
        default=SERVE.ingress_class,
        metavar="NAME",
        help="serve Ingresses of this class, and those with no class " + _DEFAULT,
    )
    group.add_argument(
        "--endpoints-api",
        choices=get_args(EndpointsApi),
        default=SERVE.endpoints_api,
        help="where endpoints come from: EndpointSlices, or legacy Endpoints " + _DEFAULT,
    )
    group.add_argument(
        "--gateway-controller",
        default=SERVE.gateway_controller,
        metavar="NAME",
        help="serve Gateways whose GatewayClass has this spec.controllerName " + _DEFAULT,
    )
    return group


def _add_listen_flags(parser: argparse.ArgumentParser, host: str) -> None:
    parser.add_argument(
        "--listen",
        type=_value(parse_host_port),
        default=f"{host}:{SERVE.listen.port}",
        metavar="HOST:PORT",
        help="proxy address; port 0 picks a free one " + _DEFAULT,
    )
    parser.add_argument(
        "--metrics-listen",
        type=_value(parse_host_port),
        default=f"{host}:{SERVE.metrics_listen.port if SERVE.metrics_listen else 0}",
        metavar="HOST:PORT",
        help="/metrics, /healthz and /readyz " + _DEFAULT,
    )


def _add_tls_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "TLS",
        "HTTPS on its own listener, for --tls-cert and for Ingress spec.tls with "
        "Secrets holding tls.crt and tls.key (chosen by SNI). With --manifests or --kubernetes, a "
        "--tls-listen given or a --tls-cert binds it at start; without either, "
        f"{DEFAULT_TLS_LISTEN} is bound only once the first Ingress certificate loads (if that "
        "port is taken then: one error line, and plain HTTP goes on). With --backend: bound at "
        "start with --tls-cert, else no TLS.",
    )
    group.add_argument(
        "--tls-listen",
        type=_value(_host_port_or_off),
        metavar="HOST:PORT|off",
        help=f"(default: {DEFAULT_TLS_LISTEN}, bound as said above)",
    )
    group.add_argument("--tls-cert", metavar="PATH", help="default certificate chain (PEM)")
    group.add_argument("--tls-key", metavar="PATH", help="its private key (PEM)")
    group.add_argument(
        "--https-port",
        type=_value(lambda text: parse_port(text, allow_zero=False)),
        default=str(SERVE.https_port),
        metavar="PORT",
        help="where ssl-redirect sends plain-HTTP clients " + _DEFAULT,
    )


def _host_port_or_off(text: str) -> Address | Literal["off"]:
    return "off" if text == "off" else parse_host_port(text)


@dataclass(frozen=True, slots=True)
class _Tls:
    listen: Address | None
    on_demand: bool  # bind `listen` only once a certificate loads
    default: TlsCertificate | None


def _tls_settings(parser: argparse.ArgumentParser, args: argparse.Namespace) -> _Tls:
    """The TLS listener and default certificate. With --backend alone, no listener unless a
    certificate is given (there is nowhere else certificates could come from); with manifests
    or the API and neither --tls-listen nor --tls-cert, the default port waits for a first
    Ingress certificate, so that a port nobody asked for is not taken from another program."""
    if (args.tls_cert is None) != (args.tls_key is None):
        parser.error("--tls-cert and --tls-key go together")
    default = None
    if args.tls_cert is not None:
        try:
            default = load_default_certificate(args.tls_cert, args.tls_key)
        except ValueError as error:
            parser.error(f"--tls-cert: {error}")
    if args.tls_listen == "off" or (default is None and args.backends):
        return _Tls(None, False, None)
    if args.tls_listen is not None:
        return _Tls(args.tls_listen, False, default)
    return _Tls(DEFAULT_TLS_LISTEN, default is None, default)


def _add_affinity_flags(parser: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    group = parser.add_argument_group(
        "affinity",
        "named after the ingress-nginx annotations, with the same defaults; with --manifests "
        "or --kubernetes the annotations of each Ingress say this",
    )
    group.add_argument("--affinity", choices=("cookie", "none"), default="cookie", help=_DEFAULT)
    group.add_argument(
        "--affinity-mode",
        choices=[mode.value for mode in AffinityMode],
        default=AFFINITY.mode.value,
        help="balanced: consistent hashing; persistent: sessions never move " + _DEFAULT,
    )
    group.add_argument(
        "--session-cookie-name",
        type=_value(parse_cookie_name),
        default=AFFINITY.cookie.name,
        metavar="NAME",
        help=_DEFAULT,
    )
    group.add_argument(
        "--session-cookie-path",
        type=_value(parse_cookie_path),
        metavar="PATH",
        help="cookie Path (default: the route path, /)",
    )
    group.add_argument(
        "--session-cookie-domain",
        type=_value(parse_cookie_domain),
        metavar="DOMAIN",
        help="cookie Domain (default: none)",
    )
    group.add_argument(
        "--session-cookie-samesite",
        choices=("None", "Lax", "Strict"),
        help="cookie SameSite (default: none)",
    )
    group.add_argument(
        "--session-cookie-conditional-samesite-none",
        action="store_true",
        help="drop SameSite=None for user agents that mishandle it",
    )
    group.add_argument(
        "--session-cookie-secure",
        type=_value(parse_bool),
        default=format_bool(AFFINITY.cookie.secure),
        metavar="true|false",
        help="cookie Secure attribute " + _DEFAULT,
    )
    group.add_argument(
        "--session-cookie-max-age",
        type=_value(parse_count),
        metavar="S",
        help="cookie Max-Age in seconds (default: a session cookie)",
    )
    group.add_argument(
        "--session-cookie-expires",
        type=_value(parse_count),
        metavar="S",
        help="cookie Expires, seconds from now (default: a session cookie)",
    )
    group.add_argument(
        "--session-cookie-change-on-failure",
        type=_value(parse_bool),
        default=format_bool(AFFINITY.cookie.change_on_failure),
        metavar="true|false",
        help="on a failed try, move the session instead of retrying its endpoint " + _DEFAULT,
    )
    return group


def _add_proxy_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "proxy defaults", "as the proxy-* annotations; timeouts in seconds"
    )
    timeouts = (UPSTREAM.connect_timeout, UPSTREAM.read_timeout, UPSTREAM.send_timeout)
    for name, seconds in zip(("connect", "read", "send"), timeouts, strict=True):
        group.add_argument(
            f"--proxy-{name}-timeout",
            type=_value(parse_timeout),
            default=format_seconds(seconds),
            metavar="S",
            help=_DEFAULT,
        )
    group.add_argument(
        "--proxy-body-size",
        type=_value(parse_size),
        default=format_size(UPSTREAM.body_size),
        metavar="SIZE",
        help="largest request body (bytes, or k/m/g; 0 = unlimited) " + _DEFAULT,
    )
    group.add_argument(
        "--proxy-next-upstream",
        type=_value(parse_next_upstream),
        default=format_next_upstream(UPSTREAM.next_upstream),
        metavar="CONDITIONS",
        help="when to try another endpoint (nginx proxy_next_upstream tokens, or off) " + _DEFAULT,
    )
    group.add_argument(
        "--proxy-next-upstream-tries",
        type=_value(parse_count),
        default=str(UPSTREAM.next_upstream_tries),
        metavar="N",
        help="tries per request, 0 = unlimited " + _DEFAULT,
    )
    group.add_argument(
        "--proxy-next-upstream-timeout",
        type=_value(parse_count),
        default=f"{UPSTREAM.next_upstream_timeout:g}",
        metavar="SECONDS",
        help="no retry once this long has passed since the first try, 0 = unlimited " + _DEFAULT,
    )
    group.add_argument(
        "--eject-after-failures",
        type=_value(parse_count),
        default=str(UPSTREAM.eject_after_failures),
        metavar="N",
        help="eject an endpoint after N connect errors or timeouts in a row, beyond "
        "ingress-nginx (0 = never; annotation sticky-proxy.io/eject-after-failures) " + _DEFAULT,
    )
    group.add_argument(
        "--eject-seconds",
        type=_value(parse_timeout),
        default=format_seconds(UPSTREAM.eject_seconds),
        metavar="S",
        help="first back-off of an ejected endpoint, doubled on each re-ejection up to 10x "
        + _DEFAULT,
    )
    group.add_argument(
        "--client-header-timeout",
        type=_value(parse_timeout),
        default=format_seconds(SERVE.client_header_timeout),
        metavar="S",
        help="time allowed for a whole request head " + _DEFAULT,
    )
    group.add_argument(
        "--client-body-timeout",
        type=_value(parse_timeout),
        default=format_seconds(SERVE.client_body_timeout),
        metavar="S",
        help="longest pause between two reads of a request body, as nginx's " + _DEFAULT,
    )
    group.add_argument(
        "--enable-underscores-in-headers",
        action="store_true",
        help="forward request headers whose names contain underscores (dropped by default, as "
        "ingress-nginx does)",
    )
    group.add_argument(
        "--use-forwarded-headers",
        action="store_true",
        help="take the client's address from --forwarded-for-header when the connection comes "
        "from --proxy-real-ip-cidr (off by default: the peer's address, as ingress-nginx)",
    )
    group.add_argument(
        "--proxy-real-ip-cidr",
        type=_value(parse_ranges),
        default=DEFAULT_TRUSTED,
        metavar="CIDR[,CIDR]",
        help="the proxies trusted to name the client, with --use-forwarded-headers " + _DEFAULT,
    )
    group.add_argument(
        "--forwarded-for-header",
        type=_value(_header_name),
        default=DEFAULT_HEADER,
        metavar="NAME",
        help="the header they name it in, with --use-forwarded-headers " + _DEFAULT,
    )
    limits = (("req", "over limit-rps or limit-rpm"), ("conn", "over limit-connections"))
    for kind, refused in limits:
        group.add_argument(
            f"--limit-{kind}-status-code",
            type=_value(_limit_status),
            default=str(LIMIT_STATUS),
            metavar="CODE",
            help=f"the status of requests {refused}, 400 to 599 " + _DEFAULT,
        )
    group.add_argument(
        "--max-connections",
        type=_value(parse_positive),
        default=str(SERVE.max_connections),
        metavar="N",
        help="client connections at once; beyond, a 503 and a close " + _DEFAULT,
    )
    group.add_argument(
        "--shutdown-grace",
        type=_value(parse_seconds),
        default=format_seconds(SERVE.shutdown_grace),
        metavar="S",
        help="time in-flight requests get to finish after SIGTERM " + _DEFAULT,
    )
    group.add_argument(
        "--load-balance",
        choices=[algorithm.value for algorithm in LoadBalance],
        default=SERVE.load_balance.value,
        help="how clusters without affinity or upstream-hash-by pick endpoints, where no"
        " load-balance annotation says (ingress-nginx's ConfigMap load-balance) " + _DEFAULT,
    )


def parse_command(argv: Sequence[str] | None = None) -> Command:
    """The command `argv` asks for; a usage error exits with status 2 and one stderr line."""
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.error("a command is needed: serve, routes or demo (see --help)")
    if args.command == "routes":
        return RoutesCommand(
            tuple(args.manifests),
            args.ingress_class,
            args.endpoints_api,
            _kubernetes(parser, argv, args),
            args.gateway_controller,
        )
    affinity = _affinity(args)
    if args.command == "demo":
        settings = ServeSettings(
            listen=args.listen,
            metrics_listen=args.metrics_listen,
            log_level="warning",  # the demo prints its own summary; info logs would repeat it
            affinity=affinity,
        )
        return DemoCommand(settings, args.replicas)
    if not args.backends and not args.manifests and not args.kubernetes:
        parser.error(
            "serve needs a source: --backend URL [URL ...], --manifests PATH [PATH ...] "
            "or --kubernetes"
        )
    _refuse_flags_of_the_other_source(parser, argv, args)
    kubernetes = _kubernetes(parser, argv, args)
    try:
        endpoints = static_backends(args.backends)
    except ValueError as error:
        parser.error(f"--backend: {error}")
    tls = _tls_settings(parser, args)
    if args.state_dir is not None and not _writable_directory(args.state_dir):
        parser.error(f"--state-dir: {args.state_dir}: not a writable directory")
    session_key = b""
    if args.session_key_file is not None:
        try:
            session_key = _session_key(args.session_key_file)
        except (OSError, ValueError) as error:
            parser.error(f"--session-key-file: {error}")
    settings = ServeSettings(
        listen=args.listen,
        metrics_listen=args.metrics_listen,
        tls_listen=tls.listen,
        tls_on_demand=tls.on_demand,
        tls_default=tls.default,
        https_port=args.https_port,
        workers=args.workers,
        state_dir=args.state_dir,
        log_level=args.log_level,
        access_log=args.access_log,
        ingress_nginx_metrics=args.ingress_nginx_metrics,
        client_header_timeout=args.client_header_timeout,
        client_body_timeout=args.client_body_timeout,
        max_connections=args.max_connections,
        underscores_in_headers=args.enable_underscores_in_headers,
        real_ip=_real_ip(args),
        limit_req_status=args.limit_req_status_code,
        limit_conn_status=args.limit_conn_status_code,
        load_balance=LoadBalance(args.load_balance),
        shutdown_grace=args.shutdown_grace,
        upstream=UpstreamPolicy(
            connect_timeout=args.proxy_connect_timeout,
            read_timeout=args.proxy_read_timeout,
            send_timeout=args.proxy_send_timeout,
            body_size=args.proxy_body_size,
            next_upstream=args.proxy_next_upstream,
            next_upstream_tries=args.proxy_next_upstream_tries,
            next_upstream_timeout=args.proxy_next_upstream_timeout,
            eject_after_failures=args.eject_after_failures,
            eject_seconds=args.eject_seconds,
        ),
        backends=tuple(args.backends),
        affinity=affinity,
        manifests=tuple(args.manifests),
        ingress_class=args.ingress_class,
        endpoints_api=args.endpoints_api,
        gateway_controller=args.gateway_controller,
        session_key=session_key,
        kubernetes=kubernetes,
    )
    return ServeCommand(settings, endpoints)


MIN_SESSION_KEY = 16  # bytes: shorter keys make forged session tokens guessable


def _session_key(path: Path) -> bytes:
    """The key in `path`, surrounding whitespace dropped (a Secret mounted as a file, or
    `openssl rand -hex 32 > key`)."""
    key = path.read_bytes().strip()
    if len(key) < MIN_SESSION_KEY:
        raise ValueError(f"{path}: a key needs at least {MIN_SESSION_KEY} bytes")
    return key


def _writable_directory(path: Path) -> bool:
    return path.is_dir() and os.access(path, os.W_OK | os.X_OK)  # EROFS counts as not writable


def _refuse_flags_of_the_other_source(
    parser: argparse.ArgumentParser, argv: Sequence[str], args: argparse.Namespace
) -> None:
    """Affinity flags configure the --backend cluster; Ingress annotations do that for manifests.
    A flag that would be silently ignored is a mistake worth one line."""
    given = _given(argv)
    if args.manifests or args.kubernetes:
        misplaced, source, instead = args.backend_only, "--backend", ": use Ingress annotations"
    else:
        misplaced, source, instead = args.manifests_only, "--manifests or --kubernetes", ""
    for flag in misplaced:
        if flag in given:
            parser.error(f"{flag}: only with {source}{instead}")


def _given(argv: Sequence[str]) -> set[str]:
    return {arg.partition("=")[0] for arg in argv if arg.startswith("--")}


def _kubernetes(
    parser: argparse.ArgumentParser, argv: Sequence[str], args: argparse.Namespace
) -> KubernetesSettings | None:
    if not args.kubernetes:
        for flag in args.kubernetes_only:
            if flag in _given(argv):
                parser.error(f"{flag}: only with --kubernetes")
        return None
    return KubernetesSettings(
        kubeconfig=args.kubeconfig,
        context=args.context,
        namespace=args.namespace,
        publish_service=args.publish_service,
    )


def _affinity(args: argparse.Namespace) -> Affinity | None:
    if args.affinity == "none":
        return None  # as ingress-nginx: the session-cookie-* values are then ignored
    cookie = CookieSettings(
        name=args.session_cookie_name,
        path=args.session_cookie_path,
        domain=args.session_cookie_domain,
        samesite=args.session_cookie_samesite,
        conditional_samesite_none=args.session_cookie_conditional_samesite_none,
        secure=args.session_cookie_secure,
        max_age=args.session_cookie_max_age,
        expires=args.session_cookie_expires,
        change_on_failure=args.session_cookie_change_on_failure,
    )
    return Affinity(mode=AffinityMode(args.affinity_mode), cookie=cookie)


def main(argv: list[str] | None = None) -> None:
    """The `sticky-proxy` entry point."""
    exit_code = run(parse_command(argv))
    if exit_code:
        sys.exit(exit_code)

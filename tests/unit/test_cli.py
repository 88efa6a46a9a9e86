"""Flags to settings, in process: defaults, every flag's destination, usage errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from proxy.app.cli import parse_command
from proxy.app.settings import DemoCommand, RoutesCommand, ServeCommand, ServeSettings
from proxy.core.access import RealIp, parse_ranges
from proxy.core.cookies import CookieSettings
from proxy.core.model import Affinity, AffinityMode, Endpoint, UpstreamPolicy
from proxy.core.values import Address
from tests.certs import self_signed


def serve(*flags: str) -> ServeCommand:
    command = parse_command(["serve", "--backend", "http://127.0.0.1:8001", *flags])
    assert isinstance(command, ServeCommand)
    return command


def test_serve_defaults_are_the_settings_and_annotation_defaults() -> None:
    command = serve()
    assert command.settings == ServeSettings(backends=("http://127.0.0.1:8001",))
    assert command.settings.upstream == UpstreamPolicy()
    assert command.settings.affinity == Affinity()
    assert command.endpoints == (Endpoint("127.0.0.1", 8001),)


def test_every_serve_flag_reaches_the_settings() -> None:
    settings = serve(
        *("--listen", "[::1]:9000", "--metrics-listen", "127.0.0.1:0", "--workers", "1"),
        *("--log-level", "debug", "--access-log", "json", "--ingress-nginx-metrics"),
        *("--affinity-mode", "persistent", "--session-cookie-name", "route"),
        *("--session-cookie-path", "/app", "--session-cookie-domain", ".example.com"),
        *("--session-cookie-samesite", "None", "--session-cookie-conditional-samesite-none"),
        *("--session-cookie-secure", "true", "--session-cookie-max-age", "3600"),
        *("--session-cookie-expires", "7200", "--session-cookie-change-on-failure", "true"),
        *("--proxy-connect-timeout", "1.5", "--proxy-read-timeout", "10"),
        *("--proxy-send-timeout", "20", "--proxy-body-size", "8k"),
        *("--proxy-next-upstream", "error http_503", "--proxy-next-upstream-tries", "0"),
        *("--proxy-next-upstream-timeout", "4"),
        *("--client-header-timeout", "7", "--shutdown-grace", "0"),
        *("--client-body-timeout", "9", "--max-connections", "100"),
    ).settings
    assert settings == ServeSettings(
        listen=Address("::1", 9000),
        metrics_listen=Address("127.0.0.1", 0),
        workers=1,
        log_level="debug",
        access_log="json",
        ingress_nginx_metrics=True,
        client_header_timeout=7.0,
        client_body_timeout=9.0,
        max_connections=100,
        shutdown_grace=0.0,
        upstream=UpstreamPolicy(
            connect_timeout=1.5,
            read_timeout=10.0,
            send_timeout=20.0,
            body_size=8192,
            next_upstream=frozenset({"error", "http_503"}),
            next_upstream_tries=0,
            next_upstream_timeout=4.0,
        ),
        backends=("http://127.0.0.1:8001",),
        affinity=Affinity(
            AffinityMode.PERSISTENT,
            CookieSettings(
                name="route",
                path="/app",
                domain=".example.com",
                samesite="None",
                conditional_samesite_none=True,
                secure=True,
                max_age=3600,
                expires=7200,
                change_on_failure=True,
            ),
        ),
    )


def test_forwarded_headers_flags_make_the_real_ip_settings() -> None:
    assert serve("--proxy-real-ip-cidr", "10.0.0.0/8").settings.real_ip is None  # needs the switch
    assert serve("--use-forwarded-headers").settings.real_ip == RealIp(
        b"x-forwarded-for", parse_ranges("0.0.0.0/0")
    )
    settings = serve(
        *("--use-forwarded-headers", "--forwarded-for-header", "CF-Connecting-IP"),
        *("--proxy-real-ip-cidr", "10.0.0.0/8, 2001:db8::/32"),
    ).settings
    assert settings.real_ip == RealIp(b"cf-connecting-ip", parse_ranges("10.0.0.0/8,2001:db8::/32"))


def test_limit_status_code_flags_default_to_503_as_ingress_nginx() -> None:
    settings = serve().settings
    assert (settings.limit_req_status, settings.limit_conn_status) == (503, 503)
    settings = serve("--limit-req-status-code", "429", "--limit-conn-status-code", "599").settings
    assert (settings.limit_req_status, settings.limit_conn_status) == (429, 599)


def test_affinity_none_means_no_affinity_whatever_the_cookie_flags() -> None:
    assert serve("--affinity", "none", "--session-cookie-name", "x").settings.affinity is None


def test_backends_repeat_and_take_several_urls() -> None:
    command = serve("--backend", "http://a:1", "http://b:2", "--backend", "http://c")
    assert [str(e.port) for e in command.endpoints] == ["8001", "1", "2", "80"]
    assert len(command.settings.backends) == 4


def test_manifests_are_a_source_with_their_selection_flags() -> None:
    command = parse_command(
        [
            *("serve", "--manifests", "a.yaml", "dir", "--manifests", "b.yml"),
            *("--ingress-class", "nginx", "--endpoints-api", "endpoints"),
            *("--proxy-read-timeout", "5"),
        ]
    )
    assert isinstance(command, ServeCommand)
    assert command.endpoints == ()
    settings = command.settings
    assert settings.manifests == (Path("a.yaml"), Path("dir"), Path("b.yml"))
    assert (settings.ingress_class, settings.endpoints_api) == ("nginx", "endpoints")
    assert settings.upstream == UpstreamPolicy(read_timeout=5.0)  # the default of every route


def test_manifests_selection_defaults() -> None:
    command = parse_command(["serve", "--manifests", "k8s"])
    assert isinstance(command, ServeCommand)
    assert (command.settings.ingress_class, command.settings.endpoints_api) == (
        "sticky",
        "endpointslices",
    )


ANY_8443 = Address("0.0.0.0", 8443)


@pytest.mark.parametrize(
    ("flags", "tls_listen", "on_demand"),
    [
        # No certificate yet: the default port is bound only once an Ingress's Secret loads.
        (("--manifests", "k8s"), ANY_8443, True),
        (("--kubernetes",), ANY_8443, True),
        # Asked for on the command line, or a certificate to serve: bound at start.
        (("--manifests", "k8s", "--tls-listen", "0.0.0.0:8443"), ANY_8443, False),
        (("--kubernetes", "--tls-listen", "127.0.0.1:9443"), Address("127.0.0.1", 9443), False),
        (("--manifests", "k8s", "CERT"), ANY_8443, False),
        (("--backend", "http://127.0.0.1:8001", "CERT"), ANY_8443, False),
        # Nothing to serve, ever, or TLS turned off: no listener.
        (("--backend", "http://127.0.0.1:8001"), None, False),
        (("--manifests", "k8s", "--tls-listen", "off"), None, False),
    ],
)
def test_the_tls_port_is_bound_at_start_only_when_asked_for_or_with_a_certificate(
    flags: tuple[str, ...], tls_listen: Address | None, on_demand: bool, tmp_path: Path
) -> None:
    chain, key = self_signed("default.test")
    (tmp_path / "tls.crt").write_bytes(chain)
    (tmp_path / "tls.key").write_bytes(key)
    certificate = ("--tls-cert", str(tmp_path / "tls.crt"), "--tls-key", str(tmp_path / "tls.key"))
    argv = [arg for flag in flags for arg in (certificate if flag == "CERT" else (flag,))]
    command = parse_command(["serve", *argv])
    assert isinstance(command, ServeCommand)
    assert command.settings.tls_listen == tls_listen
    assert command.settings.tls_on_demand is on_demand


def test_routes_takes_manifests_and_the_selection_flags() -> None:
    assert parse_command(["routes", "--manifests", "a", "b"]) == RoutesCommand(
        (Path("a"), Path("b")), "sticky", "endpointslices"
    )
    assert parse_command(
        ["routes", "--manifests", "a", "--ingress-class", "x", "--endpoints-api", "endpoints"]
    ) == RoutesCommand((Path("a"),), "x", "endpoints")


def test_gateway_flags_reach_the_settings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key = tmp_path / "key"
    key.write_text("0123456789abcdef0123\n")
    command = parse_command(
        ["serve", "--manifests", "k8s", "--gateway-controller", "example.com/gw",
         "--session-key-file", str(key)]
    )  # fmt: skip
    assert isinstance(command, ServeCommand)
    assert command.settings.gateway_controller == "example.com/gw"
    assert command.settings.session_key == b"0123456789abcdef0123"
    plain = parse_command(["serve", "--manifests", "k8s"])
    assert isinstance(plain, ServeCommand) and plain.settings.session_key == b""  # random
    routes = parse_command(["routes", "--manifests", "a", "--gateway-controller", "x/y"])
    assert isinstance(routes, RoutesCommand) and routes.gateway_controller == "x/y"
    key.write_text("short")
    with pytest.raises(SystemExit):
        parse_command(["serve", "--manifests", "k8s", "--session-key-file", str(key)])
    error = capsys.readouterr().err
    assert error.startswith("sticky-proxy: error: --session-key-file: ")
    assert "a key needs at least 16 bytes" in error


def test_state_dir_reaches_the_settings(tmp_path: Path) -> None:
    assert serve("--workers", "2", "--state-dir", str(tmp_path)).settings.state_dir == tmp_path
    assert serve("--workers", "2").settings.state_dir is None


def test_workers_auto_is_one_per_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("os.cpu_count", lambda: 1)
    assert serve("--workers", "auto").settings.workers == 1


def test_demo_defaults_listen_on_loopback() -> None:
    command = parse_command(["demo"])
    assert command == DemoCommand(
        ServeSettings(
            listen=Address("127.0.0.1", 8080),
            metrics_listen=Address("127.0.0.1", 10254),
            log_level="warning",
        ),
        replicas=3,
    )


def test_demo_takes_replicas_listen_and_affinity_flags() -> None:
    command = parse_command(
        ["demo", "--replicas", "5", "--listen", "0.0.0.0:9000", "--affinity-mode", "persistent"]
    )
    assert isinstance(command, DemoCommand)
    assert command.replicas == 5
    assert command.settings.listen == Address("0.0.0.0", 9000)
    assert command.settings.affinity == Affinity(AffinityMode.PERSISTENT)


@pytest.mark.parametrize(
    ("argv", "line"),
    [
        (["serve", "--backend", "http://a", "--workers", "0"], "--workers: '0' is not a worker"),
        (["serve"], "serve needs a source: --backend URL"),
        (["serve", "--backend", "http://a/x"], "--backend: 'http://a/x': a path"),
        (
            ["serve", "--backend", "http://a", "--proxy-body-size", "12x"],
            "--proxy-body-size: '12x'",
        ),
        (["demo", "--proxy-body-size", "1m"], "unrecognized arguments: --proxy-body-size"),
        (["demo", "--replicas", "0"], "--replicas: '0' is not a whole number above 0"),
        (["serve", "--back", "http://a"], "unrecognized arguments: --back"),
        ([], "a command is needed: serve, routes or demo"),
        (["routes"], "one of the arguments --manifests --kubernetes is required"),
        (["serve", "--manifests", "a", "--backend", "http://a"], "--backend: not allowed with"),
        (["serve", "--manifests", "a", "--affinity-mode", "persistent"], "--affinity-mode: only"),
        (["serve", "--manifests", "a", "--session-cookie-name=k"], "--session-cookie-name: only"),
        (["serve", "--backend", "http://a", "--ingress-class", "x"], "--ingress-class: only with"),
        (["serve", "--backend", "http://a", "--endpoints-api", "endpoints"], "--endpoints-api: "),
        (["serve", "--manifests", "a", "--ingress-class", "Nginx"], "--ingress-class: 'Nginx'"),
        (["serve", "--manifests", "a", "--endpoints-api", "pods"], "--endpoints-api: invalid"),
        (["routes", "--manifests", "a", "--listen", "0.0.0.0:1"], "unrecognized arguments"),
        (["serve", "--manifests", "a", "--proxy-real-ip-cidr", "10/8"], "--proxy-real-ip-cidr"),
        (["serve", "--manifests", "a", "--forwarded-for-header", "X:Y"], "--forwarded-for-header"),
        (["serve", "--limit-req-status-code", "200"], "--limit-req-status-code: '200' is not"),
        (["serve", "--limit-conn-status-code", "x"], "--limit-conn-status-code: 'x' is not"),
    ],
)
def test_usage_errors_are_one_line_and_exit_2(
    argv: list[str], line: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("os.cpu_count", lambda: 4)
    with pytest.raises(SystemExit) as exited:
        parse_command(argv)
    assert exited.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith(f"sticky-proxy: error: {line}")
    assert captured.err.count("\n") == 1

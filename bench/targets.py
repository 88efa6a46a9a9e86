"""Starting what is measured: the fixed-response backends, and the sticky proxies in front of them
(sticky-proxy interpreted and compiled, nginx, HAProxy), each pinned and optionally capped."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bench import configs
from bench.builds import COMPILED, INTERPRETED, Tree, running_build
from bench.check import first_reply
from bench.cpucap import CpuCap
from bench.procs import (
    BenchError,
    Child,
    Children,
    free_port,
    pinned,
    process_tree,
    wait_listening,
)

DIRECT, NGINX, HAPROXY = "direct", "nginx", "haproxy"
# The interpreted build keeps the name it had before the compiled one existed, so its rows read
# the same as in earlier results.
STICKY_PROXY, STICKY_PROXY_COMPILED = "sticky-proxy", "sticky-proxy-compiled"
STICKY_PROXY_BUILDS = {STICKY_PROXY: INTERPRETED, STICKY_PROXY_COMPILED: COMPILED}
PROXIES = (*STICKY_PROXY_BUILDS, NGINX, HAPROXY)


@dataclass
class Target:
    """Something wrk is pointed at: a backend port directly, or a proxy."""

    name: str
    port: int
    child: Child
    version: str
    capped: bool = False
    cookie: str | None = None  # its affinity cookie, learnt from its Set-Cookie
    base_rss_kb: int = 0

    @property
    def is_proxy(self) -> bool:
        return self.name != DIRECT

    def pids(self) -> list[int]:
        return process_tree(self.child.pid)


@dataclass
class Backends:
    kind: str  # nginx | builtin
    ports: list[int]
    uuids: list[str]
    child: Child
    version: str
    urls: list[str] = field(init=False)

    def __post_init__(self) -> None:
        self.urls = [f"http://127.0.0.1:{port}" for port in self.ports]


def tool_version(argv: Sequence[str]) -> str:
    """First line a `-v` style command prints (nginx prints to stderr)."""
    try:
        done = subprocess.run(list(argv), capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    lines = (done.stdout + done.stderr).strip().splitlines()
    return lines[0].strip() if lines else "unknown"


def choose_backend_kind(kind: str) -> str:
    """auto | nginx | builtin → nginx or builtin; BenchError when nginx is asked for and missing."""
    has_nginx = shutil.which("nginx") is not None
    if kind == "nginx" and not has_nginx:
        raise BenchError(
            "--backend-server nginx: nginx is not installed (apt-get install -y nginx-light)"
        )
    return "nginx" if kind in ("auto", "nginx") and has_nginx else "builtin"


def start_backends(
    children: Children, *, kind: str, count: int, tmp: Path, cpus: str | None, repo: Path
) -> Backends:
    ports = [free_port() for _ in range(count)]
    if kind == "nginx":
        uuids = [str(uuid.uuid4()) for _ in ports]
        static = tmp / "static"
        static.mkdir(exist_ok=True)
        (static / configs.ONE_MB_PATH.lstrip("/")).write_bytes(b"x" * configs.ONE_MB)
        bodies = [json.dumps({"uuid": u}) for u in uuids]
        conf = tmp / "backend-nginx.conf"
        conf.write_text(configs.nginx_backend_conf(tmp, ports, bodies, static))
        child = children.start("backend-nginx", pinned(cpus, _nginx_argv(conf, tmp)))
        version = tool_version(["nginx", "-v"])
    else:
        argv = [sys.executable, "-m", "bench.responder", *map(str, ports)]
        child = children.start("backend-builtin", pinned(cpus, argv), cwd=repo)
        version = f"bench.responder on Python {sys.version.split()[0]}"
        uuids = []  # drawn inside the responder; learnt below
    for port in ports:
        wait_listening(child, port)
    if kind != "nginx":
        uuids = [_backend_uuid(port) for port in ports]
    return Backends(kind, ports, uuids, child, version)


def _backend_uuid(port: int) -> str:
    reply = first_reply(port, "the built-in backend")
    value: str = json.loads(reply.body)["uuid"]
    return value


def _nginx_argv(conf: Path, tmp: Path) -> list[str]:
    # -e: the log for errors before the config is read, which otherwise goes to a system path.
    return ["nginx", "-c", str(conf), "-p", str(tmp), "-e", str(tmp / "nginx-startup-error.log")]


def direct_target(backends: Backends) -> Target:
    return Target(DIRECT, backends.ports[0], backends.child, backends.version)


def available_proxies() -> list[str]:
    found = list(STICKY_PROXY_BUILDS)
    if shutil.which("nginx"):
        found.append(NGINX)
    if shutil.which("haproxy"):
        found.append(HAPROXY)
    return found


@dataclass(frozen=True, slots=True)
class ProxyPlan:
    tmp: Path
    trees: dict[str, Tree]  # by build: the copy of the measured source each sticky-proxy runs from
    backends: Backends
    cookie_name: str
    cpus: str | None
    cap: CpuCap


def start_proxy(children: Children, name: str, plan: ProxyPlan) -> Target:
    if name in STICKY_PROXY_BUILDS:
        return _start_sticky_proxy(children, name, plan)
    port = free_port()
    argv, version = _tool_command(name, port, plan)
    return _started(children, name, plan, argv, port, version=version)


def _started(
    children: Children,
    name: str,
    plan: ProxyPlan,
    argv: list[str],
    port: int,
    *,
    version: str,
    cwd: Path | None = None,
) -> Target:
    child = children.start(name, plan.cap.wrap(name, pinned(plan.cpus, argv)), cwd=cwd)
    wait_listening(child, port)
    return Target(name, port, child, version, capped=plan.cap.applied)


def _start_sticky_proxy(children: Children, name: str, plan: ProxyPlan) -> Target:
    """One build of sticky-proxy from its copy of the source, refused unless the running process
    says it is that build."""
    tree = plan.trees[STICKY_PROXY_BUILDS[name]]
    port, metrics_port = free_port(), free_port()
    argv = [sys.executable, "-m", "proxy", "serve", "--listen", f"127.0.0.1:{port}"]
    argv += ["--metrics-listen", f"127.0.0.1:{metrics_port}", "--log-level", "warning"]
    argv += ["--session-cookie-name", plan.cookie_name, "--backend", *plan.backends.urls]
    # `python -m` imports from the working directory first: the proxy/ of this build's copy.
    target = _started(children, name, plan, argv, port, version=tree.version, cwd=tree.path)
    running = running_build(metrics_port, name)
    if running != tree.build:
        raise BenchError(f"{name} runs {running}, not {tree.build}: refusing to measure it")
    return target


def _tool_command(name: str, port: int, plan: ProxyPlan) -> tuple[list[str], str]:
    ports = plan.backends.ports
    if name == NGINX:
        conf = plan.tmp / "nginx-proxy.conf"
        conf.write_text(configs.nginx_proxy_conf(plan.tmp, port, ports, plan.cookie_name))
        return _nginx_argv(conf, plan.tmp), tool_version(["nginx", "-v"])
    if name == HAPROXY:
        conf = plan.tmp / "haproxy.cfg"
        conf.write_text(configs.haproxy_conf(plan.tmp, port, ports, plan.cookie_name))
        # -db: foreground, no daemon, so the pid we hold is the process that serves.
        return ["haproxy", "-db", "-f", str(conf)], tool_version(["haproxy", "-v"])
    raise ValueError(name)

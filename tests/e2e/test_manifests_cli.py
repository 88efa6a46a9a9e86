"""`python -m proxy serve|routes --manifests` as a user runs them, on the examples in k8s/."""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "k8s" / "examples"
PROXY = (sys.executable, "-m", "proxy")
LOCAL_LISTENERS = (
    "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0", "--tls-listen", "127.0.0.1:0",
)  # fmt: skip
INVALID_INGRESS = """\
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: broken}
spec:
  rules:
  - http:
      paths:
      - {path: /, pathType: Sometimes, backend: {service: {name: web, port: {number: 80}}}}
"""


def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*PROXY, *map(str, args)], cwd=REPO, capture_output=True, text=True, timeout=30, check=False
    )


def test_routes_explains_the_examples() -> None:
    result = run("routes", "--manifests", "k8s/examples/")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    lines = result.stdout.splitlines()
    assert lines[0] == "host sticky.info"
    assert re.search(r"/\s+Prefix\s+default-sticky-d-8080\s+balanced, sets key", result.stdout)
    assert "default/example-ingress" in result.stdout
    for port in (9001, 9002, 9003):
        assert re.search(rf"127\.0\.0\.1:{port}\s+ready\s+sticky-d-{port}", result.stdout)


def test_routes_explains_the_gateway_example() -> None:
    result = run("routes", "--manifests", "k8s/examples/local-demo.yaml", "k8s/gateway/")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == "host sticky.info"
    assert re.search(
        r"/\s+Prefix\s+gateway-default-sticky-d-8080\s+session cookie key, 60s Max-Age\s+"
        r"default/sticky-d",
        result.stdout,
    )
    assert "HTTPRoute default/sticky-d Gateway default/sticky: Accepted=True(Accepted)" in (
        result.stdout
    )
    assert "listener http: Accepted=True(Accepted)" in result.stdout
    assert "1 routes attached" in result.stdout
    assert "warnings" not in result.stdout


def test_routes_explains_the_canary_example() -> None:
    result = run("routes", "--manifests", "k8s/examples/", "k8s/canary/")
    assert result.returncode == 0, result.stderr
    assert re.search(r"/\s+Prefix\s+default-sticky-d-8080\s+balanced, sets key", result.stdout)
    assert (
        "canary default-sticky-canary-8080 (Ingress default/example-canary, sticky):"
        " header x_canary always/never, weight 20 of 100"
    ) in result.stdout
    assert re.search(r"127\.0\.0\.1:9004\s+ready\s+sticky-canary-9004", result.stdout)
    assert "warnings" not in result.stdout


def test_routes_lists_warnings_and_still_exits_0(tmp_path: Path) -> None:
    (tmp_path / "ingress.yaml").write_text(
        (EXAMPLES / "ingress.yaml").read_text().replace("affinity-mode", "affinity-mood")
    )
    result = run("routes", "--manifests", tmp_path)
    assert result.returncode == 0, result.stderr
    assert "affinity-mood" in result.stdout.split("warnings")[1]


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("kind: Service\nmetadata: {name: [\n", r"broken\.yaml:3: invalid YAML: "),
        ("- a\n- list\n", r"broken\.yaml:1: document 1 is a list, not a Kubernetes object"),
        (INVALID_INGRESS, r"broken\.yaml:1: Ingress default/broken: .*pathType: 'Sometimes'"),
        (None, r"broken\.yaml: No such file or directory"),
    ],
    ids=["yaml-syntax", "not-an-object", "invalid-ingress", "missing-file"],
)
def test_invalid_input_is_one_line_and_exit_1_for_routes_and_2_for_serve(
    tmp_path: Path, text: str | None, complaint: str
) -> None:
    broken = tmp_path / "broken.yaml"
    if text is not None:
        broken.write_text(text)
    manifests = ("--manifests", EXAMPLES, broken)
    routes = run("routes", *manifests)
    assert (routes.returncode, routes.stdout) == (1, "")
    expected = rf"sticky-proxy: error: {re.escape(str(tmp_path))}/{complaint}.*"
    assert re.fullmatch(expected + "\n", routes.stderr)

    serve = run("serve", *manifests, *LOCAL_LISTENERS)
    assert serve.returncode == 2, serve.stderr
    assert "Traceback" not in serve.stderr
    (error,) = [line for line in serve.stderr.splitlines() if "error" in line.lower()]
    assert re.fullmatch(expected, error)


def start_backends(count: int) -> Iterator[tuple[subprocess.Popen[str], int]]:
    for _ in range(count):
        process = subprocess.Popen(
            [sys.executable, "-m", "backend", "--host", "127.0.0.1", "--port", "0"],
            cwd=REPO,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert process.stdout is not None
        line = process.stdout.readline()
        yield process, int(line.rsplit(":", 1)[1])


def wait_until_ready(metrics_url: str) -> None:
    """/readyz answers 503 from the moment the proxy listens until its first snapshot."""
    deadline = time.monotonic() + 5
    while True:
        try:
            with urllib.request.urlopen(metrics_url + "/readyz", timeout=5):
                return
        except urllib.error.HTTPError as error:
            assert error.code == 503
            assert time.monotonic() < deadline, "not ready within 5 s"
            time.sleep(0.02)


def uuid_and_cookie(proxy_url: str, cookie: str | None) -> tuple[str, str | None]:
    headers = {"Host": "sticky.info", **({"Cookie": cookie} if cookie else {})}
    request = urllib.request.Request(proxy_url, headers=headers)
    with urllib.request.urlopen(request, timeout=5) as response:
        body: dict[str, str] = json.load(response)
        return body["uuid"], response.headers.get("Set-Cookie")


def test_serve_the_walkthrough_and_rebalance_on_an_edit(tmp_path: Path) -> None:
    backends = list(start_backends(3))
    ports = [port for _, port in backends]
    shutil.copy(EXAMPLES / "ingress.yaml", tmp_path)
    demo = (EXAMPLES / "local-demo.yaml").read_text()
    for example_port, port in zip((9001, 9002, 9003), ports, strict=True):
        demo = demo.replace(str(example_port), str(port))
    (tmp_path / "local-demo.yaml").write_text(demo)
    proxy = subprocess.Popen(
        [*PROXY, "serve", "--manifests", str(tmp_path), *LOCAL_LISTENERS],
        cwd=REPO,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proxy.stderr is not None
        while "proxy listening on" not in (line := proxy.stderr.readline()):
            assert line, f"the proxy ended early: {proxy.communicate(timeout=10)[1]}"
        proxy_url, metrics_url = re.findall(r"http://[\d.:]+", line)
        wait_until_ready(metrics_url)

        uuid, set_cookie = uuid_and_cookie(proxy_url, None)
        assert set_cookie is not None
        assert re.fullmatch(r"key=[^;]+; Max-Age=60; Path=/; HttpOnly", set_cookie)
        cookie = set_cookie.split(";")[0]
        assert {uuid_and_cookie(proxy_url, cookie) for _ in range(5)} == {(uuid, None)}

        # Take the session's pod out of the slices: within a second it moves, cookie unchanged.
        serving = next(port for process, port in backends if _uuid_of(port) == uuid)
        documents = demo.split("---\n")
        kept = [doc for doc in documents if f"port: {serving}\n" not in doc]
        assert len(kept) == len(documents) - 1
        (tmp_path / "local-demo.yaml").write_text("---\n".join(kept))
        deadline = time.monotonic() + 1.5
        while (moved := uuid_and_cookie(proxy_url, cookie))[0] == uuid:
            assert time.monotonic() < deadline, "still on the removed pod"
            time.sleep(0.05)
        assert moved[1] is None

        proxy.send_signal(signal.SIGTERM)
        _, stderr = proxy.communicate(timeout=20)
        assert proxy.returncode == 0, stderr
        assert "Traceback" not in stderr
    finally:
        if proxy.poll() is None:
            proxy.kill()
            proxy.communicate(timeout=10)
        for process, _ in backends:
            process.terminate()
            process.communicate(timeout=10)


def _uuid_of(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as response:
        uuid: str = json.load(response)["uuid"]
        return uuid

"""The two builds of sticky-proxy the benchmarks measure, interpreted and compiled by mypyc, each
run from its own copy of the measured source and checked to be the build it claims.

Both copies hold the same files, taken once from `--proxy-source`: what git tracks (and untracked
files it does not ignore, so an uncommitted new module comes along), as they are in the working
tree, without any extension module. The compiled copy is then built in place by setup.py; the
interpreted one is left as it is. So a checkout that someone compiled in place cannot pass its
`.so` files off as the interpreted build, and editing or rebuilding the checkout during a run
changes neither copy.

Before anything is measured, each copy is asked, with the interpreter and working directory its
proxy will run with, where every per-request module comes from: all from the copy, all `.py` for
the interpreted build and all extension modules for the compiled one, or the run stops.
`running_build` asks the started proxy itself (`/status`), so the process measured is checked too.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path

from bench.check import fetch_all
from bench.procs import BenchError

INTERPRETED, COMPILED = "interpreted", "compiled"
BUILDS = (INTERPRETED, COMPILED)
# setup.py's COMPILED_PACKAGES, as modules: what runs compiled in the compiled build.
PER_REQUEST_PACKAGES = (
    "proxy.core",
    "proxy.dataplane",
    "proxy.observability.metrics",
    "proxy.observability.active_sessions",
    "proxy.observability.proxied_request",
)
# mypyc took about 45 s on the 2-core machine the bench was written on; a hung compiler is a bug.
COMPILE_TIMEOUT_S = 900
# What a copy needs when the source is not a git checkout: the package and what setup.py reads.
UNTRACKED_SOURCE_ENTRIES = ("proxy", "tests", "setup.py", "pyproject.toml", "README.md")
# Imports every per-request module and prints where each was loaded from.
_WHERE_FROM = """
import importlib, json, pkgutil, sys
from proxy.system import build
files = {}
for name in sys.argv[1:]:
    package = importlib.import_module(name)
    files[name] = package.__file__
    for module in pkgutil.iter_modules(getattr(package, "__path__", []), name + "."):
        files[module.name] = importlib.import_module(module.name).__file__
print(json.dumps({"describe": build.describe(), "files": files}))
"""


@dataclass(frozen=True, slots=True)
class Tree:
    """A copy of the measured source, ready to run `python -m proxy` from."""

    build: str  # interpreted | compiled
    path: Path
    version: str  # what it says it is, and from which revision: for the table's setup lines


def is_extension(path: Path) -> bool:
    return path.name.endswith(tuple(EXTENSION_SUFFIXES))


def prepare(source: Path, work_dir: Path, builds: Sequence[str]) -> dict[str, Tree]:
    """A checked copy of `source` per build, under `work_dir`: {build: tree}."""
    revision = source_revision(source)
    # Every copy first, back to back, so that they hold the same files even if the source
    # changes while one of them compiles.
    paths = {build: work_dir / f"source-{build}" for build in builds}
    for path in paths.values():
        copy_source(source, path)
    in_place = sum(is_extension(path) for path in (source / "proxy").rglob("*"))
    if in_place:
        print(f"{source}/proxy has {in_place} extension modules (compiled in place): not copied")
    trees = {}
    for build, path in paths.items():
        if build == COMPILED:
            print(f"compiling {source} with mypyc in a copy (about a minute) ...", flush=True)
            compile_in_place(path)
        trees[build] = Tree(build, path, f"sticky-proxy {check_tree(path, build)}, {revision}")
    return trees


def _source_files(source: Path) -> list[Path]:
    """The files to copy, relative to `source`."""
    listed = subprocess.run(
        ["git", "-C", str(source), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        capture_output=True,
        check=False,
    )
    if listed.returncode == 0:
        return [Path(name) for name in listed.stdout.decode().split("\0") if name]
    found = []
    for entry in UNTRACKED_SOURCE_ENTRIES:
        top = source / entry
        walked = top.rglob("*") if top.is_dir() else [top]
        found += [path.relative_to(source) for path in walked if "__pycache__" not in path.parts]
    return found


def copy_source(source: Path, dest: Path) -> None:
    """Copy the source's files into `dest`, but not its extension modules."""
    for relative in _source_files(source):
        original = source / relative
        # not a file: deleted in the working tree but still tracked
        if original.is_file() and not is_extension(original):
            target = dest / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(original, target)


def compile_in_place(tree: Path) -> None:
    """`python setup.py build_ext --inplace` in `tree`, as CI compiles a checkout."""
    env = {name: value for name, value in os.environ.items() if name != "STICKY_PROXY_PURE"}
    try:
        done = subprocess.run(
            [sys.executable, "setup.py", "build_ext", "--inplace"],
            cwd=tree,
            env=env,
            capture_output=True,
            text=True,
            timeout=COMPILE_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise BenchError(f"compiling {tree} took more than {COMPILE_TIMEOUT_S} s") from None
    lines = (done.stdout + done.stderr).strip().splitlines()
    if done.returncode != 0:
        raise BenchError(f"compiling {tree} failed ({done.returncode}): {' | '.join(lines[-3:])}")
    # Where it cannot compile, setup.py builds pure Python and says why in this line.
    why_not = [line for line in lines if line.startswith("sticky-proxy: not compiled")]
    if why_not:
        raise BenchError(f"{tree}: {why_not[0]}")


def check_tree(tree: Path, build: str) -> str:
    """What `tree`'s proxy says it is ("0.1.0, compiled (mypyc)"), once every per-request module
    was seen to load from `tree` as `build`; BenchError otherwise."""
    done = subprocess.run(
        [sys.executable, "-c", _WHERE_FROM, *PER_REQUEST_PACKAGES],
        cwd=tree,  # as the proxy runs: `python -m proxy` puts the working directory first
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if done.returncode != 0:
        last = (done.stdout + done.stderr).strip().splitlines()[-1:]
        raise BenchError(f"{tree}: the proxy does not import: {' '.join(last)}")
    found = json.loads(done.stdout)
    wrong = [
        f"{name} from {file}"
        for name, file in sorted(found["files"].items())
        if file is None  # a namespace package: no source of its own, so not the copy's
        or not Path(file).resolve().is_relative_to(tree.resolve())
        or is_extension(Path(file)) != (build == COMPILED)
    ]
    if wrong:
        raise BenchError(
            f"the {build} copy {tree} does not run {build}: {len(wrong)} module(s) wrong, "
            f"e.g. {wrong[0]}; refusing to measure it"
        )
    description: str = found["describe"]
    return description


def running_build(metrics_port: int, who: str) -> str:
    """The build a running proxy reports on its `/status`: interpreted or compiled."""
    try:
        (reply,) = fetch_all(metrics_port, "/status", (), 1)
        compiled = json.loads(reply.body)["build"]["compiled"]
    except (OSError, http.client.HTTPException, ValueError, KeyError, TypeError) as error:
        raise BenchError(
            f"{who}: no build in its /status on port {metrics_port}: {error!r}"
        ) from None
    return COMPILED if compiled else INTERPRETED


def _git(source: Path, *args: str) -> str | None:
    done = subprocess.run(
        ["git", "-C", str(source), *args], capture_output=True, text=True, check=False
    )
    return done.stdout.strip() if done.returncode == 0 else None


def source_revision(source: Path) -> str:
    """Which code was measured: the commit, and whether proxy/ had uncommitted changes."""
    commit = _git(source, "rev-parse", "--short", "HEAD")
    if commit is None:
        return f"from {source} (not a git checkout)"
    dirty = _git(source, "status", "--porcelain", "--", "proxy")
    return f"{commit}{' + uncommitted changes in proxy/' if dirty else ''}"

"""Builds sticky-proxy, compiling the per-request code (proxy/core, proxy/dataplane, and the
request counting of proxy/observability) with mypyc where it can, as black and mypy build
themselves: same source, same tests, C extensions that replace the modules they were compiled
from.

- `pip install .` and `pip wheel .` compile when a C compiler and the Python headers are there,
  and build the pure-Python package, with a warning, when not. (With a compiler present, a
  failure to compile fails the build: half a compiled package would not import.)
- `STICKY_PROXY_PURE=1` builds pure Python whatever is installed.
- An editable install (`pip install -e .`) stays pure Python, so edits to the source take effect
  at once; `STICKY_PROXY_COMPILE=1` compiles it in place instead (the extensions land next to
  the .py files, which they then shadow: how CI runs the suite against the compiled build).

Everything else about the package is in pyproject.toml. See README.md, "Compiled or pure Python".
"""

from __future__ import annotations

import os
import shutil
import sys
import sysconfig
from pathlib import Path
from typing import Any

from setuptools import setup

# The per-request code: core, the data plane, and what counts each request for the metrics.
COMPILED_PACKAGES = [
    "proxy/core",
    "proxy/dataplane",
    "proxy/observability/metrics.py",
    "proxy/observability/active_sessions.py",
    "proxy/observability/proxied_request.py",
]


def _wanted() -> bool:
    if os.environ.get("STICKY_PROXY_PURE") == "1":
        return False
    if "editable_wheel" in sys.argv or "develop" in sys.argv:
        return os.environ.get("STICKY_PROXY_COMPILE") == "1"
    # only when something is built: not for metadata (egg_info, dist_info) or an sdist
    return any(command in sys.argv for command in ("bdist_wheel", "build_ext", "build"))


def _can_compile() -> str | None:
    """Why compiling cannot work here, or None when it can."""
    if not (Path(sysconfig.get_paths()["include"]) / "Python.h").exists():
        return "no Python headers (Python.h)"
    compiler = (sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(compiler) is None:
        return f"no C compiler ({compiler})"
    return None


def _extensions() -> list[Any]:
    if not _wanted():
        return []
    reason = _can_compile()
    if reason is not None:
        print(f"sticky-proxy: not compiled: {reason}; the package is pure Python", file=sys.stderr)
        return []
    from mypyc.build import mypycify  # noqa: PLC0415 - a build requirement, needed only here

    return list(mypycify(COMPILED_PACKAGES, opt_level="3", group_name="sticky_proxy"))


setup(ext_modules=_extensions())

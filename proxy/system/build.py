"""Which build is running: the package's version, and whether the per-request code (proxy/core,
proxy/dataplane, the request counting) runs compiled by mypyc or interpreted. See README.md,
"Compiled or pure Python".
"""

from __future__ import annotations

from importlib import metadata

from proxy.core import headers  # compiled with the rest of core and the data plane, or not at all


def version() -> str:
    try:
        return metadata.version("sticky-proxy")
    except metadata.PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown"


def compiled() -> bool:
    """Whether core and data plane are mypyc's extension modules rather than their source."""
    return not (headers.__file__ or "").endswith(".py")


def describe() -> str:
    """`0.1.0, compiled (mypyc)` or `0.1.0, interpreted`."""
    return f"{version()}, {'compiled (mypyc)' if compiled() else 'interpreted'}"

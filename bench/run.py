"""`python bench/run.py [--help]`: sticky-proxy, interpreted and compiled, benchmarked against a
direct backend, nginx and HAProxy in one interleaved run. Not part of the test suite; see
bench/README.md."""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: the repository root is not on sys.path yet
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.main import main  # importable only once the root is on sys.path

if __name__ == "__main__":
    sys.exit(main())

"""Fixtures for the end-to-end tests: real processes on loopback."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.test_manifests_cli import start_backends


@pytest.fixture
def backend() -> Iterator[str]:
    """The URL of one `sticky-backend` process, stopped after the test."""
    ((process, port),) = start_backends(1)
    yield f"http://127.0.0.1:{port}"
    process.terminate()
    process.wait(timeout=10)

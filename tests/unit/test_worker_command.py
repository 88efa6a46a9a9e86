"""The command a `--workers` supervisor hands each worker survives the trip, compiled or not."""

from __future__ import annotations

import pickle

from proxy.app.cli import parse_command
from proxy.app.settings import ServeCommand
from proxy.app.workers import _pickled


def test_a_serve_command_reaches_the_worker_whole() -> None:
    flags = ["--backend", "http://10.0.0.5:8080", "--workers", "2", "--session-cookie-name", "key"]
    command = parse_command(["serve", *flags, "--proxy-read-timeout", "7"])
    assert isinstance(command, ServeCommand)
    received = pickle.loads(_pickled(command))
    assert received == command
    assert received.endpoints[0].node == "10.0.0.5:8080"  # computed fields are computed again

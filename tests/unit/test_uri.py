"""The request path as nginx reads it (proxy.core.uri), without sockets."""

from __future__ import annotations

import pytest

from proxy.core.uri import climbs_above_root


@pytest.mark.parametrize(
    ("path", "climbs"),
    [
        ("/", False),
        ("/a/../b", False),  # stays inside: nginx resolves it and forwards it
        ("/a/%2e%2e/b", False),
        ("/app.js", False),
        ("/..", True),
        ("/../etc/passwd", True),
        ("/a/../../b", True),
        ("/%2e%2e/x", True),
        ("/a/%2E%2E%2f..", True),  # a decoded `/` separates segments too
        ("//..", True),  # empty segments merge first
    ],
)
def test_a_path_that_climbs_above_the_root(path: str, climbs: bool) -> None:
    assert climbs_above_root(path) is climbs

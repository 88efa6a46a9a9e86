"""The request path as nginx reads it: percent-decoded, slashes merged, dot segments resolved.

docs/behaviour.md, "Error statuses": a path whose `..` segments climb above the root is refused
with 400, as nginx's ngx_http_parse_complex_uri refuses it, so no pod sees a path outside the
tree; `$uri` in `upstream-hash-by` is the resolved path.
"""

from __future__ import annotations

from urllib.parse import unquote_to_bytes


def _segments(decoded: bytes) -> list[bytes] | None:
    """The decoded path's segments after `.`, `..` and empty ones; None if `..` climbs above
    the root."""
    segments: list[bytes] = []
    for segment in decoded.split(b"/")[1:]:
        if segment == b"..":
            if not segments:
                return None
            segments.pop()
        elif segment not in (b"", b"."):
            segments.append(segment)
    return segments


def _may_need_resolving(path: bytes) -> bool:
    return b"%" in path or b"//" in path or b"/." in path


def climbs_above_root(path: str) -> bool:
    """Whether `path` (the target before any `?`, as latin-1) climbs above the root with `..`
    segments, `%2e` and `%2f` decoded."""
    if "/." not in path and "%2" not in path:
        return False  # the common case: two scans of a str, no decoding
    return _segments(unquote_to_bytes(path)) is None


def uri_path(target: bytes) -> str:
    """nginx's $uri: the path without query, percent-decoded, repeated slashes merged and dot
    segments resolved (ngx_http_parse_complex_uri with merge_slashes on). The target must not
    climb above the root (the request head refuses one that does)."""
    path = target.partition(b"?")[0]
    if not _may_need_resolving(path):
        return path.decode("latin-1")
    decoded = unquote_to_bytes(path)
    segments = _segments(decoded) or []
    trailing = decoded.endswith((b"/", b"/.", b"/..")) and bool(segments)
    return (b"/" + b"/".join(segments) + (b"/" if trailing else b"")).decode("latin-1")

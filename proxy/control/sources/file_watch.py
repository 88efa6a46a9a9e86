"""Noticing that manifest files changed, by polling `os.stat`.

Polling a handful of files every quarter second costs next to nothing, needs no dependency, and
sees every way a file changes: written in place, replaced by a rename, swapped behind a symlink
(a ConfigMap volume), added to or removed from a watched directory. inotify misses some of these
(a rename onto a watched file, a symlink target) and does not work on network filesystems.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from proxy.control.sources.manifest_files import ManifestFileError, manifest_files, read_files

# What tells a file changed, following symlinks: content (mtime, size) and identity (inode,
# device: a rename or a symlink swap).
StatKey = tuple[int, int, int, int]
Fingerprint = tuple[tuple[Path, StatKey | None], ...]
Contents = tuple[tuple[Path, bytes], ...]


def fingerprint(paths: Sequence[Path]) -> Fingerprint:
    return tuple((file, _stat_key(file)) for file in manifest_files(paths))


def _stat_key(file: Path) -> StatKey | None:
    try:
        stat = os.stat(file)
    except OSError:  # gone (or a dangling symlink): reading it will say what is wrong
        return None
    return (stat.st_mtime_ns, stat.st_size, stat.st_ino, stat.st_dev)


class ManifestWatch:
    """The bytes behind `paths`, each time they change. Blocking: call from a thread.

    A change is read once the files have held still for a whole poll interval, so a file being
    written (truncated, then filled; or written in several pieces) is not read half-way: an
    empty or cut-short file can be valid YAML, and serving it even briefly would drop routes.
    """

    def __init__(self, paths: Sequence[Path]) -> None:
        self.paths = tuple(paths)
        self._seen: Fingerprint | None = None
        self._read = False  # whether the files as `_seen` describes them have been read
        self._last: Contents | str | None = None  # what was last read, or why it could not be

    def read(self) -> Contents:
        """The files' bytes now, without waiting for them to hold still: the first load."""
        self._seen = fingerprint(self.paths)
        # Left unread on purpose: the next poll reads them once more, in case a writer was busy.
        self._read = False
        self._last = read_files([file for file, _ in self._seen])
        return self._last

    def poll(self) -> Contents | None:
        """The files' bytes if they changed, held still since the last poll, and now differ
        from what was read before; else None.

        Raises ManifestFileError when a file cannot be read, once per change: the same failure
        is not reported again until something changes.
        """
        seen = fingerprint(self.paths)
        if seen != self._seen:
            self._seen, self._read = seen, False
            return None
        if self._read:
            return None
        self._read = True
        try:
            contents = read_files([file for file, _ in seen])
        except ManifestFileError as error:
            if str(error) == self._last:
                return None
            self._last = str(error)
            raise
        if contents == self._last:
            return None  # touched, or rewritten with the same bytes
        self._last = contents
        return contents

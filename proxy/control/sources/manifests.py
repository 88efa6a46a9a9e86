"""The `--manifests PATH ...` source: Kubernetes objects in files, re-read when they change.

Every change translates the whole set of files again (never a delta), so what is served is always
what the files say now. A change that does not load or translate is refused and the last good
routes stay: a typo costs one log line, never an outage.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from proxy.control.sources.file_watch import ManifestWatch
from proxy.control.sources.manifest_files import (
    LoadedObject,
    ManifestFileError,
    Origin,
    manifest_files,
    parse_files,
    read_files,
)
from proxy.control.sources.source import SnapshotSink, SourceError
from proxy.control.translate import ManifestError, TranslateOptions, object_ref, translate
from proxy.core.routing import Snapshot

# Seconds. A change is read at the second poll after it (once it held still): live 0.25-0.5 s
# after the write, plus one translation.
POLL_INTERVAL = 0.25


def load_snapshot(paths: Sequence[Path], options: TranslateOptions) -> Snapshot:
    """The routes the files behind `paths` make now; ManifestFileError naming file and object."""
    return translate_files(read_files(manifest_files(paths)), options)


def translate_files(contents: Sequence[tuple[Path, bytes]], options: TranslateOptions) -> Snapshot:
    objects = parse_files(contents)
    try:
        return translate([loaded.obj for loaded in objects], options)
    except ManifestError as error:
        origin = _origin_named_by(error, objects)
        raise ManifestFileError(f"{origin}: {error}" if origin else str(error)) from None


def _origin_named_by(error: ManifestError, objects: Sequence[LoadedObject]) -> Origin | None:
    """Where the object the error names was read: translation knows objects, not files, and
    starts its messages with `object_ref(obj) + ":"`."""
    message = str(error)
    return next(
        (loaded.origin for loaded in objects if message.startswith(object_ref(loaded.obj) + ":")),
        None,
    )


@dataclass(frozen=True, slots=True)
class ManifestSource:
    paths: tuple[Path, ...]
    options: TranslateOptions
    poll_interval: float = POLL_INTERVAL

    async def run(self, sink: SnapshotSink) -> None:
        watch = ManifestWatch(self.paths)
        loop = asyncio.get_running_loop()
        began = loop.time()
        try:
            first = await asyncio.to_thread(self._first_load, watch)
        except ManifestFileError as error:
            raise SourceError(str(error)) from None
        sink.publish(first, loop.time() - began)
        while True:
            await asyncio.sleep(self.poll_interval)
            began = loop.time()
            try:
                snapshot = await asyncio.to_thread(self._reload, watch)
            except ManifestFileError as error:
                sink.reject(str(error))
                continue
            if snapshot is not None:
                sink.publish(snapshot, loop.time() - began)

    # Both run in a thread: reading and translating many objects would otherwise hold up the
    # requests in flight for all that time.

    def _first_load(self, watch: ManifestWatch) -> Snapshot:
        return translate_files(watch.read(), self.options)

    def _reload(self, watch: ManifestWatch) -> Snapshot | None:
        """A new snapshot if the files changed, else None."""
        contents = watch.poll()
        return None if contents is None else translate_files(contents, self.options)

"""What every source is to the runtime: something that publishes whole routing states.

A source (static URLs, manifest files, the Kubernetes API) runs as one task next to the data plane.
It calls `publish` with a complete snapshot each time its view of the world changes, and `reject`
when an update could not be turned into one (the data plane keeps the last good snapshot). It
publishes nothing until it knows the whole world: the Kubernetes source waits until every resource
it watches has completed its first list, so the first snapshot is never a partial one, and
`/readyz` turns 200 exactly then.
"""

from __future__ import annotations

from typing import Protocol

from proxy.core.routing import Snapshot


class SnapshotSink(Protocol):
    def publish(self, snapshot: Snapshot, build_seconds: float | None = None) -> bool:
        """Swap in a whole new state (an accepted reload), built from the source's objects in
        `build_seconds`; False when it routes like the last."""
        ...

    def reject(self, problem: str) -> None:
        """An update that was refused; `problem` is one line naming the file or object and why."""
        ...


class Source(Protocol):
    async def run(self, sink: SnapshotSink) -> None:
        """Publish to `sink` until cancelled (or return once nothing can change any more).

        Raises `SourceError` when there can never be a first state to serve, e.g. manifests that
        do not load at startup: the process then exits with status 2, as `nginx -t` would.
        """
        ...


class SourceError(Exception):
    """The source cannot deliver its first state; the message is one line for the user."""

"""One `serve --workers N` worker: `python -m proxy.app.worker`, the command pickled on stdin by
the supervisor (`proxy.app.workers`), then an ordinary `serve`."""

from __future__ import annotations

import pickle
import sys

from proxy.app.commands import run


def main() -> int:
    command = pickle.load(sys.stdin.buffer)
    return run(command)


if __name__ == "__main__":
    sys.exit(main())

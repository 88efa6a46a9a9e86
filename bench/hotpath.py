"""Python cost of one proxied request, without sockets or a kernel in the way: the data plane's own
CPU time per request, which socket benchmarks bury under kernel time and noise. For the proxy as
this checkout imports it, for the one in another tree, or for both builds of a source side by side.
bench/hotpath_drive.py does the driving.

    python bench/hotpath.py                                  # this checkout, as it imports
    python bench/hotpath.py --builds interpreted,compiled    # both builds of it, side by side
    python bench/hotpath.py --source DIR                     # the proxy/ in DIR, as it imports
    python bench/hotpath.py --profile browser                # cProfile's top functions
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

if __package__ in (None, ""):  # run as a script: the repository root is not on sys.path yet
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.builds import BUILDS, COMPILED, INTERPRETED, Tree, prepare, source_revision
from bench.procs import BenchError

REPO = Path(__file__).resolve().parent.parent
PROG = "bench/hotpath.py"
ROUNDS = 3  # the best of these runs of --count requests counts: the others met noise


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=50_000, help="requests per run")
    parser.add_argument("--profile", metavar="KIND", help="cProfile one kind of request")
    parser.add_argument(
        "--source",
        type=Path,
        metavar="DIR",
        help="the tree whose proxy/ is measured, as it imports there; with --builds, the source "
        "the builds are made from (default: this checkout)",
    )
    parser.add_argument(
        "--builds",
        metavar="LIST",
        help=f"comma-separated, from {', '.join(BUILDS)}: measure each in its own copy of the "
        "source (compiling takes about a minute)",
    )
    parser.add_argument(
        "--json", action="store_true", help="print the build and the µs as JSON (for --builds)"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    source = (args.source or REPO).resolve()
    if not (source / "proxy" / "__main__.py").is_file():
        parser.error(f"--source: {source} has no proxy/__main__.py")
    try:
        if args.builds is not None:
            builds = [name.strip() for name in args.builds.split(",") if name.strip()]
            if not builds or set(builds) - set(BUILDS):
                parser.error(f"--builds: {args.builds!r}: choose from {', '.join(BUILDS)}")
            if args.profile or args.json:
                parser.error("--builds compares builds: --profile and --json take --source DIR")
            compare_builds(source, list(dict.fromkeys(builds)), args.count)
        else:
            measure_here(source, args.count, args.profile, as_json=args.json)
    except BenchError as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 1
    return 0


def measure_here(source: Path, count: int, profile: str | None, *, as_json: bool) -> None:
    """Measure the proxy `source` holds, in this process."""
    sys.path.insert(0, str(source))  # before the proxy is imported: its proxy/ comes first
    import proxy  # noqa: PLC0415 - only now is the measured tree first on sys.path
    from bench import hotpath_drive  # noqa: PLC0415 - it imports the proxy too
    from proxy.system import build  # noqa: PLC0415

    loaded_from = str(Path(proxy.__file__ or "").parent)
    kinds = hotpath_drive.REQUESTS
    if profile is not None and profile not in kinds:
        raise BenchError(f"--profile: {profile!r}: choose from {', '.join(kinds)}")
    if not as_json:
        print(f"sticky-proxy {build.describe()}, proxy/ from {loaded_from}")
    if profile is not None:
        hotpath_drive.run(profile, count, profile=True)
        return
    best = {
        kind: min(hotpath_drive.run(kind, count, profile=False) for _ in range(ROUNDS))
        for kind in kinds
    }
    if as_json:
        print(json.dumps({"compiled": build.compiled(), "loaded_from": loaded_from, "us": best}))
        return
    for kind, us in best.items():
        print(f"{kind:<14} {us:6.2f} µs/request")


def compare_builds(source: Path, builds: list[str], count: int) -> None:
    """Each build from its own copy of `source`, measured in a process of its own."""
    with tempfile.TemporaryDirectory(prefix="sticky-hotpath-") as tmp:
        trees = prepare(source, Path(tmp), builds)
        measured = {build: _measure_in_child(tree, count) for build, tree in trees.items()}
    print(
        f"\nsticky-proxy {source_revision(source)}: the data plane's CPU µs per request "
        f"(best of {ROUNDS} runs of {count:,})\n"
    )
    ratio = INTERPRETED in measured and COMPILED in measured
    columns = ["request", *builds, *(["compiled ÷ interpreted"] if ratio else [])]
    print("| " + " | ".join(columns) + " |\n|" + "---|" * len(columns))
    for kind in measured[builds[0]]:
        cells = [f"{measured[build][kind]:.2f}" for build in builds]
        if ratio:
            cells.append(f"{measured[COMPILED][kind] / measured[INTERPRETED][kind]:.2f}")
        print(f"| {kind} | " + " | ".join(cells) + " |")


def _measure_in_child(tree: Tree, count: int) -> dict[str, float]:
    """µs per request of each kind, from a process that imports the proxy from `tree` and is
    refused unless it did, as the build `tree` is."""
    argv = [sys.executable, __file__, "--source", str(tree.path), "--count", str(count), "--json"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False)
    if done.returncode != 0:
        raise BenchError(f"the {tree.build} run failed: {done.stderr.strip()[-300:]}")
    found = json.loads(done.stdout.strip().splitlines()[-1])
    runs = COMPILED if found["compiled"] else INTERPRETED
    if runs != tree.build or not Path(found["loaded_from"]).is_relative_to(tree.path):
        raise BenchError(
            f"the {tree.build} run imported a {runs} proxy from {found['loaded_from']}, "
            f"not the {tree.build} copy {tree.path}: refusing to report it"
        )
    us: dict[str, float] = found["us"]
    return us


if __name__ == "__main__":
    sys.exit(main())

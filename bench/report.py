"""Runs in, medians out: the markdown table and the JSON file of every run."""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bench.load import LoadResult
from bench.targets import DIRECT, NGINX


@dataclass
class Run:
    scenario: str
    target: str
    rep: int
    load: LoadResult
    target_cpu_s: float  # CPU the target's processes used during the run (user + system)
    target_user_s: float  # of which in user space: for sticky-proxy, mostly Python
    load_cpu_s: float  # CPU the load generator used
    rss_kb: int  # the target's resident memory after the run
    cores_busy: dict[int, float]  # percent busy of every core during the run
    throttled_periods: int | None  # cgroup cap only: periods the target was throttled
    # upstream connections closed during the run (new TIME_WAIT towards the backends); proxies only
    upstream_closes: int | None = None
    extra: dict[str, float] = field(default_factory=dict)  # idle-2000: memory per idle client

    @property
    def cpu_us_per_request(self) -> float:
        return 1e6 * self.target_cpu_s / self.load.requests if self.load.requests else 0.0

    @property
    def user_us_per_request(self) -> float:
        return 1e6 * self.target_user_s / self.load.requests if self.load.requests else 0.0

    def to_json(self) -> dict[str, object]:
        data = asdict(self)
        data["rps"] = round(self.load.rps, 1)
        data["cpu_us_per_request"] = round(self.cpu_us_per_request, 2)
        data["user_us_per_request"] = round(self.user_us_per_request, 2)
        return data


@dataclass(frozen=True, slots=True)
class Row:
    scenario: str
    target: str
    rps: tuple[float, float, float]  # median, min, max
    p50_ms: float
    p99_ms: float
    cpu_us: float
    user_us: float
    rss_mb: float
    errors: int
    requests: int
    busy: str
    note: str
    ratio_nginx: float | None = None
    ratio_direct: float | None = None
    added_p50_ms: float | None = None  # c1-latency: the p50 a proxy adds to the direct one's
    kb_per_idle_client: float | None = None  # idle-2000, proxies: the worst rep's growth


def _median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else 0.0


def summarise(runs: Sequence[Run], problems: dict[tuple[str, str], list[str]]) -> list[Row]:
    """One row per (scenario, target), in the order they ran, with ratios inside the scenario."""
    groups: dict[tuple[str, str], list[Run]] = {}
    for run in runs:
        groups.setdefault((run.scenario, run.target), []).append(run)
    rows = [_row(key, group, problems.get(key, [])) for key, group in groups.items()]
    medians = {(r.scenario, r.target): r.rps[0] for r in rows}
    for index, row in enumerate(rows):
        nginx = medians.get((row.scenario, NGINX))
        direct = medians.get((row.scenario, DIRECT))
        rows[index] = Row(
            **{
                **asdict(row),
                "ratio_nginx": row.rps[0] / nginx if nginx else None,
                "ratio_direct": row.rps[0] / direct if direct else None,
            }
        )
    _add_latency_notes(rows)
    return rows


def _row(key: tuple[str, str], group: list[Run], problems: list[str]) -> Row:
    rps = [run.load.rps for run in group]
    notes = []
    per_idle_client = None
    if key[0] == "1mb":
        mb_s = _median([run.load.bytes / run.load.duration_s / 1e6 for run in group])
        notes.append(f"{mb_s:,.0f} MB/s")
    if key[0] == "idle-2000" and key[1] != DIRECT:
        # The worst rep: later reps can reuse memory an earlier rep's clients left behind.
        per_idle_client = max(run.extra["kb_per_idle_client"] for run in group)
        notes.append(_idle_note(group, per_idle_client))
    closes = [run.upstream_closes for run in group if run.upstream_closes is not None]
    if closes and _median(closes) > 0:
        per_request = _median(closes) / _median([run.load.requests for run in group])
        notes.append(f"{_median(closes):,.0f} upstream closes/run ({per_request:.0%} of requests)")
    if problems:
        notes.append("CHECK FAILED: " + "; ".join(problems))
    busy = [run.cores_busy for run in group]
    return Row(
        scenario=key[0],
        target=key[1],
        rps=(_median(rps), min(rps), max(rps)),
        p50_ms=_median([run.load.latency_ms["p50"] for run in group]),
        p99_ms=_median([run.load.latency_ms["p99"] for run in group]),
        cpu_us=_median([run.cpu_us_per_request for run in group]),
        user_us=_median([run.user_us_per_request for run in group]),
        rss_mb=_median([run.rss_kb for run in group]) / 1024,
        errors=sum(run.load.error_count for run in group),
        requests=sum(run.load.requests for run in group),
        busy="/".join(
            f"{_median([b.get(core, 0.0) for b in busy]):.0f}" for core in sorted(busy[0])
        ),
        note=", ".join(notes),
        kb_per_idle_client=per_idle_client,
    )


def _idle_note(group: list[Run], per_client: float) -> str:
    still_open = min(int(run.extra["idle_still_open"]) for run in group)
    clients = int(group[0].extra["idle_clients"])
    before = _median([run.extra["rss_before_kb"] for run in group]) / 1024
    idle = _median([run.extra["rss_idle_kb"] for run in group]) / 1024
    return (
        f"up to {per_client:.1f} KB/idle client (RSS {before:.1f}→{idle:.1f} MB), "
        f"{still_open}/{clients} still open"
    )


def _add_latency_notes(rows: list[Row]) -> None:
    """c=1: the latency each proxy adds to the direct backend's, the number that matters there."""
    direct = {r.scenario: r.p50_ms for r in rows if r.target == DIRECT}
    for index, row in enumerate(rows):
        if row.scenario == "c1-latency" and row.target != DIRECT and row.scenario in direct:
            added_ms = row.p50_ms - direct[row.scenario]
            added = f"p50 +{added_ms:.3f} ms over direct"
            note = f"{added}, {row.note}" if row.note else added
            rows[index] = Row(**{**asdict(row), "note": note, "added_p50_ms": added_ms})


def _ratio(value: float | None) -> str:
    return f"{value:.2f}" if value is not None else "-"


def markdown_table(rows: Sequence[Row], cores: Sequence[int]) -> str:
    header = (
        "| scenario | target | req/s median (min-max) | ÷ nginx | ÷ direct | p50 ms | p99 ms "
        f"| CPU µs/req (user) | RSS MB | errors | busy % cpu{'/'.join(map(str, cores))} | notes |"
    )
    lines = [header, "|" + "---|" * 12]
    for row in rows:
        median, low, high = row.rps
        lines.append(
            f"| {row.scenario} | {row.target} | {median:,.0f} ({low:,.0f}-{high:,.0f}) "
            f"| {_ratio(row.ratio_nginx)} | {_ratio(row.ratio_direct)} | {row.p50_ms:.2f} "
            f"| {row.p99_ms:.2f} | {row.cpu_us:.1f} ({row.user_us:.1f}) | {row.rss_mb:.1f} "
            f"| {row.errors}/{row.requests:,} | {row.busy} | {row.note} |"
        )
    return "\n".join(lines)


@dataclass(frozen=True, slots=True)
class Goal:
    """One row of the performance issue's targets: a figure of one scenario's row, for each proxy,
    as it is or divided by nginx's in the same run."""

    label: str
    scenario: str
    figure: Callable[[Row], float | None]
    unit: str  # the figure's
    per_nginx: bool


def _rps(row: Row) -> float:
    return row.rps[0]


def goals(connections: int) -> tuple[Goal, ...]:
    """The issue's rows; `connections` is the sticky scenario's (--connections, 50 by default)."""
    return (
        Goal("sticky req/s ÷ nginx", "sticky", _rps, "req/s", per_nginx=True),
        Goal("new-clients req/s ÷ nginx", "new-clients", _rps, "req/s", per_nginx=True),
        Goal("browser req/s ÷ nginx", "browser", _rps, "req/s", per_nginx=True),
        Goal(
            "c1 p50 added over direct",
            "c1-latency",
            lambda row: row.added_p50_ms,
            "ms",
            per_nginx=False,
        ),
        Goal(
            "idle KB per client",
            "idle-2000",
            lambda row: row.kb_per_idle_client,
            "KB",
            per_nginx=False,
        ),
        Goal("1 MB req/s ÷ nginx", "1mb", _rps, "req/s", per_nginx=True),
        Goal(
            f"p99 at c={connections} ÷ nginx (sticky)",
            "sticky",
            lambda row: row.p99_ms,
            "ms",
            per_nginx=True,
        ),
    )


@dataclass(frozen=True, slots=True)
class GoalResult:
    label: str
    scenario: str
    unit: str
    per_nginx: bool
    figures: dict[str, float]  # each proxy's own figure, in `unit`
    values: dict[str, float]  # what the goal compares: figure ÷ nginx's, or the figure itself


def targets_summary(rows: Sequence[Row], connections: int) -> list[GoalResult]:
    """Each goal for every proxy that ran its scenario (a ratio only where nginx ran it too)."""
    results = []
    for goal in goals(connections):
        figures = {}
        for row in rows:
            figure = goal.figure(row) if row.scenario == goal.scenario else None
            if row.target != DIRECT and figure is not None:
                figures[row.target] = figure
        nginx = figures.get(NGINX)
        if not goal.per_nginx:
            values = dict(figures)
        elif nginx:
            values = {target: figure / nginx for target, figure in figures.items()}
        else:
            values = {}
        results.append(
            GoalResult(goal.label, goal.scenario, goal.unit, goal.per_nginx, figures, values)
        )
    return results


def _figure_text(value: float, unit: str) -> str:
    if unit == "req/s":
        return f"{value:,.0f} req/s"
    return f"{value:.3f} ms" if unit == "ms" else f"{value:.1f} {unit}"


def targets_table(results: Sequence[GoalResult], proxies: Sequence[str]) -> str:
    """The goals as rows, the proxies as columns; nginx's own figure beside its 1.00."""
    lines = ["| target | " + " | ".join(proxies) + " |", "|" + "---|" * (len(proxies) + 1)]
    for result in results:
        cells = []
        for proxy in proxies:
            value = result.values.get(proxy)
            if value is None:
                cells.append("-")
            elif not result.per_nginx:
                cells.append(_figure_text(value, result.unit))
            elif proxy == NGINX:
                cells.append(f"1.00 ({_figure_text(result.figures[proxy], result.unit)})")
            else:
                cells.append(f"{value:.2f}")
        lines.append(f"| {result.label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_json(path: Path, document: dict[str, object]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=1, default=str) + "\n")

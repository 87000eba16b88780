"""The batch summary above the grid, for the runs the filters show: how many of each worst
health state (each a link that filters the grid to it), of each status, which need attention,
and the steps stops saved.

Computed from the same rows the grid shows (`view_rows`), so the summary and the grid never
disagree, and written into the page with the grid's other metadata (only when it changed).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace

from dash import dcc, html

from trainlight.app.grid.delta import ShownRow
from trainlight.app.url_state import GridState, grid_query
from trainlight.collectors.health.verdict import STATE_SHAPES, severity

STATUS_ORDER = ("running", "stale", "finished", "stopped", "crashed")
ATTENTION_SHOWN = 5  # names listed under "needs attention"


@dataclass(frozen=True)
class BatchSummary:
    runs: int
    by_state: tuple[tuple[str, int], ...]  # worst state -> runs, worst first
    by_status: tuple[tuple[str, int], ...]
    attention: tuple[tuple[str, str, str], ...]  # (run id, name, worst) red/amber, worst first
    stalled: int  # `progress` red
    saved_steps: int  # by stops and auto-prunes, where runs declared their length
    saved_hours: float  # the same at each run's own latest step rate, where it sampled one


def summarise(shown: Sequence[ShownRow]) -> BatchSummary:
    records = [r.record for r in shown]
    states = Counter(r["worst"] for r in records)
    statuses = Counter(r["status"] for r in records)
    by_state = sorted(states.items(), key=lambda kv: -severity(kv[0]))
    known = [s for s in STATUS_ORDER if statuses.get(s)]
    by_status = [(s, statuses[s]) for s in known + sorted(set(statuses) - set(known))]
    urgent = sorted(
        (r for r in records if r["worst"] in ("red", "amber")), key=lambda r: -severity(r["worst"])
    )  # stable: the grid's order within a state
    return BatchSummary(
        runs=len(records),
        by_state=tuple(by_state),
        by_status=tuple(by_status),
        attention=tuple((r["run_id"], r["name"], r["worst"]) for r in urgent),
        stalled=sum(r.get("h_progress") == "red" for r in records),
        saved_steps=sum(int(r.get("saved_steps") or 0) for r in records),
        saved_hours=sum(float(r.get("saved_hours") or 0.0) for r in records),
    )


def summary_component(summary: BatchSummary, state: GridState) -> html.Div:
    """Counts as links (a worst state: the grid filtered to it), statuses, attention list."""
    parts: list[html.Span | dcc.Link] = []
    for worst, count in summary.by_state:
        parts.append(
            dcc.Link(
                f"{STATE_SHAPES.get(worst, '○')} {count} {worst}",
                href="/" + grid_query(replace(state, states=(worst,), selected=())),
                className=f"summary-count summary-{worst}",
                id={"type": "summary-state", "state": worst},
            )
        )
    statuses = " · ".join(f"{count} {status}" for status, count in summary.by_status)
    facts = [statuses] if statuses else []
    if summary.stalled:
        facts.append(f"{summary.stalled} stalled")
    if summary.saved_steps:
        hours = f" (~{summary.saved_hours:,.1f} h)" if summary.saved_hours >= 0.05 else ""
        facts.append(f"{summary.saved_steps:,} steps{hours} saved by stops")
    children: list[html.Span | dcc.Link | html.Div] = [*parts]
    if facts:
        children.append(html.Span(" · ".join(facts), className="summary-facts"))
    if summary.attention:
        shown = summary.attention[:ATTENTION_SHOWN]
        more = len(summary.attention) - len(shown)
        links = [
            dcc.Link(f"{STATE_SHAPES[w]} {name}", href=f"/run/{run_id}", className=f"summary-{w}")
            for run_id, name, w in shown
        ]
        tail = [html.Span(f" and {more} more", className="muted")] if more > 0 else []
        children.append(
            html.Div([html.Span("Needs attention: ", className="muted"), *links, *tail],
                     className="summary-attention")
        )  # fmt: skip
    return html.Div(children, className="batch-summary")

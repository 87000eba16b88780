"""`/`: the list of runs with status, last step and last values (the first, plain view).

The layout is static; a timer callback fills the table from the same query the API uses, so the
page and `GET /api/v1/runs` can never disagree.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import dash
from dash import Input, Output, dcc, html

from trainlight.app.formatting import format_age, format_value
from trainlight.app.store.database import Store, utc_naive
from trainlight.app.store.queries import RunSummary, list_runs

PATH = "/"
REFRESH_MS = 5000
_MAX_VALUES_SHOWN = 4


def layout(**_query: Any) -> html.Div:
    return html.Div(
        [
            html.H1("Runs"),
            dcc.Interval(id="runs-refresh", interval=REFRESH_MS),
            html.Div(id="runs-table", children="Loading…"),
        ],
        className="page",
    )


def register(app: dash.Dash, store: Store, stale_after: timedelta) -> None:
    dash.register_page("trainlight.runs", path=PATH, name="Runs", title="trainlight", layout=layout)

    @app.callback(Output("runs-table", "children"), Input("runs-refresh", "n_intervals"))
    def refresh(_n: int | None) -> html.Table | html.P:
        now = utc_naive()
        with store.read() as cur:
            runs = list_runs(cur, now, stale_after)
        if not runs:
            return html.P(
                "No runs yet. Start a training script with trainlight.collectors.Monitor."
            )
        return runs_table(runs, now)


def runs_table(runs: list[RunSummary], now: Any) -> html.Table:
    header = html.Tr(
        [
            html.Th(h)
            for h in ("Run", "Project", "Group", "Status", "Last step", "Updated", "Values")
        ]
    )
    return html.Table(
        [html.Thead(header), html.Tbody([_row(r, now) for r in runs])], className="runs"
    )


def _row(run: RunSummary, now: Any) -> html.Tr:
    values = sorted(run.last_values.items())[:_MAX_VALUES_SHOWN]
    return html.Tr(
        [
            html.Td(run.name, title=run.run_id, className="run-name"),
            html.Td(run.project),
            html.Td(run.group),
            html.Td(run.status, className=f"status status-{run.status}"),
            html.Td("" if run.last_step is None else f"{run.last_step:,}"),
            html.Td(format_age(run.updated_at, now)),
            html.Td(", ".join(f"{k}={format_value(v)}" for k, v in values)),
        ],
        id={"type": "run-row", "run_id": run.run_id},
    )

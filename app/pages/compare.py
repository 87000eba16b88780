"""`/compare?runs=a,b,…`: several runs' scalar curves overlaid, and their LCA per layer.

Runs are named in the URL by id (ids are unique; names may repeat), shown by name. Unknown ids
are listed, not fatal: a comparison link keeps working when one of its runs is gone. The data is
one cached read (`store/read/compare_data.py`), keyed by the store's data version.
"""

from __future__ import annotations

from typing import Any

import dash
import duckdb
from dash import Input, Output, State, dcc, html

from trainlight.app.cache import cached_read
from trainlight.app.components.page import (
    controls_bar,
    register_view,
    smoothing_control,
    view_page,
)
from trainlight.app.figures.lca import compare_lca_figure
from trainlight.app.figures.scalars import overlay_figure
from trainlight.app.pages import PageDeps
from trainlight.app.store.database import utc_naive
from trainlight.app.store.read.compare_data import CompareData, load_compare
from trainlight.app.store.read.queries import RunSummary
from trainlight.app.store.read.series import empty_series
from trainlight.app.url_state import compare_query, parse_compare_view

PATH = "/compare"


def layout(**query: Any) -> html.Div:
    view = parse_compare_view(query)
    controls = [smoothing_control("compare-smooth", view.smooth, {0: "0", 0.9: "0.9"})]
    return view_page(
        "compare",
        [
            dcc.Store(id="compare-runs", data=list(view.runs)),
            html.H1("Compare runs"),
            controls_bar("compare", controls),
            html.Div(id="compare-body", children="Loading…"),
        ],
    )


def register(app: dash.Dash, deps: PageDeps) -> None:
    store, cache = deps.store, deps.cache
    register_view(
        app,
        "trainlight.compare",
        "compare",
        layout,
        name="Compare",
        title="trainlight compare",
        path=PATH,
    )

    @app.callback(
        Output("compare-body", "children"),
        Output("compare-query", "data"),
        Input("compare-smooth", "value"),
        State("compare-runs", "data"),
    )
    def render(smooth: float | None, run_ids: list[str]) -> tuple[Any, str]:
        if not run_ids:
            hint = "Name runs to compare in the URL: /compare?runs=<id>,<id>"
            return [html.P(hint, className="muted")], compare_query(run_ids, smooth)
        data = cached_read(cache, store, "compare", _load_now, tuple(run_ids), shared=True)
        return compare_impl(data, float(smooth or 0)), compare_query(run_ids, smooth)


def _load_now(cur: duckdb.DuckDBPyConnection, run_ids: tuple[str, ...]) -> CompareData:
    return load_compare(cur, run_ids, utc_naive())


def compare_impl(data: CompareData, smooth: float) -> list[Any]:
    """The run links, the missing ids, one overlay per key, and the LCA bars."""
    found = list(data.runs)
    graphs = [
        overlay_figure(
            key,
            [
                (_label(r, found), data.series[r.run_id].get(key) or empty_series(key))
                for r in found
            ],
            smooth=smooth,
        )
        for key in data.keys
    ]
    out: list[Any] = [
        html.Ul(
            [html.Li(dcc.Link(_label(r, found), href=f"/run/{r.run_id}")) for r in found],
            className="compare-runs",
        )
    ]
    if data.missing:
        missing = ", ".join(data.missing)
        out.append(html.P(f"Not in this store: {missing}", className="reason-amber"))
    out.append(
        html.Div(
            [dcc.Graph(figure=g, config={"displaylogo": False}) for g in graphs],
            className="graph-grid",
        )
    )
    totals = [(_label(r, found), data.lca_totals[r.run_id]) for r in found]
    if any(t for _, t in totals):
        figure = compare_lca_figure([t for t in totals if t[1]])
        out.append(dcc.Graph(figure=figure, config={"displaylogo": False}))
    return out


def _label(run: RunSummary, runs: list[RunSummary]) -> str:
    """The run's name, with its id when another compared run has the same name."""
    twins = sum(1 for r in runs if r.name == run.name)
    return run.name if twins == 1 else f"{run.name} ({run.run_id})"

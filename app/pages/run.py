"""`/run/<run_id>`: one run's header, its scalar curves and a panel per signal with the evidence.

The layout is a skeleton holding the view state parsed from the query (smoothing, step range);
one callback fills it. The step range can be typed or set by zooming any plot whose x axis is
the step; both go back into the URL, so a copied link shows the same view.

The page's data is one cached read (`store/read/run_data.py`, keyed by the store's data version, so
a new segment invalidates it). A render sends only what the browser lacks
(`components/run_refresh.py`): a refresh of an idle store sends nothing, a live run's refresh
patches the tails of its curves, a smoothing change resends only the smoothed arrays.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import dash
import duckdb
from dash import ALL, Input, Output, State, ctx, dcc, html
from flask_caching import Cache

from trainlight.app.cache import cached_read
from trainlight.app.components.beyond import beyond_sections
from trainlight.app.components.page import (
    controls_bar,
    register_view,
    smoothing_control,
    view_page,
)
from trainlight.app.components.run_body import GRAPH_TYPE, STEP_AXIS
from trainlight.app.components.run_refresh import run_update
from trainlight.app.pages import PageDeps
from trainlight.app.store.database import Store, utc_naive
from trainlight.app.store.read.beyond import load_beyond
from trainlight.app.store.read.run_data import RunPageData, load_run_page
from trainlight.app.store.read.series import StepRange
from trainlight.app.store.read.surfaces import cached_surface
from trainlight.app.url_state import parse_run_view, range_from_relayout, run_query

PATH = "/run/<run_id>"
REFRESH_MS = 10_000
GRAPHS = {"type": GRAPH_TYPE, "name": ALL, "axis": ALL}
NOTHING_BEYOND = "none"  # `run-beyond-version` while the run has no replicas/landscape/sizing


def layout(run_id: str = "", **query: Any) -> html.Div:
    view = parse_run_view(query)
    controls = [
        smoothing_control("run-smooth", view.smooth),
        _step_input("from step", "run-from", view.start, "first"),
        _step_input("to step", "run-to", view.end, "last"),
        html.Button("whole run", id="run-reset", className="button"),
    ]
    return view_page(
        "run",
        [
            dcc.Store(id="run-id", data=run_id),
            dcc.Store(id="run-version"),
            dcc.Store(id="run-sent"),
            dcc.Interval(id="run-refresh", interval=REFRESH_MS),
            html.Div(id="run-header", children="Loading…"),
            controls_bar("run", controls),
            html.Div(id="run-body"),
            dcc.Store(id="run-beyond-version"),
            html.Div(id="run-beyond"),
        ],
    )


def _step_input(label: str, id_: str, value: int | None, placeholder: str) -> html.Label:
    """One end of the step range: a labelled number box that commits on enter or blur."""
    box = dcc.Input(id=id_, type="number", value=value, debounce=True, placeholder=placeholder)
    return html.Label([label, box], className="control control-step")


def load(cache: Cache, store: Store, run_id: str, span: StepRange) -> RunPageData | None:
    """The page's data, cached while the store's data is unchanged (shared, not copied:
    the page only reads it)."""
    return cached_read(cache, store, "run_page", _load_now, run_id, span, shared=True)


def _load_now(cur: duckdb.DuckDBPyConnection, run_id: str, span: StepRange) -> RunPageData | None:
    now: datetime = utc_naive()  # staleness is relative to now; the cache's timeout bounds it
    return load_run_page(cur, run_id, span, now)


def register(app: dash.Dash, deps: PageDeps) -> None:
    register_view(
        app, "trainlight.run", "run", layout, name="Run", title="trainlight run", path_template=PATH
    )
    _wire_render(app, deps)
    _wire_beyond(app, deps)
    _wire_zoom(app)


def _wire_render(app: dash.Dash, deps: PageDeps) -> None:
    store, cache = deps.store, deps.cache

    @app.callback(
        Output("run-header", "children"),
        Output("run-body", "children"),
        Output(GRAPHS, "figure"),
        Output("run-query", "data"),
        Output("run-version", "data"),
        Output("run-sent", "data"),
        Input("run-smooth", "value"),
        Input("run-from", "value"),
        Input("run-to", "value"),
        Input("run-refresh", "n_intervals"),
        State("run-id", "data"),
        State("run-version", "data"),
        State("run-sent", "data"),
    )
    def render(
        smooth: float | None,
        start: int | None,
        end: int | None,
        _n: int | None,
        run_id: str,
        seen: int | None,
        sent: dict[str, Any] | None,
    ) -> tuple[Any, ...]:
        version = store.data_version
        if ctx.triggered_id == "run-refresh" and seen == version:
            raise dash.exceptions.PreventUpdate  # nothing was written anywhere since
        view = parse_run_view({"smooth": smooth, "from": start, "to": end})
        data = load(cache, store, run_id, StepRange(view.start, view.end))
        slots = [slot["id"]["name"] for slot in ctx.outputs_list[2]]
        update = run_update(data, view, run_id, sent, slots)
        return update.header, update.body, update.figures, run_query(view), version, update.sent


def _wire_beyond(app: dash.Dash, deps: PageDeps) -> None:
    store, cache = deps.store, deps.cache

    @app.callback(
        Output("run-beyond", "children"),
        Output("run-beyond-version", "data"),
        Input("run-refresh", "n_intervals"),
        State("run-id", "data"),
        State("run-beyond-version", "data"),
    )
    def render_beyond(_n: int | None, run_id: str, seen: str | None) -> tuple[Any, str]:
        """Replicas, landscape and layer sizing: redrawn only when the store's data or the
        run's surface file changed (the surface is not under the data version). A run with
        none of them answers nothing on refresh, so its live refreshes stay the curves' patch."""
        surface = cached_surface(cache, store.layout, run_id)
        version = f"{store.data_version}:{surface.stamp if surface else ''}"
        if seen == version:
            raise dash.exceptions.PreventUpdate
        data = cached_read(cache, store, "run_beyond", load_beyond, run_id, shared=True)
        sections = beyond_sections(data, surface, run_id)
        if not sections and seen == NOTHING_BEYOND:
            raise dash.exceptions.PreventUpdate
        return sections, version if sections else NOTHING_BEYOND


def _wire_zoom(app: dash.Dash) -> None:
    @app.callback(
        Output("run-from", "value"),
        Output("run-to", "value"),
        Input({"type": GRAPH_TYPE, "name": ALL, "axis": STEP_AXIS}, "relayoutData"),
        Input("run-reset", "n_clicks"),
        prevent_initial_call=True,
    )
    def zoom(_relayouts: list[Any], _reset: int | None) -> tuple[int | None, int | None]:
        if ctx.triggered_id == "run-reset":
            return None, None
        picked = range_from_relayout(ctx.triggered[0]["value"] if ctx.triggered else None)
        if picked is None:
            raise dash.exceptions.PreventUpdate
        return picked

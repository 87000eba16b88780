"""`/run/<run_id>`: one run's header, its scalar curves and a panel per signal with the evidence.

The layout is a skeleton holding the view state parsed from the query (smoothing, step range);
the callbacks, registered on the app that owns the store, fill it. The step range can be typed or
set by zooming any scalar plot; both go back into the URL, so a copied link shows the same view.
"""

from __future__ import annotations

from typing import Any

import dash
from dash import ALL, Input, Output, State, ctx, dcc, html

from trainlight.app.components.panels import run_header
from trainlight.app.components.run_body import scalars_section, signal_panels
from trainlight.app.components.share import not_found, register_share, share_controls
from trainlight.app.store.database import Store, utc_naive
from trainlight.app.store.queries import get_run
from trainlight.app.store.series import StepRange
from trainlight.app.viewstate import RunView, parse_run_view, range_from_relayout, run_query

PATH = "/run/<run_id>"
REFRESH_MS = 10_000


def layout(run_id: str = "", **query: Any) -> html.Div:
    if run_id.endswith("/lca"):  # Dash's "*" also matches "/": serve the heatmap page
        from trainlight.app.pages import lca

        return lca.layout(run_id=run_id.removesuffix("/lca"), **query)
    view = parse_run_view(query)
    controls = html.Div(
        [
            html.Label(
                [
                    "smoothing",
                    dcc.Slider(
                        id="run-smooth",
                        min=0,
                        max=0.99,
                        step=0.01,
                        value=view.smooth,
                        marks={0: "0", 0.5: "0.5", 0.9: "0.9", 0.99: "0.99"},
                        tooltip={"placement": "bottom"},
                        updatemode="mouseup",
                        allow_direct_input=False,
                    ),
                ],
                className="control control-wide",
            ),
            _step_input("from step", "run-from", view.start, "first"),
            _step_input("to step", "run-to", view.end, "last"),
            html.Button("whole run", id="run-reset", className="button"),
            *share_controls("run"),
        ],
        className="controls",
    )
    return html.Div(
        [
            dcc.Store(id="run-id", data=run_id),
            dcc.Store(id="run-version"),
            dcc.Interval(id="run-refresh", interval=REFRESH_MS),
            html.Div(id="run-header", children="Loading…"),
            controls,
            html.Div(id="run-body"),
        ],
        className="page run-page",
    )


def _step_input(label: str, id_: str, value: int | None, placeholder: str) -> html.Label:
    """One end of the step range: a labelled number box that commits on enter or blur."""
    box = dcc.Input(id=id_, type="number", value=value, debounce=True, placeholder=placeholder)
    return html.Label([label, box], className="control control-step")


def register(app: dash.Dash, store: Store) -> None:
    dash.register_page(
        "trainlight.run", path_template=PATH, name="Run", title="trainlight run", layout=layout
    )
    register_share(app, "run")

    @app.callback(
        Output("run-header", "children"),
        Output("run-body", "children"),
        Output("run-query", "data"),
        Output("run-version", "data"),
        Input("run-smooth", "value"),
        Input("run-from", "value"),
        Input("run-to", "value"),
        Input("run-refresh", "n_intervals"),
        State("run-id", "data"),
        State("run-version", "data"),
    )
    def render(
        smooth: float | None,
        start: int | None,
        end: int | None,
        _n: int | None,
        run_id: str,
        seen: int | None,
    ) -> tuple[Any, Any, str, int]:
        version = store.data_version
        if ctx.triggered_id == "run-refresh" and seen == version:
            raise dash.exceptions.PreventUpdate
        view = parse_run_view({"smooth": smooth, "from": start, "to": end})
        header, body = run_page_impl(store, run_id, view)
        return header, body, run_query(view), version

    @app.callback(
        Output("run-from", "value"),
        Output("run-to", "value"),
        Input({"type": "scalar", "key": ALL}, "relayoutData"),
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


def run_page_impl(store: Store, run_id: str, view: RunView) -> tuple[Any, Any]:
    """(header, body) of the page, or the not-found notice when the store lacks the run."""
    span = StepRange(view.start, view.end)
    with store.read() as cur:
        detail = get_run(cur, run_id, utc_naive())
        if detail is None:
            return not_found(run_id), None
        scalars = scalars_section(cur, run_id, view, span)
        panels = signal_panels(cur, run_id, view, span)
    return run_header(detail, f"/run/{run_id}/lca"), [scalars, panels]

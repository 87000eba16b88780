"""`/compare?runs=a,b,…`: several runs' scalar curves overlaid, and their LCA per layer.

Runs are named in the URL by id (ids are unique; names may repeat), shown by name. Unknown ids
are listed, not fatal: a comparison link keeps working when one of its runs is gone.
"""

from __future__ import annotations

from typing import Any

import dash
from dash import Input, Output, State, dcc, html

from trainlight.app.components.share import register_share, share_controls
from trainlight.app.figures.lca import compare_lca_figure
from trainlight.app.figures.scalars import overlay_figure
from trainlight.app.store.database import Store, utc_naive
from trainlight.app.store.queries import RunSummary, list_runs
from trainlight.app.store.series import layer_totals, scalar_keys, scalar_series
from trainlight.app.viewstate import compare_query, parse_compare_view

PATH = "/compare"
MAX_KEYS = 12


def layout(**query: Any) -> html.Div:
    view = parse_compare_view(query)
    return html.Div(
        [
            dcc.Store(id="compare-runs", data=list(view.runs)),
            html.H1("Compare runs"),
            html.Div(
                [
                    html.Label(
                        [
                            "smoothing",
                            dcc.Slider(
                                id="compare-smooth",
                                min=0,
                                max=0.99,
                                step=0.01,
                                value=view.smooth,
                                marks={0: "0", 0.9: "0.9"},
                                updatemode="mouseup",
                                allow_direct_input=False,
                            ),
                        ],
                        className="control control-wide",
                    ),
                    *share_controls("compare"),
                ],
                className="controls",
            ),
            html.Div(id="compare-body", children="Loading…"),
        ],
        className="page compare-page",
    )


def register(app: dash.Dash, store: Store) -> None:
    dash.register_page(
        "trainlight.compare", path=PATH, name="Compare", title="trainlight compare", layout=layout
    )
    register_share(app, "compare")

    @app.callback(
        Output("compare-body", "children"),
        Output("compare-query", "data"),
        Input("compare-smooth", "value"),
        State("compare-runs", "data"),
    )
    def render(smooth: float | None, run_ids: list[str]) -> tuple[Any, str]:
        return compare_impl(store, run_ids, float(smooth or 0)), compare_query(run_ids, smooth)


def compare_impl(store: Store, run_ids: list[str], smooth: float) -> list[Any]:
    if not run_ids:
        hint = "Name runs to compare in the URL: /compare?runs=<id>,<id>"
        return [html.P(hint, className="muted")]
    with store.read() as cur:
        runs = {r.run_id: r for r in list_runs(cur, utc_naive(), run_ids=run_ids)}
        found = [runs[r] for r in run_ids if r in runs]
        keys = sorted({k for r in found for k in scalar_keys(cur, r.run_id)})[:MAX_KEYS]
        graphs = [
            overlay_figure(
                key,
                [(_label(r, found), scalar_series(cur, r.run_id, key)) for r in found],
                smooth=smooth,
            )
            for key in keys
        ]
        totals = [(_label(r, found), layer_totals(cur, r.run_id, "lca")) for r in found]
    missing = [r for r in run_ids if r not in runs]
    out: list[Any] = [
        html.Ul(
            [html.Li(dcc.Link(_label(r, found), href=f"/run/{r.run_id}")) for r in found],
            className="compare-runs",
        )
    ]
    if missing:
        out.append(html.P(f"Not in this store: {', '.join(missing)}", className="reason-amber"))
    out.append(
        html.Div(
            [dcc.Graph(figure=g, config={"displaylogo": False}) for g in graphs],
            className="graph-grid",
        )
    )
    if any(t for _, t in totals):
        out.append(
            dcc.Graph(
                figure=compare_lca_figure([t for t in totals if t[1]]),
                config={"displaylogo": False},
            )
        )
    return out


def _label(run: RunSummary, runs: list[RunSummary]) -> str:
    """The run's name, with its id when another compared run has the same name."""
    twins = sum(1 for r in runs if r.name == run.name)
    return run.name if twins == 1 else f"{run.name} ({run.run_id})"

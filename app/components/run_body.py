"""The run page's body: scalar curves, then one panel per signal with its evidence plot.

Reads the store through the series queries and draws with the pure figure functions; the page
module only wires callbacks around it.
"""

from __future__ import annotations

from typing import Any

import duckdb
import plotly.graph_objects as go
from dash import dcc, html

from trainlight.app.components.panels import nonfinite_table, signal_panel
from trainlight.app.figures.lca import lca_layers_figure
from trainlight.app.figures.scalars import scalar_figure
from trainlight.app.figures.signals import dead_figure, runaway_figure
from trainlight.app.store.series import (
    CatchMarks,
    HealthChange,
    StepRange,
    catch_marks,
    health_history,
    layer_series,
    layer_totals,
    run_roles,
    scalar_keys,
    scalar_series,
)
from trainlight.app.viewstate import RunView
from trainlight.collectors.health.verdict import SIGNALS

MAX_SCALAR_PLOTS = 12


def scalars_section(
    cur: duckdb.DuckDBPyConnection, run_id: str, view: RunView, span: StepRange
) -> html.Section:
    keys = scalar_keys(cur, run_id)[:MAX_SCALAR_PLOTS]
    marks = catch_marks(cur, run_id)
    revision = f"{run_id}:{span.start}:{span.end}"
    graphs = [
        dcc.Graph(
            id={"type": "scalar", "key": key},
            figure=scalar_figure(
                scalar_series(cur, run_id, key, span),
                smooth=view.smooth,
                marks=marks,
                uirevision=f"{revision}:{key}",
            ),
            config={"displaylogo": False},
            className="scalar-graph",
        )
        for key in keys
    ]
    note = html.P("Zoom a plot to select a step range (double-click resets).", className="help")
    body: list[Any] = list(graphs) or [html.P("No scalars logged yet.", className="muted")]
    return html.Section(
        [html.H2("Scalars"), note, html.Div(body, className="graph-grid")],
        className="panel scalars",
    )


def signal_panels(
    cur: duckdb.DuckDBPyConnection, run_id: str, view: RunView, span: StepRange
) -> html.Div:
    history = health_history(cur, run_id)
    by_signal: dict[str, list[HealthChange]] = {}
    for change in history:
        by_signal.setdefault(change.signal, []).append(change)
    signals = list(SIGNALS) + sorted(set(by_signal) - set(SIGNALS))
    revision = f"{run_id}:{span.start}:{span.end}"
    panels = []
    for signal in signals:
        figures, extra = _evidence(cur, run_id, signal, view, span, revision)
        panels.append(signal_panel(signal, by_signal.get(signal, []), figures, extra))
    return html.Div(panels, className="panels")


def _evidence(
    cur: duckdb.DuckDBPyConnection,
    run_id: str,
    signal: str,
    view: RunView,
    span: StepRange,
    revision: str,
) -> tuple[list[go.Figure], html.Div | None]:
    if signal == "catch":
        return _catch(cur, run_id, view, span, revision), None
    if signal == "runaway":
        distance = scalar_series(cur, run_id, "runaway/distance", span)
        if not distance.count:
            return [], None
        critical = scalar_series(cur, run_id, "runaway/critical", span)
        return [
            runaway_figure(distance, critical, smooth=view.smooth, uirevision=f"{revision}:runaway")
        ], None
    if signal == "dead_relu":
        dead = layer_series(cur, run_id, "dead_frac", span)
        if not dead:
            return [], None
        undead = layer_series(cur, run_id, "undead", span)
        return [dead_figure(dead, undead, uirevision=f"{revision}:dead")], None
    if signal == "lca":
        return _lca(cur, run_id, span, revision)
    if signal == "nonfinite":
        rows = []
        for key in scalar_keys(cur, run_id):
            series = scalar_series(cur, run_id, key, span, buckets=1)
            if series.nonfinite:
                rows.append((key, *series.nonfinite[0]))
        return [], nonfinite_table(rows)
    return [], None


def _catch(
    cur: duckdb.DuckDBPyConnection, run_id: str, view: RunView, span: StepRange, revision: str
) -> list[go.Figure]:
    roles = run_roles(cur, run_id)
    marks: CatchMarks = catch_marks(cur, run_id)
    figures = []
    for role in ("content", "adversary", "gradient_penalty"):
        key = roles.get(role)
        if key:
            series = scalar_series(cur, run_id, key, span)
            figures.append(
                scalar_figure(
                    series,
                    smooth=view.smooth,
                    marks=marks,
                    title=f"{role}: {key}",
                    uirevision=f"{revision}:{key}",
                )
            )
    return figures


def _lca(
    cur: duckdb.DuckDBPyConnection, run_id: str, span: StepRange, revision: str
) -> tuple[list[go.Figure], html.Div | None]:
    totals = layer_totals(cur, run_id, "lca")
    if not totals:
        return [], None
    cumulative = layer_series(cur, run_id, "lca", span, cumulative=True)
    helping = layer_series(cur, run_id, "lca_helping", span)
    figure = lca_layers_figure(totals, cumulative, helping, uirevision=f"{revision}:lca")
    link = html.Div(
        dcc.Link("Open the animated LCA heatmap →", href=f"/run/{run_id}/lca"),
        className="panel-link",
    )
    return [figure], link

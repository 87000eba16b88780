"""The run page's body: scalar curves, then one panel per signal with its evidence.

Built from the page's data (`store/read/run_data.py`) and its figures (`figures/run_page.py`). Every
plot is a `dcc.Graph` whose id names its figure (`graph_id`), so a live refresh can leave the
body alone and update only the figures that changed. `component_digest` of the body
without its figures fingerprints it: when it is unchanged, the refresh does exactly that.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from dash import dcc, html
from plotly.io.json import to_json_plotly

from trainlight.app.components.panels import alerts_section, nonfinite_table, signal_panel
from trainlight.app.figures.run_page import NamedFigure, RunFigures
from trainlight.app.figures.style import Figure
from trainlight.app.store.read.run_data import RunPageData
from trainlight.app.store.read.series import HealthChange
from trainlight.app.url_state import heatmap_href
from trainlight.collectors.health.registry import signal_names

GRAPH_TYPE = "run-graph"
STEP_AXIS, OTHER_AXIS = "step", "other"


def graph_id(figure: NamedFigure) -> dict[str, str]:
    """The graph's id: its figure's name, and whether its x axis is the step axis (zoomable)."""
    return {
        "type": GRAPH_TYPE,
        "name": figure.name,
        "axis": STEP_AXIS if figure.zoom else OTHER_AXIS,
    }


def run_body(
    data: RunPageData, figures: RunFigures, run_id: str, *, with_figures: bool = True
) -> html.Div:
    """Scalars section and signal panels; without figures, the skeleton `body_digest` hashes."""

    def graphs(found: tuple[NamedFigure, ...], class_name: str = "") -> list[dcc.Graph]:
        return [
            dcc.Graph(
                id=graph_id(f),
                figure=f.figure if with_figures else None,
                config={"displaylogo": False},
                className=class_name,
            )
            for f in found
        ]

    return html.Div(
        [
            _scalars(graphs(figures.scalars, "scalar-graph")),
            _panels(data, {s: graphs(f) for s, f in figures.evidence.items()}, run_id),
            alerts_section(data.alerts),
        ]
    )


def component_digest(component: Any) -> str:
    """A fingerprint of a component tree as the browser would receive it."""
    return hashlib.blake2b(to_json_plotly(component).encode(), digest_size=16).hexdigest()


def figures_by_name(figures: RunFigures) -> Mapping[str, Figure]:
    return {f.name: f.figure for f in figures.all()}


def _scalars(graphs: list[dcc.Graph]) -> html.Section:
    note = html.P("Zoom a plot to select a step range (double-click resets).", className="help")
    body: list[Any] = list(graphs) or [html.P("No scalars logged yet.", className="muted")]
    return html.Section(
        [html.H2("Scalars"), note, html.Div(body, className="graph-grid")],
        className="panel scalars",
    )


def _panels(data: RunPageData, graphs: Mapping[str, list[dcc.Graph]], run_id: str) -> html.Div:
    by_signal: dict[str, list[HealthChange]] = {}
    for change in data.history:
        by_signal.setdefault(change.signal, []).append(change)
    known = signal_names()
    signals = [*known, *sorted(set(by_signal) - set(known))]
    panels = []
    for signal in signals:
        extra: html.Div | None = None
        if signal == "nonfinite":
            extra = nonfinite_table(data.nonfinite)
        elif signal == "lca" and data.lca_totals:
            extra = html.Div(
                dcc.Link("Open the animated LCA heatmap →", href=heatmap_href(run_id)),
                className="panel-link",
            )
        panels.append(
            signal_panel(
                signal,
                by_signal.get(signal, []),
                graphs.get(signal, []),
                data.judging.settings,
                extra,
            )
        )
    return html.Div(panels, className="panels")

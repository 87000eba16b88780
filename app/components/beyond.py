"""The run page's panels beyond the per-signal ones: reproducibility between replicas, the loss
landscape, and layer sizing. Each panel appears only when the run recorded its data, and looks
like the signal panels (components/panels.py, assets/run.css).

The repro panel's badge is the `repro` rule applied to the latest matched step of every mate,
so the panel and the badge agree on what they judge.
"""

from __future__ import annotations

from collections.abc import Sequence

from dash import dcc, html
from dash.development.base_component import Component

from trainlight.app.components.panels import badge
from trainlight.app.figures.landscape import sharpness_figure, slice_animation, surface_contour
from trainlight.app.figures.layer_sizing import near_zero_note, variance_heatmap
from trainlight.app.figures.repro import pd_figure
from trainlight.app.figures.style import Figure
from trainlight.app.store.read.beyond import BeyondData
from trainlight.app.store.read.surfaces import StoredSurface
from trainlight.collectors.health.rules.repro import ReproRule

REPRO_HELP = (
    "Replicas (other runs of this group, same probe examples) compared at the steps both "
    "recorded, each figure with a 5–95% bootstrap band over examples: absolute prediction "
    "difference (mean of ½ Σ|p₁−p₂| over classes), relative prediction difference "
    "|p₁−p₂| / ((p₁+p₂)/2) on the true label's probability (the top class's without labels; "
    "judged against the budget), and the share of examples whose top class differs."
)
LANDSCAPE_HELP = (
    "The probe loss along the run's random direction, filter-normalised to the weights of "
    "each recorded step, through those weights (press play or drag the slider). Sharpness is "
    "its curvature at the weights."
)
SURFACE_HELP = "Computed offline by `trainlight landscape` from a checkpoint"
SIZING_HELP = (
    "How many units of each watched layer have an activation variance in each bin, per "
    "window. Many units in the bottom (near-zero) row suggest the layer is larger than the "
    "task needs: informational, not a verdict."
)


def beyond_sections(
    data: BeyondData, surface: StoredSurface | None, run_id: str
) -> list[Component]:
    """The panels the run has data for, in page order (possibly none)."""
    sections: list[Component] = []
    if data.replicas:
        sections.append(repro_panel(data, run_id))
    if data.slices is not None or surface is not None:
        sections.append(landscape_panel(data, surface, run_id))
    if data.histograms:
        sections.append(sizing_panel(data, run_id))
    return sections


def repro_panel(data: BeyondData, run_id: str) -> html.Section:
    latest = {s.mate.name: s.latest for s in data.replicas if s.latest is not None}
    step = max((r.step for r in latest.values()), default=None)
    verdict = ReproRule(data.repro_budget).evaluate(latest, step)
    figure = pd_figure(data.replicas, data.repro_budget, f"repro-{run_id}")
    return _panel(
        "Reproducibility (replicas)",
        "repro",
        verdict.state,
        [
            html.P(verdict.reason, className=f"reason reason-{verdict.state}"),
            html.P(REPRO_HELP, className="help"),
        ],
        [_graph("beyond-repro", figure)],
    )


def landscape_panel(data: BeyondData, surface: StoredSurface | None, run_id: str) -> html.Section:
    graphs = []
    if data.slices is not None and data.slices.steps:
        graphs.append(_graph("beyond-slice", slice_animation(data.slices, f"slice-{run_id}")))
        if data.slices.sharpness_steps:
            sharp = sharpness_figure(data.slices, f"sharp-{run_id}")
            graphs.append(_graph("beyond-sharpness", sharp))
    notes = [html.P(LANDSCAPE_HELP, className="help")]
    if surface is not None:
        graphs.append(_graph("beyond-surface", surface_contour(surface, f"surface-{run_id}")))
        when = f", {surface.created_at[:19].replace('T', ' ')} UTC" if surface.created_at else ""
        notes.append(html.P(f"{SURFACE_HELP} ({surface.checkpoint}{when}).", className="help"))
    return _panel("Loss landscape", "landscape", "info", notes, graphs)


def sizing_panel(data: BeyondData, run_id: str) -> html.Section:
    hints = [html.Li(f"{h.layer}: {note}") for h in data.histograms if (note := near_zero_note(h))]
    graphs = [
        _graph(f"beyond-sizing-{i}", variance_heatmap(h, f"sizing-{run_id}-{h.layer}"))
        for i, h in enumerate(data.histograms)
    ]
    notes: list[Component] = [html.P(SIZING_HELP, className="help")]
    if hints:
        notes.append(html.Ul(hints, className="sizing-hints"))
    return _panel("Layer sizing", "sizing", "info", notes, graphs)


def _panel(
    title: str, name: str, state: str, notes: Sequence[Component], graphs: Sequence[dcc.Graph]
) -> html.Section:
    heading = [html.H2(title)] + ([badge(state)] if name == "repro" else [])
    return html.Section(
        [
            html.Div(heading, className="panel-title"),
            *notes,
            html.Div(list(graphs), className="graph-grid") if len(graphs) > 1 else None,
            graphs[0] if len(graphs) == 1 else None,
        ],
        className=f"panel panel-{state} panel-beyond",
        id=f"panel-{name}",
    )


def _graph(id_: str, figure: Figure) -> dcc.Graph:
    return dcc.Graph(id=id_, figure=figure, config={"displaylogo": False})

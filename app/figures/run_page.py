"""Every figure of the run page, from the page's data: pure, named, in page order.

Names are stable across refreshes (`scalar:loss`, `runaway:cdf`, …): the page keys its graphs by
them, so a refresh can patch each figure in place. `zoom` marks the figures whose x axis is
the step axis, the ones whose zoom selects the page's step range.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from trainlight.app.figures.gradients import gradient_figures
from trainlight.app.figures.lca import lca_layers_figure
from trainlight.app.figures.overfit import overfit_figure
from trainlight.app.figures.progress import progress_figure, system_figure
from trainlight.app.figures.scalars import scalar_figure
from trainlight.app.figures.signals import dead_figure, distribution_figure, runaway_figure
from trainlight.app.figures.spikes import spike_figure
from trainlight.app.figures.style import Figure
from trainlight.app.store.read.run_data import RunPageData
from trainlight.app.url_state import RunView
from trainlight.collectors.health.rules.spike import main_loss_key
from trainlight.collectors.wire import (
    DEAD_FRAC,
    GRAD_NORM,
    PARAM_COUNT,
    RUNAWAY_CRITICAL,
    RUNAWAY_DISTANCE,
    UNDEAD,
    UPDATE_RATIO,
)

CATCH_ROLES = ("content", "adversary", "gradient_penalty")


@dataclass(frozen=True, eq=False)
class NamedFigure:
    name: str
    figure: Figure
    zoom: bool  # x is the step axis: zooming it picks the page's step range


@dataclass(frozen=True, eq=False)
class RunFigures:
    scalars: tuple[NamedFigure, ...]
    evidence: dict[str, tuple[NamedFigure, ...]]  # signal -> its evidence plots

    def all(self) -> tuple[NamedFigure, ...]:
        return self.scalars + tuple(f for figs in self.evidence.values() for f in figs)


def run_figures(data: RunPageData, view: RunView, run_id: str) -> RunFigures:
    revision = f"{run_id}:{view.start}:{view.end}"  # a new range resets zoom; a refresh does not
    scalars = tuple(
        NamedFigure(
            f"scalar:{key}",
            scalar_figure(
                data.scalars[key],
                smooth=view.smooth,
                marks=data.marks,
                uirevision=f"{revision}:{key}",
            ),
            zoom=True,
        )
        for key in data.plotted_keys
        if key in data.scalars
    )
    evidence = {signal: build(data, view, revision) for signal, build in _EVIDENCE.items()}
    return RunFigures(scalars, {k: v for k, v in evidence.items() if v})


EvidenceBuilder = Callable[[RunPageData, RunView, str], tuple[NamedFigure, ...]]
_EVIDENCE: dict[str, EvidenceBuilder] = {}


def evidence_for(signal: str) -> Callable[[EvidenceBuilder], EvidenceBuilder]:
    """Register the function that draws `signal`'s evidence on the run page (its panel shows
    what it returns; nothing: no plot)."""

    def register(build: EvidenceBuilder) -> EvidenceBuilder:
        _EVIDENCE[signal] = build
        return build

    return register


def forget_evidence(signal: str) -> None:
    _EVIDENCE.pop(signal, None)


@evidence_for("catch")
def _catch(data: RunPageData, view: RunView, revision: str) -> tuple[NamedFigure, ...]:
    out = []
    for role in CATCH_ROLES:
        key = data.judging.roles.get(role)
        if key and key in data.scalars:
            fig = scalar_figure(
                data.scalars[key],
                smooth=view.smooth,
                marks=data.marks,
                title=f"{role}: {key}",
                uirevision=f"{revision}:{key}",
            )
            out.append(NamedFigure(f"catch:{role}", fig, zoom=True))
    return tuple(out)


@evidence_for("runaway")
def _runaway(data: RunPageData, view: RunView, revision: str) -> tuple[NamedFigure, ...]:
    out = []
    distance = data.runaway.get(RUNAWAY_DISTANCE)
    if distance is not None and distance.count:
        fig = runaway_figure(
            distance,
            data.runaway.get(RUNAWAY_CRITICAL),
            smooth=view.smooth,
            uirevision=f"{revision}:runaway",
        )
        out.append(NamedFigure("runaway:distance", fig, zoom=True))
    if data.reference is not None or data.generated is not None:
        fig = distribution_figure(
            None if data.reference is None else data.reference.values,
            None if data.generated is None else data.generated.values,
            generated_step=None if data.generated is None else data.generated.step,
            uirevision=f"{revision}:runaway-cdf",
        )
        out.append(NamedFigure("runaway:cdf", fig, zoom=False))
    return tuple(out)


@evidence_for("dead_relu")
def _dead(data: RunPageData, _view: RunView, revision: str) -> tuple[NamedFigure, ...]:
    dead = data.layers.get(DEAD_FRAC, ())
    if not dead:
        return ()
    fig = dead_figure(
        dead,
        data.layers.get(UNDEAD, ()),
        settings=data.judging.settings,
        uirevision=f"{revision}:dead",
    )
    return (NamedFigure("dead_relu", fig, zoom=False),)


@evidence_for("lca")
def _lca(data: RunPageData, _view: RunView, revision: str) -> tuple[NamedFigure, ...]:
    if not data.lca_totals:
        return ()
    fig = lca_layers_figure(
        data.lca_totals,
        data.layers.get("lca", ()),
        data.layers.get("lca_helping", ()),
        uirevision=f"{revision}:lca",
    )
    return (NamedFigure("lca", fig, zoom=False),)


@evidence_for("spike")
def _spike(data: RunPageData, view: RunView, revision: str) -> tuple[NamedFigure, ...]:
    loss = data.scalars.get(main_loss_key(data.judging.roles))
    if loss is None or not data.spikes:  # no spike: the loss's own plot says it all
        return ()
    fig = spike_figure(loss, data.spikes, smooth=view.smooth, uirevision=f"{revision}:spike")
    return (NamedFigure("spike", fig, zoom=True),)


@evidence_for("gradients")
def _gradients(data: RunPageData, _view: RunView, revision: str) -> tuple[NamedFigure, ...]:
    grads = data.layers.get(GRAD_NORM, ())
    if not grads:
        return ()
    norms, ratios = gradient_figures(
        grads,
        data.layers.get(UPDATE_RATIO, ()),
        data.layers.get(PARAM_COUNT, ()),
        data.judging.settings,
        f"{revision}:gradients",
    )
    named = [NamedFigure("gradients:norm", norms, zoom=True)]
    if ratios is not None:
        named.append(NamedFigure("gradients:ratio", ratios, zoom=True))
    return tuple(named)


@evidence_for("progress")
def _progress(data: RunPageData, _view: RunView, revision: str) -> tuple[NamedFigure, ...]:
    clock = data.clock
    if not clock.stalls and not clock.slowdowns:  # steady: nothing to explain
        return ()
    fig = progress_figure(clock, uirevision=f"{revision}:progress")
    named = [NamedFigure("progress", fig, zoom=True)]
    system = system_figure(clock, uirevision=f"{revision}:system")
    if system is not None:
        named.append(NamedFigure("progress:system", system, zoom=True))
    return tuple(named)


@evidence_for("overfit")
def _overfit(data: RunPageData, view: RunView, revision: str) -> tuple[NamedFigure, ...]:
    val = data.scalars.get(data.val_loss_key or "")
    if val is None or not data.overfits:  # never rising: the losses' own plots say it all
        return ()
    train = data.scalars.get(main_loss_key(data.judging.roles))
    fig = overfit_figure(
        train, val, data.overfits, smooth=view.smooth, uirevision=f"{revision}:overfit"
    )
    return (NamedFigure("overfit", fig, zoom=True),)

"""What one render of the run page sends: the whole body, or only what changed in its figures.

The browser keeps `sent` (a `dcc.Store`): digests of the header and of the body's skeleton, and
a memo per figure (`figures/patching.py`). A render whose skeleton is unchanged (same graphs,
same verdicts, same tables) leaves the body alone and answers each graph with nothing, a
`Patch` of the arrays that changed (a live curve's new tail), or its whole figure. Anything else
(first load, a graph added, a verdict changed) sends the body with every figure in it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import dash
import numpy.typing as npt

from trainlight.app.components.panels import run_header
from trainlight.app.components.run_body import component_digest, figures_by_name, run_body
from trainlight.app.components.share import not_found
from trainlight.app.figures.patching import FigurePlan, memo, plan
from trainlight.app.figures.run_page import run_figures
from trainlight.app.figures.style import Figure
from trainlight.app.store.read.run_data import RunPageData
from trainlight.app.url_state import RunView, heatmap_href


@dataclass(frozen=True, eq=False)
class RunUpdate:
    header: Any
    body: Any
    figures: list[Any]  # one per graph on the page now (`slots`): no_update, Patch or figure
    sent: dict[str, Any]


def run_update(
    data: RunPageData | None,
    view: RunView,
    run_id: str,
    sent: Mapping[str, Any] | None,
    slots: Sequence[str],
) -> RunUpdate:
    """The outputs of one render, given what the browser holds (`sent`; None: nothing yet)."""
    unchanged = [dash.no_update] * len(slots)
    if data is None:
        return RunUpdate(not_found(run_id), None, unchanged, {})
    figures = run_figures(data, view, run_id)
    header = run_header(data.detail, heatmap_href(run_id) if data.lca_totals else None)
    header_digest = component_digest(header)
    skeleton = component_digest(run_body(data, figures, run_id, with_figures=False))
    named = figures_by_name(figures)
    sent = sent or {}
    new_header = dash.no_update if sent.get("header") == header_digest else header
    if sent.get("body") != skeleton:
        memos = {name: memo(fig) for name, fig in named.items()}
        body = run_body(data, figures, run_id)
        return RunUpdate(new_header, body, unchanged, _sent(header_digest, skeleton, memos))
    known = sent.get("figures") or {}
    plans = {name: plan(known.get(name), fig) for name, fig in named.items()}
    outputs = [_output(plans[s], named[s]) if s in plans else dash.no_update for s in slots]
    memos = {name: p.memo for name, p in plans.items()}
    return RunUpdate(new_header, dash.no_update, outputs, _sent(header_digest, skeleton, memos))


def to_patch(figure_plan: FigurePlan) -> dash.Patch:
    """The plan's array edits as a Patch of `figure.data[i][field]`."""
    patch = dash.Patch()
    for edit in figure_plan.edits:
        target = patch["data"][edit.trace]
        values = _sendable(edit.values)
        if edit.start is None:
            target[edit.field] = values
        else:
            target[edit.field][edit.start] = values[0]
            if len(values) > 1:
                target[edit.field].extend(list(values[1:]))
    return patch


def _sendable(values: npt.NDArray[Any]) -> Any:
    """Numbers stay numpy (orjson writes them directly); text goes as a list of str."""
    return values.tolist() if values.dtype.kind in "USO" else values


def _output(figure_plan: FigurePlan, figure: Figure) -> Any:
    if figure_plan.kind == "same":
        return dash.no_update
    if figure_plan.kind == "full":
        return figure
    return to_patch(figure_plan)


def _sent(header: str, body: str, memos: dict[str, Any]) -> dict[str, Any]:
    return {"header": header, "body": body, "figures": memos}

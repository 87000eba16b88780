"""`/lca/<run_id>`: the animated LCA heatmap (play/pause, step slider, layer, side by side).

The slider runs over the layer's frame indices; the URL holds the real step, so a link still
points at the same moment after more frames arrive. Each tick fetches only the frame(s) at the
new step, as 8-bit codes against the colour scale (`figures/heatmap_codec.py`: ~7 KB a tick for
a 64×64 frame, was 24 KB as a float32 figure), which the browser decodes into graphs the server
builds once per set of layers shown (`components/heatmaps.py`). The colour scale is fixed per
layer (99th percentile of |LCA| over its frames) so colours compare across steps. Layers, steps,
frames and scales are cached reads keyed by the store's data version, so a looping animation
reads the store once per frame, not once per tick.
"""

from __future__ import annotations

from typing import Any

import dash
import duckdb
from dash import Input, Output, State, dcc, html
from flask import redirect, request
from flask_caching import Cache
from werkzeug.wrappers import Response

from trainlight.app.cache import cached_read
from trainlight.app.components.heatmaps import (
    FRAMES_STORE,
    graphs_key,
    heatmap_graphs,
    register_heatmap_client,
)
from trainlight.app.components.page import controls_bar, register_view, view_page
from trainlight.app.components.share import not_found
from trainlight.app.figures.heatmap_codec import quantise
from trainlight.app.figures.lca import heatmap_title
from trainlight.app.pages import PageDeps
from trainlight.app.store.database import Store
from trainlight.app.store.read.frames import frame_layers, frame_scale, frame_steps, lca_frame
from trainlight.app.url_state import (
    LcaView,
    heatmap_href,
    lca_query,
    nearest_index,
    parse_lca_view,
)

PATH = "/lca/<run_id>"
OLD_PATH = "/run/<run_id>/lca"  # until release 21; redirects
TICK_MS = 700
MAX_MARKS = 8


def layout(run_id: str = "", **query: Any) -> html.Div:
    view = parse_lca_view(query)
    return view_page(
        "lca",
        [
            dcc.Store(id="lca-run", data=run_id),
            dcc.Store(id="lca-wanted-step", data=view.step),
            dcc.Store(id="lca-wanted-layer", data=view.layer),
            dcc.Store(id="lca-steps", data=[]),
            dcc.Store(id=FRAMES_STORE),  # this tick's frames, decoded in the browser
            dcc.Store(id="lca-shown"),  # what the graphs on the page were built for
            dcc.Interval(id="lca-tick", interval=TICK_MS, disabled=not view.playing),
            html.Div(
                [
                    html.H1(["LCA heatmap · ", dcc.Link(run_id, href=f"/run/{run_id}")]),
                    html.P(
                        "Green cells helped lower the probe loss, red cells raised it; dark grey "
                        "cells are NaN or ±Inf. Values are sent 8-bit against the colour scale "
                        "(hover shows ≈ value; cells beyond the scale keep their exact value).",
                        className="help",
                    ),
                ],
                id="lca-title",
            ),
            _controls(view),
            html.Div(
                [
                    dcc.Slider(
                        id="lca-slider",
                        min=0,
                        max=0,
                        step=1,
                        value=0,
                        marks={},
                        updatemode="drag",
                        allow_direct_input=False,
                    ),
                    html.Span(id="lca-step-label", className="step-label"),
                ],
                className="slider-row",
            ),
            html.Div(id="lca-figure", className="lca-figure"),
        ],
    )


def _controls(view: LcaView) -> html.Div:
    return controls_bar(
        "lca",
        [
            html.Button(
                "⏸ pause" if view.playing else "▶ play",
                id="lca-play",
                className="button play",
            ),
            html.Label(
                [
                    "layer",
                    dcc.Dropdown(id="lca-layer", value=None, clearable=False, options=[]),
                ],
                className="control control-layer",
            ),
            dcc.Checklist(
                id="lca-all",
                options=[{"label": " all layers side by side", "value": "all"}],
                value=["all"] if view.all_layers else [],
                className="control",
            ),
        ],
    )


def register(app: dash.Dash, deps: PageDeps) -> None:
    store, cache = deps.store, deps.cache
    register_view(
        app,
        "trainlight.lca",
        "lca",
        layout,
        name="LCA heatmap",
        title="trainlight LCA",
        path_template=PATH,
    )
    app.server.add_url_rule(OLD_PATH, "lca_moved", _moved)
    _wire_layers(app, store, cache)
    _wire_steps(app, store, cache)
    register_heatmap_client(app, slider="lca-slider", tick="lca-tick", steps="lca-steps")
    _wire_play(app)
    _wire_render(app, store, cache)


def _moved(run_id: str) -> Response:
    """Links to the heatmap's old address (which `/run/<id>` also matched) still open it."""
    query = request.query_string.decode("latin-1")
    return redirect(heatmap_href(run_id) + (f"?{query}" if query else ""), code=301)


def _wire_layers(app: dash.Dash, store: Store, cache: Cache) -> None:
    @app.callback(
        Output("lca-layer", "options"),
        Output("lca-layer", "value"),
        Output("lca-title", "children"),
        Input("lca-run", "data"),
        State("lca-wanted-layer", "data"),
    )
    def layers(run_id: str, wanted: str | None) -> tuple[list[str], str | None, Any]:
        known, found = cached_read(cache, store, "lca_layers", _known_layers, run_id)
        if not known:
            return [], None, not_found(run_id)
        if not found:
            return [], None, _no_frames(run_id)
        return list(found), wanted if wanted in found else found[0], dash.no_update


def _no_frames(run_id: str) -> html.Div:
    return html.Div(
        [
            html.H1(["LCA heatmap · ", dcc.Link(run_id, href=f"/run/{run_id}")]),
            html.P(
                "This run has no LCA frames: measure them with mon.lca(model, probe_loss).",
                className="muted",
            ),
        ]
    )


def _wire_steps(app: dash.Dash, store: Store, cache: Cache) -> None:
    @app.callback(
        Output("lca-steps", "data"),
        Output("lca-slider", "max"),
        Output("lca-slider", "marks"),
        Output("lca-slider", "value"),
        Input("lca-layer", "value"),
        State("lca-run", "data"),
        State("lca-steps", "data"),
        State("lca-slider", "value"),
        State("lca-wanted-step", "data"),
    )
    def steps(
        layer: str | None, run_id: str, old: list[int], index: int | None, wanted: int | None
    ) -> tuple[list[int], int, dict[int, str], int]:
        if layer is None:
            raise dash.exceptions.PreventUpdate
        found = list(cached_read(cache, store, "lca_steps", frame_steps, run_id, layer))
        keep = old[index] if old and index is not None and index < len(old) else wanted
        return found, max(len(found) - 1, 0), slider_marks(found), nearest_index(found, keep)


def _wire_play(app: dash.Dash) -> None:
    @app.callback(
        Output("lca-tick", "disabled"),
        Output("lca-play", "children"),
        Input("lca-play", "n_clicks"),
        State("lca-tick", "disabled"),
        prevent_initial_call=True,
    )
    def play(_n: int, disabled: bool) -> tuple[bool, str]:
        return (not disabled), ("⏸ pause" if disabled else "▶ play")


def _wire_render(app: dash.Dash, store: Store, cache: Cache) -> None:
    @app.callback(
        Output("lca-figure", "children"),
        Output("lca-shown", "data"),
        Output(FRAMES_STORE, "data"),
        Output("lca-step-label", "children"),
        Output("lca-query", "data"),
        Input("lca-slider", "value"),
        Input("lca-all", "value"),
        Input("lca-tick", "disabled"),
        State("lca-steps", "data"),
        State("lca-layer", "value"),
        State("lca-run", "data"),
        State("lca-shown", "data"),
    )
    def render(
        index: int | None,
        all_layers: list[str],
        paused: bool,
        found: list[int],
        layer: str | None,
        run_id: str,
        shown: list[object] | None,
    ) -> tuple[Any, Any, list[dict[str, Any]], str, str]:
        if layer is None or not found:
            raise dash.exceptions.PreventUpdate
        step = found[min(index or 0, len(found) - 1)]
        view = LcaView(layer, step, not paused, bool(all_layers))
        frames = frame_payloads(cache, store, run_id, view)
        label = f"step {step:,} · frame {(index or 0) + 1} of {len(found)}"
        layers = [str(f["layer"]) for f in frames]
        key = graphs_key(run_id, layers, view.all_layers)
        if key == shown:  # the graphs on the page fit: send only the frames
            return dash.no_update, dash.no_update, frames, label, lca_query(view)
        graphs = heatmap_graphs(run_id, layers, compact_view=view.all_layers)
        return graphs, key, frames, label, lca_query(view)


def _known_layers(cur: duckdb.DuckDBPyConnection, run_id: str) -> tuple[bool, tuple[str, ...]]:
    """(the store knows the run, its layers with frames in model order)."""
    known = cur.execute("SELECT 1 FROM runs WHERE run_id = ?", [run_id]).fetchone() is not None
    return known, frame_layers(cur, run_id)


def frame_payloads(cache: Cache, store: Store, run_id: str, view: LcaView) -> list[dict[str, Any]]:
    """The 8-bit frame(s) at the view's step: the chosen layer, or every layer side by side."""
    assert view.layer is not None and view.step is not None
    layers = (
        cached_read(cache, store, "lca_layers", _known_layers, run_id)[1]
        if view.all_layers
        else (view.layer,)
    )
    payloads = []
    for name in layers:
        frame = cached_read(
            cache, store, "lca_frame", lca_frame, run_id, name, view.step, shared=True
        )
        if frame is not None:
            scale = cached_read(cache, store, "lca_scale", frame_scale, run_id, name)
            payloads.append(quantise(frame, scale).payload(heatmap_title(name, frame.step)))
    return payloads


def slider_marks(steps: list[int]) -> dict[int, str]:
    """At most MAX_MARKS evenly spaced labelled marks (a label per frame would overlap)."""
    if not steps:
        return {}
    stride = max(1, -(-len(steps) // MAX_MARKS))
    picked = set(range(0, len(steps), stride)) | {len(steps) - 1}
    return {i: f"{steps[i]:,}" for i in sorted(picked)}

"""The LCA heatmap page's plots: a graph per layer shown, each frame decoded in the browser.

The server builds a layer's figure (`heatmap_figure`) only when the set of graphs on the page
changes (another layer, the side-by-side view, another run); an animation tick then carries
nothing but the frames, 8-bit payloads from `figures/heatmap_codec.py` in the `lca-frames`
store, and a clientside callback (`assets/lca_heatmap.js`) decodes each one into its graph's
figure. A tick is ~7 KB per 64×64 layer instead of a 24 KB figure of float32 data, and the
animation's next-frame step runs in the browser too, without a round trip.
"""

from __future__ import annotations

from collections.abc import Sequence

import dash
from dash import ALL, ClientsideFunction, Input, Output, State, dcc, html

from trainlight.app.figures.lca import heatmap_figure

HEATMAP_TYPE = "lca-heatmap"
FRAMES_STORE = "lca-frames"
CLIENT_NAMESPACE = "trainlight_lca"  # window.dash_clientside.trainlight_lca, in the JS asset


def heatmap_graphs(run_id: str, layers: Sequence[str], *, compact_view: bool) -> html.Div:
    """One graph per layer, figures without a frame yet: the decoder fills them in."""
    graphs = [
        dcc.Graph(
            figure=heatmap_figure(layer, compact_view=compact_view, uirevision=f"{run_id}:{layer}"),
            id={"type": HEATMAP_TYPE, "layer": layer},
            config={"displaylogo": False},
            className="heatmap",
        )
        for layer in layers
    ]
    return html.Div(graphs, className="heatmap-grid" if compact_view else "heatmap-one")


def graphs_key(run_id: str, layers: Sequence[str], compact_view: bool) -> list[object]:
    """What `heatmap_graphs` was built from: the page rebuilds its graphs when this changes."""
    return [run_id, compact_view, *layers]


def register_heatmap_client(app: dash.Dash, slider: str, tick: str, steps: str) -> None:
    """The browser's half: frames → figures, and the animation tick → the next slider index."""
    app.clientside_callback(
        ClientsideFunction(CLIENT_NAMESPACE, "figures"),
        Output({"type": HEATMAP_TYPE, "layer": ALL}, "figure"),
        Input(FRAMES_STORE, "data"),
        State({"type": HEATMAP_TYPE, "layer": ALL}, "id"),
        State({"type": HEATMAP_TYPE, "layer": ALL}, "figure"),
    )
    app.clientside_callback(
        ClientsideFunction(CLIENT_NAMESPACE, "nextIndex"),
        Output(slider, "value", allow_duplicate=True),
        Input(tick, "n_intervals"),
        State(slider, "value"),
        State(steps, "data"),
        prevent_initial_call=True,
    )

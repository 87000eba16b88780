"""The skeleton the drill-down pages share: registration, the controls bar, the smoothing slider.

`/run/<id>`, `/lca/<id>` and `/compare` are the same kind of page: registered with Dash's
page router, their view state mirrored into the URL by the share component (`share.py`), a
sticky bar of controls ending in "copy link", and a body their callbacks fill in.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import dash
from dash import dcc, html
from dash.development.base_component import Component

from trainlight.app.components.share import register_share, share_controls

SMOOTH_MARKS: Mapping[float, str] = {0: "0", 0.5: "0.5", 0.9: "0.9", 0.99: "0.99"}


def register_view(
    app: dash.Dash,
    module: str,
    prefix: str,
    layout: Callable[..., Component],
    *,
    name: str,
    title: str,
    path: str | None = None,
    path_template: str | None = None,
) -> None:
    """Register a page with the router and wire its URL mirror and copy-link button."""
    dash.register_page(
        module, path=path, path_template=path_template, name=name, title=title, layout=layout
    )
    register_share(app, prefix)


def controls_bar(prefix: str, controls: Sequence[Component]) -> html.Div:
    """The page's controls, then its copy-link button (and the stores behind it)."""
    return html.Div([*controls, *share_controls(prefix)], className="controls")


def smoothing_control(
    id_: str, value: float, marks: Mapping[float, str] = SMOOTH_MARKS
) -> html.Label:
    """The EMA weight slider (0 = raw … 0.99), committed on release."""
    return html.Label(
        [
            "smoothing",
            dcc.Slider(
                id=id_,
                min=0,
                max=0.99,
                step=0.01,
                value=value,
                marks=dict(marks),
                tooltip={"placement": "bottom"},
                updatemode="mouseup",
                allow_direct_input=False,
            ),
        ],
        className="control control-wide",
    )


def view_page(page: str, children: Sequence[Any]) -> html.Div:
    """The page's outer box (`page <page>-page`, styled in assets/run.css)."""
    return html.Div(list(children), className=f"page {page}-page")

"""View state → URL, and the "copy link" button.

A page's callbacks write the view's query string (built by the pure functions of url_state.py)
into a `dcc.Store`; a clientside callback puts it in the address bar with `history.replaceState`.
replaceState, not a `dcc.Location` update: Dash's page router listens to Location changes and would
rebuild the page (losing zoom and the animation) on every slider move.
"""

from __future__ import annotations

import dash
from dash import Input, Output, dcc, html

_SYNC_URL = """
function(query) {
    if (query === undefined || query === null) { return window.dash_clientside.no_update; }
    const url = window.location.pathname + query;
    if (url !== window.location.pathname + window.location.search) {
        window.history.replaceState(window.history.state, '', url);
    }
    return query;
}
"""
_HREF = "function(n) { return window.location.href; }"


def share_controls(prefix: str) -> list[dash.development.base_component.Component]:
    """The query store, its echo, and the copy-link button of one page (ids start with prefix)."""
    return [
        dcc.Store(id=f"{prefix}-query"),
        dcc.Store(id=f"{prefix}-query-shown"),
        html.Span(
            [
                dcc.Clipboard(
                    id=f"{prefix}-copy", title="copy a link to this view", className="copy-button"
                ),
                html.Span("copy link"),
            ],
            className="copy-link",
        ),
    ]


def register_share(app: dash.Dash, prefix: str) -> None:
    app.clientside_callback(
        _SYNC_URL, Output(f"{prefix}-query-shown", "data"), Input(f"{prefix}-query", "data")
    )
    app.clientside_callback(
        _HREF,
        Output(f"{prefix}-copy", "content"),
        Input(f"{prefix}-copy", "n_clicks"),
        prevent_initial_call=True,
    )


def not_found(run_id: str) -> html.Div:
    """What an unknown run id shows: a clear sentence and a way back, never a traceback."""
    return html.Div(
        [
            html.H1("Run not found"),
            html.P(["No run with id ", html.Code(run_id), " is in this store."]),
            html.P("It may not have been ingested yet, or the link is mistyped."),
            dcc.Link("← all runs", href="/"),
        ],
        className="not-found",
    )

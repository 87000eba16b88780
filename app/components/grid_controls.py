"""The grid page's controls: search and filters, sort, live refresh, stop / compare / copy link.

Built from the view's `GridState`, so a page opened from a link shows the link's choices.
"""

from __future__ import annotations

from dash import dcc, html

from trainlight.app.url_state import SORTS, GridState, compare_href
from trainlight.collectors.health.verdict import STATES, state_label

_SORT_LABELS = {"health": "worst health", "recency": "recently updated", "name": "name"}


def grid_filters(state: GridState) -> html.Div:
    def select(id_: str, value: str, placeholder: str) -> dcc.Dropdown:
        options = [value] if value else []
        return dcc.Dropdown(
            id=id_,
            options=options,
            value=value or None,
            placeholder=placeholder,
            className="grid-filter",
        )

    return html.Div(
        [
            dcc.Input(
                id="grid-text",
                type="search",
                value=state.text,
                debounce=True,
                placeholder="Search name, id, tag…",
                className="grid-search",
            ),
            select("grid-project", state.project, "Project"),
            select("grid-group", state.group, "Group"),
            select("grid-tag", state.tag, "Tag"),
            dcc.Dropdown(
                id="grid-state",
                options=[{"label": state_label(s), "value": s} for s in STATES],
                value=list(state.states),
                multi=True,
                placeholder="Health",
                className="grid-filter grid-filter-wide",
            ),
            html.Label("Sort", htmlFor="grid-sort", className="grid-label"),
            dcc.Dropdown(
                id="grid-sort",
                options=[{"label": _SORT_LABELS[s], "value": s} for s in SORTS],
                value=state.sort,
                clearable=False,
                className="grid-filter",
            ),
        ],
        className="grid-filters",
    )


def grid_actions(state: GridState) -> html.Div:
    return html.Div(
        [
            dcc.Checklist(
                id="grid-live",
                options=[{"label": " Live", "value": "live"}],
                value=["live"] if state.live else [],
                className="grid-live",
                inline=True,
            ),
            html.Button(
                "Stop selected",
                id="grid-stop",
                className="button button-danger",
                disabled=not state.selected,
            ),
            html.A(
                "Compare selected",
                id="grid-compare",
                className="button",
                href=compare_href(state.selected) if state.selected else None,
            ),
            html.Span(
                [dcc.Clipboard(id="grid-copy", title="Copy a link to this view"), "Copy link"],
                className="button copy-link",
            ),
            html.Span(id="grid-message", className="grid-message", role="status"),
        ],
        className="grid-actions",
    )

"""`/`: the triage grid, one row per run with a light per signal, filters, live refresh, stop.

The URL is the view: `layout(**query)` builds the controls from
`url_state.parse_grid_view(query)`, and every control change writes
`url_state.grid_query(state)` back into the address bar (without
reloading), so a copied link opens the same view. Rows come from one cached query
(`store.grid.grid_rows`, keyed by the store's data version) and are filtered and sorted by pure
functions (`grid.rows`). AG Grid is virtualised and keyed by run id (`getRowId`); a
refresh sends only the rows that changed as a row transaction (`grid.delta`), so it
keeps scroll position and selection and costs little on a 1,000-run store.
"""

from __future__ import annotations

from typing import Any

import dash
import dash_ag_grid as dag
import duckdb
from dash import Input, Output, State, dcc, html

from trainlight.app.cache import cached_update
from trainlight.app.components.grid_controls import grid_actions, grid_filters
from trainlight.app.grid.columns import DEFAULT_COL_DEF, ROW_SELECTION, column_defs
from trainlight.app.grid.delta import Sent, plan_update, view_key
from trainlight.app.grid.rows import (
    PreparedRow,
    filter_options,
    prepare_rows,
    view_rows,
)
from trainlight.app.grid.summary import summarise, summary_component
from trainlight.app.pages import PageDeps
from trainlight.app.store.control import request_stop
from trainlight.app.store.database import Store, utc_naive
from trainlight.app.store.ingest.quarantine import rejected_count
from trainlight.app.store.read.grid import grid_rows
from trainlight.app.url_state import compare_href, grid_query, parse_grid_view
from trainlight.collectors.health.verdict import shapes_legend
from trainlight.collectors.schema import is_valid_run_id

PATH = "/"
STOP_REASON = "stopped from the dashboard grid"
_LEGEND = f"{shapes_legend('  ')} (hover a light for the reason)"


def layout(**query: Any) -> html.Div:
    state = parse_grid_view(query)
    return html.Div(
        [
            dcc.Location(id="grid-url", refresh=False),
            html.Div(
                [
                    html.H1("Runs"),
                    html.Span(id="grid-count", className="grid-count"),
                    html.Span(_LEGEND, className="grid-legend"),
                ],
                className="grid-title",
            ),
            html.Div(id="grid-summary"),
            grid_filters(state),
            grid_actions(state),
            dcc.Interval(id="grid-refresh", interval=state.every_s * 1000, disabled=not state.live),
            dcc.ConfirmDialog(id="grid-stop-confirm"),
            dcc.Store(id="grid-sent"),
            dag.AgGrid(
                id="grid",
                columnDefs=column_defs(),
                defaultColDef=DEFAULT_COL_DEF,
                rowData=[],
                getRowId="params.data.run_id",
                selectedRows={"ids": list(state.selected)},
                dashGridOptions={
                    "rowSelection": ROW_SELECTION,
                    "rowHeight": 36,
                    "tooltipShowDelay": 300,
                    "suppressCellFocus": True,
                    "animateRows": False,
                    # A few dozen columns at most: render them all (row virtualisation stays),
                    # so a wide grid scrolled sideways never shows blank cells first.
                    "suppressColumnVirtualisation": True,
                    "localeText": {
                        "noRowsToShow": "No runs match. Start a training script with "
                        "trainlight.collectors.Monitor, or clear the filters."
                    },
                },
                className="runs-grid",
                style={"height": "calc(100vh - 210px)", "minHeight": "320px"},
            ),
        ],
        className="page grid-page",
    )


def count_text(shown: int, total: int, rejected: int) -> str:
    """The grid's count line; quarantined segments (store/ingest/quarantine.py) only when any."""
    text = f"{total} runs" if shown == total else f"{shown} of {total} runs"
    return f"{text} · rejected segments: {rejected}" if rejected else text


def _selected_ids(selected: Any) -> tuple[str, ...]:
    """Run ids from AG Grid's `selectedRows` (row dicts, or `{"ids": …}` before the grid ran)."""
    if isinstance(selected, dict):
        ids = [str(i) for i in selected.get("ids") or []]
    else:
        ids = [str(r.get("run_id", "")) for r in selected or [] if isinstance(r, dict)]
    return tuple(dict.fromkeys(i for i in ids if is_valid_run_id(i)))


def register(app: dash.Dash, deps: PageDeps) -> None:
    """The page and its callbacks. Access is checked in front of every request
    (app/access.py), so a callback that runs is authorised: stopping needs no token here."""
    dash.register_page("trainlight.grid", path=PATH, name="Runs", title="trainlight", layout=layout)
    _wire_url(app)
    _wire_refresh(app, deps)
    _wire_ask_stop(app)
    _wire_stop(app, deps.store)
    _wire_copy(app)


def _wire_url(app: dash.Dash) -> None:
    @app.callback(
        Output("grid-url", "search"),
        Output("grid-refresh", "disabled"),
        Output("grid-stop", "disabled"),
        Output("grid-compare", "href"),
        Input("grid-project", "value"),
        Input("grid-group", "value"),
        Input("grid-tag", "value"),
        Input("grid-state", "value"),
        Input("grid-text", "value"),
        Input("grid-sort", "value"),
        Input("grid-live", "value"),
        Input("grid", "selectedRows"),
        State("grid-url", "search"),
        prevent_initial_call=True,
    )
    def write_url(
        project: str | None,
        group: str | None,
        tag: str | None,
        states: list[str] | None,
        text: str | None,
        sort: str | None,
        live: list[str] | None,
        selected: Any,
        search: str | None,
    ) -> tuple[str, bool, bool, str | None]:
        previous = parse_grid_view(search or "")
        chosen = parse_grid_view(
            {
                "project": project or "",
                "group": group or "",
                "tag": tag or "",
                "state": ",".join(states or []),
                "q": text or "",
                "sort": sort or "",
                "sel": ",".join(_selected_ids(selected)),
                "live": "1" if live else "0",
                "every": str(previous.every_s),
            }
        )
        ids = chosen.selected
        return grid_query(chosen), not chosen.live, not ids, compare_href(ids) if ids else None


def _wire_refresh(app: dash.Dash, deps: PageDeps) -> None:
    store, cache, stale_after = deps.store, deps.cache, deps.stale_after

    @app.callback(
        Output("grid", "rowData"),
        Output("grid", "rowTransaction"),
        Output("grid-project", "options"),
        Output("grid-group", "options"),
        Output("grid-tag", "options"),
        Output("grid-count", "children"),
        Output("grid-summary", "children"),
        Output("grid-sent", "data"),
        Input("grid-url", "search"),
        Input("grid-refresh", "n_intervals"),
        State("grid-sent", "data"),
    )
    def refresh(search: str | None, _n: int | None, sent: Any) -> tuple[Any, ...]:
        state = parse_grid_view(search or "")
        rows = cached_update(cache, store, "grid_rows", _prepared_rows)
        shown = view_rows(rows, state, utc_naive(), stale_after)
        options = filter_options([r.row for r in rows])
        count = count_text(len(shown), len(rows), rejected_count(store.layout))
        summary = summarise(shown)
        meta = (
            _with(options.projects, state.project),
            _with(options.groups, state.group),
            _with(options.tags, state.tag),
            count,
            summary,
        )
        # Only what changed: an idle store sends nothing, a live one the rows that moved.
        update = plan_update(Sent.parse(sent), view_key(state), shown, meta)
        if not (update.rows_changed or update.meta_changed):
            raise dash.exceptions.PreventUpdate
        keep = dash.no_update
        shown_meta = (*meta[:-1], summary_component(summary, state))
        return (
            list(update.full) if update.full is not None else keep,
            update.transaction() if update.full is None and update.rows_changed else keep,
            *(shown_meta if update.meta_changed else (keep,) * len(shown_meta)),
            update.browser_record(),
        )


def _wire_ask_stop(app: dash.Dash) -> None:
    @app.callback(
        Output("grid-stop-confirm", "displayed"),
        Output("grid-stop-confirm", "message"),
        Input("grid-stop", "n_clicks"),
        State("grid", "selectedRows"),
        prevent_initial_call=True,
    )
    def ask_stop(_clicks: int | None, selected: Any) -> tuple[bool, str]:
        ids = _selected_ids(selected)
        if not ids:
            raise dash.exceptions.PreventUpdate
        return True, f"Ask {len(ids)} run(s) to stop?\n\n" + "\n".join(ids[:20])


def _wire_stop(app: dash.Dash, store: Store) -> None:
    @app.callback(
        Output("grid-message", "children"),
        Input("grid-stop-confirm", "submit_n_clicks"),
        State("grid", "selectedRows"),
        prevent_initial_call=True,
    )
    def stop(_submitted: int | None, selected: Any) -> str:
        ids = _selected_ids(selected)
        stopped = [run_id for run_id in ids if request_stop(store, run_id, STOP_REASON)]
        missing = len(ids) - len(stopped)
        return f"Stop requested for {len(stopped)} run(s)" + (
            f"; {missing} unknown." if missing else "."
        )


def _wire_copy(app: dash.Dash) -> None:
    app.clientside_callback(
        "function(n) { return window.location.href; }",
        Output("grid-copy", "content"),
        Input("grid-copy", "n_clicks"),
        prevent_initial_call=True,
    )


def _prepared_rows(
    cur: duckdb.DuckDBPyConnection, last: tuple[PreparedRow, ...] | None
) -> tuple[PreparedRow, ...]:
    """The cached part of a refresh: the query and the clock-free fields of every row (reusing
    `last`'s for the runs the new data left unchanged)."""
    return prepare_rows(grid_rows(cur), last or ())


def _with(values: tuple[str, ...], current: str) -> list[str]:
    """Dropdown options that always include the current value (a link may name an empty one)."""
    return list(values) if not current or current in values else [current, *values]

"""The run page's pieces: header, and one panel per signal (state, reason, history, evidence).

A badge carries its state as a word and a shape as well as a colour (●, ▲, ■, ○), so the
verdict reads without colour vision.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from dash import dcc, html
from dash.development.base_component import Component

from trainlight.app.formatting import format_value
from trainlight.app.store.read.queries import RunDetail
from trainlight.app.store.read.series import HealthChange
from trainlight.collectors.health.registry import spec_of
from trainlight.collectors.health.settings import HealthSettings
from trainlight.collectors.health.verdict import STATE_SHAPES


def badge(state: str, text: str | None = None) -> html.Span:
    return html.Span(
        f"{STATE_SHAPES.get(state, '○')} {text or state}",
        className=f"verdict verdict-{state}",
        title=state,
    )


def run_header(detail: RunDetail, lca_href: str | None) -> html.Div:
    """Name, status, facts and config of the run; a link to its heatmap when it has one."""
    summary = detail.summary
    facts = [
        ("project", summary.project),
        ("group", summary.group),
        ("tags", ", ".join(summary.tags)),
        ("last step", "" if summary.last_step is None else f"{summary.last_step:,}"),
        ("steps saved", saved_steps(summary.status, summary.last_step, detail.config)),
        ("host", f"{detail.host} (pid {detail.pid})" if detail.host else ""),
        ("run id", summary.run_id),
    ]
    config = json.dumps(dict(detail.config), indent=2, sort_keys=True, default=str)
    return html.Div(
        [
            html.Div(
                [
                    html.H1(summary.name, className="run-title"),
                    html.Span(summary.status, className=f"status status-{summary.status}"),
                    dcc.Link("LCA heatmap →", href=lca_href, className="header-link")
                    if lca_href
                    else None,
                ],
                className="run-title-row",
            ),
            html.Div(
                [
                    html.Div([html.Span(k, className="fact-name"), html.Span(v)])
                    for k, v in facts
                    if v
                ],
                className="facts",
            ),
            html.Details([html.Summary("config"), html.Pre(config)], className="config")
            if detail.config
            else None,
            html.P(f"stop requested: {summary.stop_reason or 'yes'}", className="stop-note")
            if summary.stop_requested
            else None,
        ],
        className="run-header",
    )


def saved_steps(status: str, last_step: int | None, config: Mapping[str, Any]) -> str:
    """For a stopped run whose config names its planned length (`total_steps`): the steps it
    did not run, i.e. the compute a stop saved; '' otherwise."""
    planned = config.get("total_steps")
    if status != "stopped" or last_step is None or not isinstance(planned, int):
        return ""
    saved = planned - (last_step + 1)
    return f"{saved:,} of {planned:,}" if saved > 0 else ""


def signal_panel(
    signal: str,
    history: Sequence[HealthChange],
    graphs: Sequence[Component],
    settings: HealthSettings,
    extra: html.Div | None = None,
) -> html.Section:
    """One signal: badge + reason (or why it is not judged), its state changes, the evidence
    (several plots side by side), the help text from the run's settings."""
    spec = spec_of(signal)
    current = history[-1] if history else None
    state = current.state if current else "grey"
    missing = spec.missing if spec else "not judged"
    reason = (
        current.reason
        if current and current.reason
        else ("healthy" if state == "green" else missing if not current else "")
    )
    at = f" (since step {current.step:,})" if current and current.step is not None else ""
    return html.Section(
        [
            html.Div(
                [html.H2(spec.title if spec else signal), badge(state)], className="panel-title"
            ),
            html.P(reason + at, className=f"reason reason-{state}"),
            html.P(spec.help_for(settings) if spec else "", className="help"),
            html.Details(
                [html.Summary(f"{len(history)} state changes"), _timeline(history)],
                className="history",
            )
            if len(history) > 1
            else None,
            extra,
            html.Div(list(graphs), className="graph-grid") if len(graphs) > 1 else None,
            graphs[0] if len(graphs) == 1 else None,
        ],
        className=f"panel panel-{state}",
        id=f"panel-{signal}",
    )


def nonfinite_table(rows: Sequence[tuple[str, int, float]]) -> html.Div:
    """(key, first step, value) of every series that went non-finite."""
    if not rows:
        return html.Div()
    return html.Div(
        html.Table(
            [html.Tr([html.Th("series"), html.Th("first at step"), html.Th("value")])]
            + [
                html.Tr([html.Td(k), html.Td(f"{s:,}"), html.Td(format_value(v))])
                for k, s, v in rows
            ],
            className="small-table",
        )
    )


def _timeline(history: Sequence[HealthChange]) -> html.Ol:
    return html.Ol(
        [
            html.Li(
                [
                    badge(c.state),
                    html.Span(f" step {c.step:,}" if c.step is not None else "", className="muted"),
                    html.Span(f" {c.reason}" if c.reason else ""),
                ]
            )
            for c in history
        ],
        className="timeline",
    )


def alerts_section(alerts: Sequence[Mapping[str, Any]]) -> html.Section:
    """The alerts sent (or still trying, or failed) about the run, newest first; destinations by
    label (the webhook address is a secret)."""
    if not alerts:
        body: Component = html.P(
            "No alerts about this run (trainlight serve --alert-webhook URL sends them).",
            className="muted",
        )
    else:
        head = ["when (UTC)", "signal", "state", "step", "to", "delivery", "attempts", "error"]
        body = html.Table(
            [html.Tr([html.Th(h) for h in head])]
            + [
                html.Tr(
                    [
                        html.Td(f"{a['created_at']:%Y-%m-%d %H:%M:%S}"),
                        html.Td(a["signal"]),
                        html.Td(badge(a["state"]) if a["signal"] != "status" else a["state"]),
                        html.Td("" if a["step"] is None else f"{a['step']:,}"),
                        html.Td(a["destination"]),
                        html.Td(a["status"], className=f"alert-{a['status']}"),
                        html.Td(str(a["attempts"])),
                        html.Td(a["last_error"] or ""),
                    ]
                )
                for a in alerts
            ],
            className="small-table alerts-table",
        )
    return html.Section([html.H2("Alerts"), body], className="panel alerts", id="run-alerts")

"""Every page's view state, to and from its URL query, so a copied link reopens exactly that view.

The grid (`/`: filters, sort, selection, live refresh) is a `GridState`; the drill-down pages
have `RunView`, `LcaView` and `CompareView`. Each page writes its state into the URL after every
change and builds its layout from the URL on load. Building writes only what differs from the
defaults, in a fixed key order, so one view has one URL and the default view a clean one.
Parsing never raises: unknown or malformed values fall back to defaults, because a hand-edited
or stale bookmark must always open a page.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import parse_qs, urlencode

from trainlight.collectors.health.verdict import STATES
from trainlight.collectors.schema import is_valid_run_id

SORTS = ("health", "recency", "name")
DEFAULT_SORT = "health"
DEFAULT_EVERY_S = 5
MIN_EVERY_S, MAX_EVERY_S = 1, 3600
_MAX_TEXT = 200

QueryValue = str | Sequence[str]


@dataclass(frozen=True)
class GridState:
    project: str = ""
    group: str = ""
    tag: str = ""
    states: tuple[str, ...] = ()  # worst-health states to show; empty: all
    text: str = ""
    sort: str = DEFAULT_SORT
    selected: tuple[str, ...] = ()  # run ids
    live: bool = True
    every_s: int = DEFAULT_EVERY_S


def parse_grid_view(query: str | Mapping[str, QueryValue]) -> GridState:
    """A state from `?a=b&…` (or Dash's parsed query kwargs); bad values become defaults."""
    params = _as_mapping(query)
    states = set(_csv(params, "state"))
    sort = _one(params, "sort")
    return GridState(
        project=_one(params, "project"),
        group=_one(params, "group"),
        tag=_one(params, "tag"),
        states=tuple(s for s in STATES if s in states),  # canonical order
        text=_one(params, "q")[:_MAX_TEXT],
        sort=sort if sort in SORTS else DEFAULT_SORT,
        selected=_ordered(r for r in _csv(params, "sel") if is_valid_run_id(r)),
        live=_one(params, "live") not in ("0", "false", "off"),
        every_s=_every(_one(params, "every")),
    )


def grid_query(state: GridState) -> str:
    """`?…` for a state (only non-default values, fixed key order); "" for the default view."""
    pairs = [
        ("project", state.project),
        ("group", state.group),
        ("tag", state.tag),
        ("state", ",".join(state.states)),
        ("q", state.text),
        ("sort", "" if state.sort == DEFAULT_SORT else state.sort),
        ("sel", ",".join(state.selected)),
        ("live", "" if state.live else "0"),
        ("every", "" if state.every_s == DEFAULT_EVERY_S else str(state.every_s)),
    ]
    kept = [(k, v) for k, v in pairs if v]
    return "?" + urlencode(kept) if kept else ""


def compare_href(run_ids: Sequence[str]) -> str:
    """The compare page for these runs (`/compare?runs=a,b`)."""
    return "/compare" + compare_query(run_ids)


def heatmap_href(run_id: str) -> str:
    """A run's LCA heatmap page (`/lca/<run_id>`)."""
    return f"/lca/{run_id}"


def _as_mapping(query: str | Mapping[str, QueryValue]) -> Mapping[str, QueryValue]:
    if isinstance(query, str):
        parsed = parse_qs(query.removeprefix("?"), keep_blank_values=True)
        return {k: v[0] if len(v) == 1 else v for k, v in parsed.items()}
    return query


def _one(params: Mapping[str, QueryValue], key: str) -> str:
    value = params.get(key, "")
    if not isinstance(value, str):  # repeated key: the first one wins
        value = value[0] if value else ""
    return value.strip()


def _csv(params: Mapping[str, QueryValue], key: str) -> list[str]:
    value = params.get(key, "")
    parts = [value] if isinstance(value, str) else list(value)
    return [item.strip() for part in parts for item in part.split(",") if item.strip()]


def _ordered(items: Iterable[str]) -> tuple[str, ...]:
    """Deduplicated, first occurrence kept."""
    return tuple(dict.fromkeys(items))


def _every(text: str) -> int:
    try:
        seconds = int(text)
    except ValueError:
        return DEFAULT_EVERY_S
    return min(max(seconds, MIN_EVERY_S), MAX_EVERY_S)


# -- drill-down pages ---------------------------------------------------------------------------
SMOOTH_MAX = 0.99
TRUE_WORDS = ("1", "true", "yes", "on")

MAX_QUERY_INT = 2**53 - 1  # JavaScript's Number.MAX_SAFE_INTEGER


@dataclass(frozen=True)
class RunView:
    """`/run/<run_id>?smooth=0.6&from=100&to=5000`."""

    smooth: float = 0.0  # EMA weight of the previous value, 0 (raw) … 0.99
    start: int | None = None
    end: int | None = None


@dataclass(frozen=True)
class LcaView:
    """`/lca/<run_id>?layer=fc1&step=400&play=1&all=1`."""

    layer: str | None = None
    step: int | None = None
    playing: bool = False
    all_layers: bool = False


@dataclass(frozen=True)
class CompareView:
    """`/compare?runs=a,b,c&smooth=0.6`."""

    runs: tuple[str, ...] = ()
    smooth: float = 0.0


def parse_run_view(query: Mapping[str, object]) -> RunView:
    smooth = _float(query.get("smooth"))
    smooth = 0.0 if smooth is None else min(max(smooth, 0.0), SMOOTH_MAX)
    start, end = _int(query.get("from")), _int(query.get("to"))
    if start is not None and end is not None and start > end:
        start, end = end, start
    return RunView(smooth, start, end)


def run_query(view: RunView) -> str:
    return _query(
        {
            "smooth": f"{view.smooth:g}" if view.smooth else None,
            "from": view.start,
            "to": view.end,
        }
    )


def parse_lca_view(query: Mapping[str, object]) -> LcaView:
    layer = query.get("layer")
    return LcaView(
        layer=layer if isinstance(layer, str) and layer else None,
        step=_int(query.get("step")),
        playing=_bool(query.get("play")),
        all_layers=_bool(query.get("all")),
    )


def lca_query(view: LcaView) -> str:
    return _query(
        {
            "layer": view.layer,
            "step": view.step,
            "play": "1" if view.playing else None,
            "all": "1" if view.all_layers else None,
        }
    )


def parse_compare_view(query: Mapping[str, object]) -> CompareView:
    raw = query.get("runs")
    runs = [r.strip() for r in raw.split(",")] if isinstance(raw, str) else []
    smooth = parse_run_view({"smooth": query.get("smooth")}).smooth
    return CompareView(tuple(dict.fromkeys(r for r in runs if r)), smooth)


def compare_query(runs: Sequence[str], smooth: float | None = None) -> str:
    return _query(
        {"runs": ",".join(runs) if runs else None, "smooth": f"{smooth:g}" if smooth else None}
    )


def nearest_index(steps: Sequence[int], step: int | None) -> int:
    """Index of the step closest to `step` (the last one when `step` is None; 0 when empty)."""
    if not steps:
        return 0
    if step is None:
        return len(steps) - 1
    return min(range(len(steps)), key=lambda i: (abs(steps[i] - step), steps[i]))


def _query(items: Mapping[str, object]) -> str:
    kept = {k: str(v) for k, v in items.items() if v is not None}
    return "?" + urlencode(kept, safe=",/") if kept else ""


def _float(raw: object) -> float | None:
    try:
        value = float(str(raw))
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _int(raw: object) -> int | None:
    """An integer from a link or an input, clamped to what a browser's number keeps exactly
    (±2^53): `?from=1e300` must not reach a BIGINT query parameter (or overflow in one)."""
    if raw is None or isinstance(raw, bool):
        return None
    try:
        value = int(str(raw).strip())
    except ValueError:
        number = _float(raw)
        if number is None:
            return None
        value = int(min(max(number, -MAX_QUERY_INT), MAX_QUERY_INT))
    return min(max(value, -MAX_QUERY_INT), MAX_QUERY_INT)


def _bool(raw: object) -> bool:
    return isinstance(raw, str) and raw.strip().lower() in TRUE_WORDS


def range_from_relayout(
    relayout: Mapping[str, object] | None,
) -> tuple[int | None, int | None] | None:
    """The step range a zoom on a step axis asks for: (start, end), (None, None) on reset, or
    None when the relayout event is not about the x axis (legend clicks, resizes)."""
    if not relayout:
        return None
    if relayout.get("xaxis.autorange"):
        return None, None
    low, high = relayout.get("xaxis.range[0]"), relayout.get("xaxis.range[1]")
    if low is None or high is None:
        pair = relayout.get("xaxis.range")
        if isinstance(pair, list | tuple) and len(pair) == 2:
            low, high = pair
    start, end = _float(low), _float(high)
    if start is None or end is None:
        return None
    return math.floor(min(start, end)), math.ceil(max(start, end))

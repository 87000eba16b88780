"""Send the grid only the rows that changed since the browser's last refresh.

A 1,000-run grid is ~1.2 MB of `rowData`; re-sending it on every 5 s tick cost the server most
of its callback time in serialisation, though on a live store only the runs that logged
something (and the ages that ticked over) changed. So the browser keeps, in a `dcc.Store`, the
view its rows were computed for (filters and sort) and a short digest per row; the refresh
compares digests and answers with an AG Grid row transaction (add / update / remove). When the
view changed, or the browser holds nothing yet, it sends the full `rowData` instead.

Row order travels inside the rows: `order` is a row's position in the server-side sort and the
grid sorts by that hidden column, so a transaction keeps the order and only rows whose position
moved are resent. Pure: the page only turns a `GridUpdate` into its outputs.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import dash

from trainlight.app.url_state import GridState

ROW_ID = "run_id"


@dataclass(frozen=True)
class Sent:
    """What the browser holds: its rows' view and a digest per row id, plus the digest of the
    other outputs (filter options, count)."""

    view: str = ""
    rows: Mapping[str, str] = field(default_factory=dict)
    meta: str = ""

    @staticmethod
    def parse(data: Any) -> Sent:
        """From the store's JSON (anything malformed reads as "holds nothing")."""
        if not isinstance(data, dict) or not isinstance(data.get("rows"), dict):
            return Sent()
        rows = {str(k): str(v) for k, v in data["rows"].items()}
        return Sent(str(data.get("view", "")), rows, str(data.get("meta", "")))

    def to_json(self) -> dict[str, Any]:
        return {"view": self.view, "rows": dict(self.rows), "meta": self.meta}


@dataclass(frozen=True)
class ShownRow:
    """One row of the view: its rowData record and a digest that changes whenever it does."""

    record: dict[str, Any]
    digest: str


@dataclass(frozen=True)
class GridUpdate:
    """What to send: `full` rows (replace everything) or a transaction; `changed` and
    `dropped` are the digest entries to write into, and remove from, the browser's store."""

    full: tuple[dict[str, Any], ...] | None
    add: tuple[dict[str, Any], ...] = ()
    update: tuple[dict[str, Any], ...] = ()
    remove: tuple[str, ...] = ()
    meta_changed: bool = False
    sent: Sent = field(default_factory=Sent)
    changed: Mapping[str, str] = field(default_factory=dict)

    @property
    def rows_changed(self) -> bool:
        return self.full is not None or bool(self.add or self.update or self.remove)

    def browser_record(self) -> Any:
        """The new value of the browser's record: all of it after a full send, else a Patch of
        the changed digests (a tick that changed three rows sends three, not a thousand)."""
        if self.full is not None:
            return self.sent.to_json()
        patch = dash.Patch()
        for run_id, row_digest in self.changed.items():
            patch["rows"][run_id] = row_digest
        for run_id in self.remove:
            del patch["rows"][run_id]
        patch["meta"] = self.sent.meta
        return patch

    def transaction(self) -> dict[str, Any]:
        """AG Grid's `rowTransaction`: rows to add and update, ids of rows to remove."""
        return {
            "add": list(self.add),
            "update": list(self.update),
            "remove": [{ROW_ID: run_id} for run_id in self.remove],
        }


def view_key(state: GridState) -> str:
    """What decides which rows are shown and in what order (not selection, not live)."""
    return repr((state.project, state.group, state.tag, state.states, state.text, state.sort))


def digest(value: object) -> str:
    """A short digest of a value's repr, stable across processes (records are built in a fixed
    key order, so equal records have equal digests)."""
    return hashlib.blake2b(repr(value).encode(), digest_size=8).hexdigest()


def plan_update(sent: Sent, view: str, rows: Sequence[ShownRow], meta: object) -> GridUpdate:
    """Compare the browser's rows with `rows`, the rows it should hold (records with `run_id`)."""
    digests = {str(r.record[ROW_ID]): r.digest for r in rows}
    now = Sent(view, digests, digest(meta))
    meta_changed = now.meta != sent.meta
    records = [r.record for r in rows]
    if view != sent.view or not sent.rows:
        return GridUpdate(tuple(records), meta_changed=meta_changed, sent=now, changed=digests)
    add, update = [], []
    for row in rows:
        run_id = str(row.record[ROW_ID])
        before = sent.rows.get(run_id)
        if before is None:
            add.append(row.record)
        elif before != row.digest:
            update.append(row.record)
    remove = tuple(run_id for run_id in sent.rows if run_id not in digests)
    changed = {str(r[ROW_ID]): digests[str(r[ROW_ID])] for r in (*add, *update)}
    return GridUpdate(
        None, tuple(add), tuple(update), remove, meta_changed, sent=now, changed=changed
    )

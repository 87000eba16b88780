"""Stop requests: recorded in `runs` and published where the run's collector looks.

An inbox collector reads `control/<run_id>.json` on every flush; an HTTP collector learns it from
the ingest reply (which reads the same file, in the main process and in receivers alike) or from
`GET /api/v1/runs/<run_id>/control` (the database in the main process, the file in receivers).
"""

from __future__ import annotations

import logging

from trainlight.app.store.database import Store
from trainlight.collectors.schema import StopRequest, StoreLayout, check_run_id, write_atomically
from trainlight.collectors.store_files import read_stop_request

log = logging.getLogger("trainlight.control")


def request_stop(store: Store, run_id: str, reason: str) -> bool:
    """Ask a run to stop; False if the store does not know the run."""
    check_run_id(run_id)
    with store.write() as cur:
        found = cur.execute(
            """UPDATE runs SET stop_requested = true, stop_reason = ?
               WHERE run_id = ? RETURNING run_id""",
            [reason, run_id],
        ).fetchall()
    if not found:
        return False
    publish_stop(store, run_id, reason)
    return True


def published_stop(layout: StoreLayout, run_id: str) -> tuple[bool, str]:
    """(stop requested, reason) from the run's control file; no file, no stop. An unreadable
    file is logged and read as no stop: the segment was already written, so the answer must
    still be its 202 (the run learns of the stop at its next poll)."""
    try:
        request = read_stop_request(layout.control_path(run_id))
    except OSError as exc:
        log.warning("cannot read the control file of run %s: %s", run_id, exc)
        return False, ""
    return (False, "") if request is None else (True, request.reason)


def publish_stop(store: Store, run_id: str, reason: str) -> None:
    """Write the control file an inbox collector polls (the DB row is what HTTP ones read)."""
    write_atomically(store.layout.control_path(run_id), StopRequest(reason).to_bytes())

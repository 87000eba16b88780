"""Stop requests: recorded in `runs` and published where the run's collector looks.

An inbox collector reads `control/<run_id>.json` on every flush; an HTTP collector learns it from
the ingest reply (which reads the same file, in the main process and in receivers alike) or from
`GET /api/v1/runs/<run_id>/control` (the database in the main process, the file in receivers).
"""

from __future__ import annotations

from trainlight.app.store.database import Store
from trainlight.collectors.schema import StopRequest, StoreLayout, check_run_id, write_atomically


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
    """(stop requested, reason) from the run's control file; no file, no stop."""
    try:
        request = StopRequest.from_bytes(layout.control_path(run_id).read_bytes())
    except FileNotFoundError:
        return False, ""
    except ValueError:  # not a stop request (the files are written whole: app/store/control.py)
        return False, ""
    if request is None:
        return False, ""
    return True, request.reason


def publish_stop(store: Store, run_id: str, reason: str) -> None:
    """Write the control file an inbox collector polls (the DB row is what HTTP ones read)."""
    write_atomically(store.layout.control_path(run_id), StopRequest(reason).to_bytes())

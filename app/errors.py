"""The Flask server under the Dash app, logging failures of unauthenticated requests in one line.

Flask logs every unhandled exception with its full traceback. A request that did not prove the
token (every request of a server without one) could thereby grow the log by kilobytes per request
with frames nobody asked for; such a failure is logged as one line (method, path, exception and
where it was raised), its traceback only at DEBUG. Requests that proved the token, from people and
scripts the operator trusts, keep the full traceback: that is what debugging needs.
"""

from __future__ import annotations

import traceback
from types import TracebackType

from flask import Flask, g, request

AUTHENTICATED = "trainlight_authenticated"  # set on flask.g by the token guard (app/access.py)
_MAX_TEXT = 200


class TrainlightFlask(Flask):
    def log_exception(
        self,
        exc_info: tuple[type, BaseException, TracebackType] | tuple[None, None, None],
    ) -> None:
        if g.get(AUTHENTICATED, False):
            super().log_exception(exc_info)
            return
        _, exc, tb = exc_info
        frames = traceback.extract_tb(tb) if tb is not None else []
        where = f"{frames[-1].filename}:{frames[-1].lineno}" if frames else "?"
        self.logger.error(
            "%s %r failed (unauthenticated; traceback at DEBUG): %s: %r at %s",
            request.method,
            request.path[:_MAX_TEXT],
            type(exc).__name__,
            str(exc)[:_MAX_TEXT],
            where,
        )
        self.logger.debug("traceback", exc_info=exc_info)

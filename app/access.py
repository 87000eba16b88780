"""Who may talk to a server started with a token: one guard in front of pages, callbacks and API.

Without a token (the default loopback bind) everything is open, as for any local dev server. With
a token, every request must prove it knows it: scripts send `Authorization: Bearer <token>`, and a
person opens any page once as `…?token=<token>`, which sets an HttpOnly, SameSite=Strict cookie and
redirects to the same address without the token, so it neither stays in the history nor travels
in a copied share link. SameSite=Strict keeps other sites from riding the cookie to stop runs.

Only what carries no run data stays open: the JavaScript and CSS the login page itself needs, and
`/healthz` for container health checks.
"""

from __future__ import annotations

import hashlib
import hmac
from urllib.parse import urlencode

from flask import Flask, Response, g, request
from markupsafe import escape

from trainlight.app.errors import AUTHENTICATED

COOKIE = "trainlight_token"
TOKEN_PARAM = "token"
OPEN_PREFIXES = ("/assets/", "/_dash-component-suites/")
OPEN_PATHS = frozenset({"/_favicon.ico", "/healthz"})  # exact: "/healthzX" is a page
_UNAUTHORISED_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>trainlight</title>
<link rel="stylesheet" href="/assets/style.css"></head><body><main class="page notfound">
<h1>This dashboard needs its token</h1>
<p>Open it once as <code>{path}?token=&lt;token&gt;</code> (the token given to
<code>trainlight serve --token</code> or <code>TRAINLIGHT_TOKEN</code>). Your browser keeps it in a
cookie for this site.</p></main></body></html>"""


def cookie_value(token: str) -> str:
    """What the cookie holds: a digest of the token, so the token itself is never stored there."""
    return hashlib.sha256(f"trainlight-cookie:{token}".encode()).hexdigest()


def is_authorised(token: str, authorization: str, cookie: str | None) -> bool:
    """True when the Authorization header or the cookie proves knowledge of `token`."""
    scheme, _, given = authorization.partition(" ")
    if scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode()):
        return True
    return cookie is not None and hmac.compare_digest(cookie.encode(), cookie_value(token).encode())


def install_token_guard(server: Flask, token: str | None) -> None:
    """Refuse every request without the token (when one is set), before any route runs."""

    @server.route("/healthz")
    def healthz() -> Response:
        return Response('{"ok": true}', mimetype="application/json")

    if not token:
        return

    @server.before_request
    def guard() -> Response | None:
        header = request.headers.get("Authorization", "")
        if is_authorised(token, header, request.cookies.get(COOKIE)):
            setattr(g, AUTHENTICATED, True)  # full tracebacks for its failures (app/errors.py)
            return None
        offered = request.args.get(TOKEN_PARAM)
        if offered is not None and request.method == "GET":
            return _login(token, offered)
        if request.path in OPEN_PATHS or request.path.startswith(OPEN_PREFIXES):
            return None
        return _refusal()


def _login(token: str, offered: str) -> Response:
    if not hmac.compare_digest(offered.encode(), token.encode()):
        return _refusal()
    rest = [(k, v) for k, v in request.args.items(multi=True) if k != TOKEN_PARAM]
    target = request.path + (f"?{urlencode(rest)}" if rest else "")
    response = Response(status=303, headers={"Location": target})
    response.set_cookie(
        COOKIE,
        cookie_value(token),
        httponly=True,
        samesite="Strict",
        secure=request.is_secure,
        max_age=30 * 24 * 3600,
    )
    return response


def _refusal() -> Response:
    if request.path.startswith("/api/") or request.path.startswith("/_dash-"):
        body = '{"error": "missing or wrong token: send \'Authorization: Bearer <token>\'"}'
        return Response(body, status=401, mimetype="application/json")
    page = _UNAUTHORISED_PAGE.format(path=escape(request.path))
    return Response(page, status=401, mimetype="text/html")

"""`create_app(store)`: the Dash app and its Flask server, built from the dependencies it is given.

The CLI opens the store and starts the ingester; this factory only wires pages and the API onto
one Flask server, so tests can build an app around any store.
"""

from __future__ import annotations

from datetime import timedelta

import dash

from trainlight.app.access import install_token_guard
from trainlight.app.api import create_api
from trainlight.app.cache import create_cache
from trainlight.app.errors import TrainlightFlask
from trainlight.app.intake import DEFAULT_INTAKE, MAX_REQUEST_BYTES, IntakeSettings
from trainlight.app.intent import HostPolicy, install_intent_guard
from trainlight.app.pages import PageDeps, compare, grid, lca, run
from trainlight.app.store.database import Store
from trainlight.app.store.read.queries import DEFAULT_STALE_AFTER
from trainlight.assets import ASSETS_DIR

PAGES = (grid, lca, run, compare)  # registered in this order


def create_app(
    store: Store,
    token: str | None = None,
    stale_after: timedelta = DEFAULT_STALE_AFTER,
    hosts: HostPolicy | None = None,
    intake: IntakeSettings = DEFAULT_INTAKE,
) -> dash.Dash:
    app = dash.Dash(
        __name__,
        server=TrainlightFlask(__name__),  # type: ignore[arg-type]  # Dash accepts a Flask
        use_pages=True,
        pages_folder="",
        assets_folder=str(ASSETS_DIR),
        title="trainlight",
        update_title="",  # keep the tab title still during refreshes
        suppress_callback_exceptions=True,
    )
    # First: they must run before any page or route (misdirected and cross-site, then the token).
    install_intent_guard(app.server, hosts or HostPolicy.serving())
    install_token_guard(app.server, token)
    deps = PageDeps(store, create_cache(app.server), stale_after)
    for page in PAGES:
        page.register(app, deps)
    app.layout = dash.html.Div(
        [
            dash.html.Header(
                dash.html.A("trainlight", href="/", className="brand"), className="topbar"
            ),
            dash.page_container,
        ]
    )
    app.server.register_blueprint(create_api(store, stale_after, intake))
    app.server.config["MAX_CONTENT_LENGTH"] = MAX_REQUEST_BYTES
    _finish_dash_setup(app)
    return app


def _finish_dash_setup(app: dash.Dash) -> None:
    """Dash completes its setup (callback map, scripts) in a hook of the first request, with no
    lock: two first requests at once raced in it and one got a 500 ("dictionary changed size
    during iteration"), seen under load. Running the hooks once here, before any client can
    connect, does that setup; the guards' answer to this request is ignored."""
    with app.server.test_request_context("/"):
        app.server.preprocess_request()

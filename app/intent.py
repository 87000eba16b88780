"""Requests that change state must come from the dashboard itself or a script, never another site.

A cookie (or no token at all, the loopback default) proves only that a browser is involved, not
that the person meant it: any page the user visits, on another site or merely another port of the
same host (SameSite does not separate ports), can submit a form or a `no-cors` fetch to
`/api/v1/ingest` or `/api/v1/runs/<id>/stop`. Three checks, in front of every route:

- `Host` must name this server: an IP literal (never rebindable), `localhost`, the bind address,
  the machine's names when bound to every interface, or a `--public-url`. Otherwise 421: a DNS
  rebinding page talks to us under its own name, and is refused before anything runs. The port is
  not checked (a proxy or a Docker port mapping changes it; rebinding needs a name, not a port).
- A state-changing method (POST/PUT/PATCH/DELETE) with `Sec-Fetch-Site` other than same-origin /
  none, or an `Origin` that is not this server (`null` included), is 403.
- It must also carry proof that a cross-site form or `no-cors` fetch cannot send: the
  `X-Trainlight` header, a Bearer `Authorization` header, or a body type outside the three a form
  may use (the dashboard's Dash callbacks are `application/json`). Ingest must be a segment:
  `application/vnd.apache.parquet` or `application/octet-stream`, else 415.
"""

from __future__ import annotations

import ipaddress
import json
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from flask import Flask, Response, request

INTENT_HEADER = "X-Trainlight"
SEGMENT_TYPES = frozenset({"application/vnd.apache.parquet", "application/octet-stream"})
# The only body types a cross-site form or a no-cors fetch can send (CORS "simple" requests).
FORM_TYPES = frozenset(
    {"", "text/plain", "application/x-www-form-urlencoded", "multipart/form-data"}
)
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_WILDCARDS = frozenset({"", "0.0.0.0", "::"})
_SAME_SITE = frozenset({"same-origin", "none"})


@dataclass(frozen=True)
class HostPolicy:
    """The host names this server answers to, and the origins (scheme://host[:port]) it trusts."""

    names: frozenset[str]
    origins: frozenset[str] = frozenset()

    @classmethod
    def serving(cls, bind_host: str = "127.0.0.1", public_urls: Iterable[str] = ()) -> HostPolicy:
        names = {"localhost", bind_host.strip("[]").lower()}
        if bind_host in _WILDCARDS:
            names |= {socket.gethostname().lower(), socket.getfqdn().lower()}
        origins = set()
        for url in public_urls:
            parts = urlsplit(url)
            if parts.hostname:
                names.add(parts.hostname.lower())
                origins.add(f"{parts.scheme}://{parts.netloc}".lower())
        return cls(frozenset(names - {""}), frozenset(origins))

    def allows_host(self, host_header: str) -> bool:
        name = host_name(host_header)
        if name is None:
            return False
        return name in self.names or _is_ip(name)

    def allows_origin(self, origin: str, host_header: str) -> bool:
        parts = urlsplit(origin.lower())
        if parts.scheme not in ("http", "https") or not parts.netloc:
            return False  # includes "null" (sandboxed frames, file://, some redirects)
        return parts.netloc == host_header.lower() or f"{parts.scheme}://{parts.netloc}" in (
            self.origins
        )


def host_name(host_header: str) -> str | None:
    """The name part of a Host header ("[::1]:8050" -> "::1"), or None when it is malformed."""
    try:
        parts = urlsplit(f"//{host_header}")
        _ = parts.port  # raises on a non-numeric port
    except ValueError:
        return None
    return parts.hostname or None


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def refusal_reason(policy: HostPolicy) -> tuple[int, str] | None:
    """Why the current request must be refused (status, message), or None when it may go on."""
    host = request.headers.get("Host", "")
    if not policy.allows_host(host):
        return 421, f"this server does not answer to the host {host[:100]!r} (see --public-url)"
    if request.method in SAFE_METHODS:
        return None
    fetch_site = request.headers.get("Sec-Fetch-Site")
    if fetch_site is not None and fetch_site.lower() not in _SAME_SITE:
        return 403, f"cross-site request refused (Sec-Fetch-Site: {fetch_site[:40]})"
    origin = request.headers.get("Origin")
    if origin is not None and not policy.allows_origin(origin, host):
        return 403, f"cross-origin request refused (Origin: {origin[:100]})"
    body_type = (request.mimetype or "").lower()
    if request.path.rstrip("/") == "/api/v1/ingest" and body_type not in SEGMENT_TYPES:
        return 415, "a segment must be sent as application/vnd.apache.parquet"
    if not _shows_intent(body_type):
        return 403, f"a state-changing request needs the {INTENT_HEADER} header or a JSON body"
    return None


def _shows_intent(body_type: str) -> bool:
    if INTENT_HEADER in request.headers:
        return True
    if request.headers.get("Authorization", "").lower().startswith("bearer "):
        return True
    return body_type not in FORM_TYPES


def install_intent_guard(server: Flask, policy: HostPolicy) -> None:
    """Refuse misdirected, cross-site and intent-less requests before the token or any route."""

    @server.before_request
    def guard() -> Response | None:
        refused = refusal_reason(policy)
        if refused is None:
            return None
        status, message = refused
        body = json.dumps({"error": message})
        return Response(body, status=status, mimetype="application/json")

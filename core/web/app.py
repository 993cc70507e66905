"""The page's Flask application: `create_app(settings, hub, channel)` and nothing global.

Blueprints: `auth` (login), `views` (the page, live events, say/talk, care), `personas`
(the persona editor), `settings` (the `.env` editor). Every POST carries a CSRF token
(Flask-WTF); every answer is JSON with one `error` sentence when something is refused.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from flask import Flask, jsonify, request
from flask_wtf.csrf import CSRFError, CSRFProtect
from werkzeug.exceptions import HTTPException

from core.config import Settings
from core.web.auth import LoginLimiter, guard
from core.web.envschema import Group, read_schema
from core.web.hub import Hub

log = logging.getLogger(__name__)

LOOPBACK_HOSTS = ["127.0.0.1", "localhost", "[::1]", "::1"]


@dataclass
class PageContext:
    """What the views use, kept in `app.extensions["billy"]`."""

    settings: Settings
    hub: Hub
    channel: Any
    """The page's end of the channel: `request(kind, timeout=..., **fields)`, `connected`."""
    start_voice: Callable[[], str]
    """Start Billy when he is down; returns a sentence saying how, raises BillyError if he is there."""
    restart_page: Callable[[], None] = lambda: None
    """Restart this page process (after its own settings changed)."""
    schema: list[Group] = field(default_factory=read_schema)
    limiter: LoginLimiter = field(default_factory=LoginLimiter)


def create_app(context: PageContext, secret_key: bytes) -> Flask:
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY=secret_key,
        SESSION_COOKIE_NAME="billy_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Strict",
        PERMANENT_SESSION_LIFETIME=timedelta(days=30),
        WTF_CSRF_TIME_LIMIT=None,  # valid as long as the session: a page left open keeps working
        MAX_CONTENT_LENGTH=256 * 1024,
        JSON_SORT_KEYS=False,
    )
    if not context.settings.web.password:
        app.config["TRUSTED_HOSTS"] = LOOPBACK_HOSTS  # no password: only this machine, by a loopback name
    app.extensions["billy"] = context
    CSRFProtect(app)

    from core.web import auth, persona_views, settings_views, views

    app.before_request(guard)
    app.register_blueprint(auth.bp)
    app.register_blueprint(views.bp)
    app.register_blueprint(persona_views.bp)
    app.register_blueprint(settings_views.bp)

    @app.errorhandler(CSRFError)
    def csrf_refused(error: CSRFError):
        log.warning("refused a %s to %s: %s", request.method, request.path, error.description)
        return jsonify(error="The page's security token is missing or out of date: reload the page."), 400

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException):
        if (error.code or 500) < 400:  # a routing redirect (a missing trailing slash): let it through
            return error
        return jsonify(error=f"{error.name}: {error.description}"), error.code or 500

    @app.errorhandler(Exception)
    def crash(error: Exception):
        log.exception("the page failed on %s %s", request.method, request.path)
        return jsonify(error="The page failed to do that; its log says why."), 500

    @app.after_request
    def headers(response):
        response.headers["Content-Security-Policy"] = (
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
            "connect-src 'self'; media-src 'self' blob:; frame-ancestors 'none'; form-action 'self'"
        )
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "same-origin"
        if request.endpoint != "static":
            response.headers["Cache-Control"] = "no-store"
        return response

    return app

"""Logging in to Billy's page: one password (WEB_PASSWORD), a rate limit, and a guard on the rest.

With no password set the page listens on 127.0.0.1 only and everyone on this machine is
let in (still with CSRF tokens, and only under a loopback host name, against DNS rebinding).
A session stays valid until logout or until the password changes.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import threading
import time
from collections import deque
from collections.abc import Callable

from flask import Blueprint, current_app, jsonify, redirect, render_template, request, session, url_for

log = logging.getLogger(__name__)

bp = Blueprint("auth", __name__)

OPEN_ENDPOINTS = frozenset({"auth.login", "static"})
"""All that may be reached without a session: the login page and the page's own CSS and JS."""


class LoginLimiter:
    """At most `attempts` wrong passwords per client per `window_s` seconds (and 4x that from everyone)."""

    def __init__(self, attempts: int = 5, window_s: float = 60.0, clock: Callable[[], float] = time.monotonic):
        self.attempts = attempts
        self.window_s = window_s
        self._clock = clock
        self._lock = threading.Lock()
        self._failures: dict[str, deque[float]] = {}
        self._all: deque[float] = deque()

    def _trim(self, times: deque[float], now: float) -> None:
        while times and times[0] <= now - self.window_s:
            times.popleft()

    def wait_seconds(self, client: str) -> float:
        """0 when `client` may try now; else how long until it may."""
        now = self._clock()
        with self._lock:
            mine = self._failures.get(client, deque())
            self._trim(mine, now)
            self._trim(self._all, now)
            waits = []
            if len(mine) >= self.attempts:
                waits.append(mine[0] + self.window_s - now)
            if len(self._all) >= 4 * self.attempts:
                waits.append(self._all[0] + self.window_s - now)
            return max(waits, default=0.0)

    def failed(self, client: str) -> None:
        now = self._clock()
        with self._lock:
            if len(self._failures) > 10_000:
                self._failures.clear()  # a flood of addresses: forget them rather than grow
            self._failures.setdefault(client, deque()).append(now)
            self._all.append(now)


def auth_tag(secret_key: bytes, password: str) -> str:
    """What a logged-in session holds: tied to the password, so changing it logs everyone out."""
    return hmac.new(secret_key, b"billy-login:" + password.encode("utf-8"), hashlib.sha256).hexdigest()


def _page():
    return current_app.extensions["billy"]


def logged_in() -> bool:
    password = _page().settings.web.password
    if not password:
        return True
    tag = session.get("auth")
    return isinstance(tag, str) and hmac.compare_digest(tag, auth_tag(current_app.secret_key, password))


def guard():
    """`before_request`: everything but the login needs a session."""
    if request.endpoint in OPEN_ENDPOINTS or logged_in():
        return None
    if request.method == "GET" and not request.path.startswith(("/api/", "/events")):
        return redirect(url_for("auth.login"))
    return jsonify(error="Log in first."), 401


@bp.route("/login", methods=["GET", "POST"])
def login():
    page = _page()
    password = page.settings.web.password
    if not password:
        return redirect(url_for("views.index"))
    if request.method == "GET":
        return render_template("login.html", error="")
    client = request.remote_addr or "?"
    wait = page.limiter.wait_seconds(client)
    if wait > 0:
        log.warning("login: too many wrong passwords from %s; refused for %.0f s", client, wait)
        message = f"Too many wrong passwords: wait {wait:.0f} s and try again."
        return render_template("login.html", error=message), 429
    given = request.form.get("password", "")
    if not isinstance(given, str) or not hmac.compare_digest(given.encode("utf-8"), password.encode("utf-8")):
        page.limiter.failed(client)
        log.info("login: wrong password from %s", client)
        return render_template("login.html", error="Wrong password."), 401
    session.clear()
    session.permanent = True
    session["auth"] = auth_tag(current_app.secret_key, password)
    log.info("login: %s logged in", client)
    return redirect(url_for("views.index"))


@bp.route("/logout", methods=["POST"])
def logout():
    session.clear()
    return redirect(url_for("auth.login") if _page().settings.web.password else url_for("views.index"))

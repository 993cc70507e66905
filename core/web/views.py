"""The page itself, its live events (server-sent events), and what it asks Billy to do.

Every action is checked here with the channel's own rules (`core.web.protocol`) before it
is sent, and answered with JSON: `{"ok": true, ...}` or `{"error": "one sentence"}`.
"""

from __future__ import annotations

import json
import logging
import queue
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, render_template, request

from core.errors import BillyError
from core.web.channel import ChannelError
from core.web.protocol import ProtocolError, parse_request

log = logging.getLogger(__name__)

bp = Blueprint("views", __name__)

KEEPALIVE_SECONDS = 15.0
"""A comment line this often keeps proxies from closing a quiet event stream, and finds dead browsers."""
TIMEOUTS = {"talk": 5.0, "persona.save": 15.0, "persona.use": 15.0}


def page():
    return current_app.extensions["billy"]


def json_body() -> dict[str, Any]:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise ValueError("Send a JSON object.")
    return body


def ask(kind: str, **fields: Any):
    """Check a request like Billy will, send it, and answer the browser with his reply."""
    try:
        parse_request({"type": kind, "id": 0, **fields})
    except ProtocolError as exc:
        return jsonify(error=f"{str(exc)[:1].upper()}{str(exc)[1:]}."), 400
    try:
        data = page().channel.request(kind, timeout=TIMEOUTS.get(kind, 8.0), **fields)
    except ChannelError as exc:
        return jsonify(error=str(exc)), 503 if not page().channel.connected else 409
    return jsonify(ok=True, **data)


def field(name: str) -> Any:
    try:
        return json_body().get(name)
    except ValueError:
        return None


@bp.get("/")
def index():
    context = page()
    return render_template(
        "index.html",
        has_password=bool(context.settings.web.password),
        levels=[[15, "min"], [35, "low"], [65, "med"], [85, "high"], [101, "max"]],
    )


@bp.get("/events")
def events():
    hub = page().hub
    follower = hub.follow(audio=request.args.get("audio") == "1")

    def stream():
        try:
            yield "retry: 1000\n\n"
            while True:
                try:
                    message = follower.queue.get(timeout=KEEPALIVE_SECONDS)
                except queue.Empty:
                    yield ": keepalive\n\n"
                    continue
                if message is None:
                    return
                yield f"data: {json.dumps(message, separators=(',', ':'), default=str)}\n\n"
        finally:
            hub.unfollow(follower)

    return Response(stream(), mimetype="text/event-stream", headers={"Cache-Control": "no-store"})


@bp.get("/api/status")
def status():
    return jsonify(page().hub.status())


@bp.post("/api/say")
def say():
    return ask("say", text=field("text"))


@bp.post("/api/talk")
def talk():
    return ask("talk", text=field("text"))


@bp.post("/api/command")
def command():
    return ask("command", command=field("command"))


@bp.post("/api/song")
def song():
    return ask("song", song=field("song"))


@bp.post("/api/test/speaker")
def speaker_test():
    return ask("test.speaker")


@bp.post("/api/test/motors")
def motor_test():
    return ask("test.motors")


@bp.post("/api/mic")
def mic_meter():
    return ask("mic.meter", on=field("on"))


@bp.post("/api/start")
def start():
    """Start Billy when he is down (his own process, in its own session)."""
    context = page()
    if context.hub.status()["running"]:
        return jsonify(error="Billy is already running."), 409
    try:
        message = context.start_voice()
    except BillyError as exc:
        return jsonify(error=str(exc)), 409
    except OSError as exc:
        log.error("cannot start Billy: %s", exc)
        return jsonify(error="Billy could not be started; the page's log says why."), 500
    return jsonify(ok=True, message=message)

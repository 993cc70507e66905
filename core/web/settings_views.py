"""The settings editor: every `.env` variable, checked like at start-up, saved atomically with a backup.

Secrets are never sent to the browser, only whether they are set; an empty secret field
keeps the secret, and the browser names a secret in `clear` to empty it. A candidate with
any bad value is refused whole, each bad value with its sentence, and nothing is written.
"""

from __future__ import annotations

import logging
import os

from flask import Blueprint, jsonify

from core.envfile import file_values, update_env_file
from core.errors import BillyError
from core.web.channel import ChannelError
from core.web.envschema import PAGE, candidate_from, check, describe, field_names
from core.web.views import json_body, page

log = logging.getLogger(__name__)

bp = Blueprint("settings", __name__, url_prefix="/api/settings")


@bp.get("")
def read():
    context = page()
    values = file_values(context.settings.env_file)
    return jsonify(file=context.settings.env_file.name, groups=describe(context.schema, values, os.environ))


@bp.post("")
def save():
    context = page()
    env_file = context.settings.env_file
    known = field_names(context.schema)
    try:
        body = json_body()
        form, clear = body.get("values", {}), body.get("clear", [])
        if not isinstance(form, dict) or not isinstance(clear, list):
            raise ValueError('Send {"values": {NAME: text}, "clear": [NAME]}.')

        values, changed = candidate_from(form, clear, file_values(env_file), known)
    except ValueError as exc:
        return jsonify(error=str(exc)), 400
    if not changed:
        return jsonify(ok=True, saved=[], restart=[], page_restarts=False, message="Nothing changed.")
    errors = check(values)
    if errors:
        count = len(errors)
        return jsonify(
            error=f"Nothing was saved: {count} value{'s are' if count > 1 else ' is'} not allowed.", errors=errors
        ), 400
    try:
        update_env_file(env_file, changed)
    except (OSError, BillyError) as exc:
        log.error("cannot write %s: %s", env_file, exc)
        return jsonify(error=f"Cannot write {env_file.name}: {exc}"), 500
    names = sorted(changed)
    log.info("settings saved in %s: %s (previous file kept as %s.bak)", env_file, ", ".join(names), env_file.name)
    restart = [n for n in names if known[n].applies == "restart"]
    page_restarts = any(n in PAGE for n in names)
    if changed.get("PERSONA"):
        try:
            context.channel.request("persona.use", timeout=15.0, name=changed["PERSONA"])
        except ChannelError as exc:
            log.info("PERSONA saved; Billy uses it when he starts (%s)", exc)
    if page_restarts:
        context.restart_page()
    return jsonify(ok=True, saved=names, restart=restart, page_restarts=page_restarts)

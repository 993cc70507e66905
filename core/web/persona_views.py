"""The persona editor's requests. Billy does the work, through his persona store and library.

Names are checked here too (`check_name`), so a name like `../x` is refused before it
leaves the page; Billy checks them again before any path is made.
"""

from __future__ import annotations

from flask import Blueprint, jsonify

from core.errors import PersonaError
from core.persona.library import check_name, parse_edit
from core.web.views import ask, json_body, page

bp = Blueprint("personas", __name__, url_prefix="/api/personas")


def _refuse(exc: Exception):
    return jsonify(error=str(exc)), 400


@bp.get("")
def listing():
    snapshot = page().hub.snapshot()
    persona = snapshot.get("persona") or {}
    return jsonify(current=persona.get("name"), personas=snapshot.get("personas") or [])


@bp.get("/<name>")
def read(name: str):
    try:
        check_name(name)
    except PersonaError as exc:
        return _refuse(exc)
    return ask("persona.get", name=name)


@bp.post("/<name>")
def save(name: str):
    try:
        check_name(name)
        body = json_body()
        parse_edit(body)
    except (PersonaError, ValueError) as exc:
        return _refuse(exc)
    edit = {key: body[key] for key in ("traits", "backstory", "display_name", "instructions", "wakeup") if key in body}
    return ask("persona.save", name=name, edit=edit)


@bp.post("/<name>/use")
def use(name: str):
    try:
        check_name(name)
    except PersonaError as exc:
        return _refuse(exc)
    return ask("persona.use", name=name)


@bp.post("")
def create():
    try:
        body = json_body()
        name, source = check_name(body.get("name")), check_name(body.get("source"))
    except (PersonaError, ValueError) as exc:
        return _refuse(exc)
    return ask("persona.create", name=name, source=source)


@bp.post("/<name>/rename")
def rename(name: str):
    try:
        check_name(name)
        new_name = check_name(json_body().get("new_name"))
    except (PersonaError, ValueError) as exc:
        return _refuse(exc)
    return ask("persona.rename", name=name, new_name=new_name)


@bp.post("/<name>/delete")
def delete(name: str):
    try:
        check_name(name)
    except PersonaError as exc:
        return _refuse(exc)
    return ask("persona.delete", name=name)

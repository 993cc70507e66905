"""MQTT payloads into requests: pure functions, each rejection a `PayloadError` with the reason."""

from __future__ import annotations

import json
import math
from typing import Any

from core.errors import BillyError, PersonaError
from core.persona.requests import PersonaRequest, TraitRequest
from core.talk.requests import COMMANDS, CommandRequest, SayRequest, SongRequest, preview

MAX_SAY_BYTES = 4096
"""Largest `say` payload accepted (bytes); a spoken announcement longer than this is a mistake."""


MAX_SHORT_BYTES = 512
"""Largest `command` or `song` payload accepted (bytes)."""


class PayloadError(BillyError, ValueError):
    """An inbound MQTT payload is too big, not text, or not the expected shape."""


def _check_text(text: str) -> str:
    for char in text:
        if (ord(char) < 32 and char not in "\n\t") or 127 <= ord(char) < 160:
            raise PayloadError(f"control character {char!r} in text; send plain text")
    text = text.strip()
    if not text:
        raise PayloadError("empty text")
    return text


def _decode(payload: bytes, limit: int) -> str:
    if len(payload) > limit:
        raise PayloadError(f"payload of {len(payload)} bytes is over the {limit}-byte limit")
    try:
        text = bytes(payload).decode("utf-8")
    except UnicodeDecodeError:
        raise PayloadError(f"binary payload of {len(payload)} bytes is not UTF-8 text") from None
    return _check_text(text)


def _json_object(text: str) -> dict[str, Any] | None:
    """Parse `text` as a JSON object when it looks like JSON; None when it is plain text.

    Text that starts with `{` must be valid JSON. Text that starts with `[` is plain text
    unless it parses as JSON (so "[laughs] hello" is spoken, `[1, 2]` is rejected).
    """
    if not text.startswith(("{", "[")):
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        if text.startswith("["):
            return None
        raise PayloadError(f"invalid JSON ({err.msg} at character {err.pos})") from None
    if not isinstance(value, dict):
        raise PayloadError(f"JSON must be an object, not {type(value).__name__}")
    return value


def _field(obj: dict[str, Any], key: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str):
        kind = "missing" if value is None else f"{type(value).__name__}, not a string"
        raise PayloadError(f'JSON field "{key}" is {kind}')
    return _check_text(value)


def _say_text(text: str, interactive: bool) -> SayRequest:
    if text.startswith("{{") and text.endswith("}}"):
        inner = text[2:-2].strip()
        if not inner:
            raise PayloadError("empty {{prompt}}")
        return SayRequest(inner, prompt=True, interactive=interactive)
    return SayRequest(text, prompt=False, interactive=interactive)


def parse_say(payload: bytes) -> SayRequest:
    """Plain text is spoken as is; `{{...}}` is a prompt; `{"text": ..., "interactive": bool}`."""
    text = _decode(payload, MAX_SAY_BYTES)
    if text.startswith("{{") and text.endswith("}}"):
        return _say_text(text, interactive=False)
    obj = _json_object(text)
    if obj is None:
        return SayRequest(text, prompt=False, interactive=False)
    interactive = obj.get("interactive", False)
    if not isinstance(interactive, bool):
        raise PayloadError(f'JSON field "interactive" is {type(interactive).__name__}, not true/false')
    return _say_text(_field(obj, "text"), interactive)


def parse_command(payload: bytes) -> CommandRequest:
    """One bare word of `COMMANDS`, any case."""
    text = _decode(payload, MAX_SHORT_BYTES)
    command = text.lower()
    if command not in COMMANDS:
        raise PayloadError(f"unknown command {preview(text)}; use one of {', '.join(COMMANDS)}")
    return CommandRequest(command)


def parse_song(payload: bytes) -> SongRequest:
    """A song name, or `{"song": name}`."""
    text = _decode(payload, MAX_SHORT_BYTES)
    obj = _json_object(text)
    return SongRequest(text if obj is None else _field(obj, "song"))


def parse_persona(payload: bytes) -> PersonaRequest:
    """A persona's name, or `{"persona": name}`; names that could leave the persona folder are refused."""
    from core.persona.library import check_name

    text = _decode(payload, MAX_SHORT_BYTES)
    obj = _json_object(text)
    name = text if obj is None else _field(obj, "persona")
    try:
        return PersonaRequest(check_name(name))
    except PersonaError as err:
        raise PayloadError(str(err).rstrip(".")) from None


def parse_trait(trait: str, payload: bytes) -> TraitRequest:
    """A number 0–100 for `trait` (Home Assistant's number entity sends `42` or `42.0`)."""
    text = _decode(payload, MAX_SHORT_BYTES)
    try:
        value = float(text)
    except ValueError:
        raise PayloadError(f"{trait}: {preview(text)} is not a number from 0 to 100") from None
    if not math.isfinite(value) or not 0 <= value <= 100:
        raise PayloadError(f"{trait}: {preview(text)} is not a number from 0 to 100")
    return TraitRequest(trait, round(value))

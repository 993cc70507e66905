"""The channel between Billy (the voice process) and his page: JSON lines over a Unix socket.

The voice process listens on `<WEB_RUNTIME_DIR>/billy.sock` (mode 0600: its user only); the
page connects to it. Every message is one JSON object on one UTF-8 line ending in `\\n`,
with a `type`. Times `t` are on Billy's clock (`time.monotonic()` seconds of the voice
process); every event also carries `now`, that clock when it was sent, so the page can
place `t` on its own clock.

Billy → page, events. The first on every connection is `hello`; then, as they happen:

    hello    {pid, ready, state, simulated_audio, simulated_pins, persona, personas, songs,
              last_turn, logs}     `ready` is false while Billy loads his models
    state    {state, previous, reason}                 the state names of DESIGN §3
    turn     {transcript, reply, tools, backends, latency_ms, error}   latencies (milliseconds)
    motion   {t, motor, value}     a motor command: mouth/head/tail, value -1..1, heard at `t`
    audio    {t, rate, pcm}        simulation only: what the speaker plays; `t` is when its first
                                   sample is heard, `rate` (hertz), `pcm` base64 int16 LE mono
    mic      {level}               while the meter is on: dBFS of the last ~100 ms
    persona  {persona, personas}   after any persona change (the one in use, all names)
    log      {time, level, name, message}   a log line of the voice process (Unix seconds)
    reply    {id, ok, error | data}         the answer to one request

Page → Billy, requests. Each has an integer `id` and gets exactly one `reply`:

    say {text}            spoken as is (like `billy/say`)
    talk {text}           a typed turn: the brain answers, Billy speaks, then listens
    command {command}     listen, stop, restart or shutdown
    song {song}           play a song by name
    persona.get {name}    data: the persona's traits, backstory, instructions, wake-up phrases
    persona.use {name}    switch to it (and save PERSONA)
    persona.save {name, edit}     edit: {traits, backstory, display_name, instructions, wakeup}
    persona.create {name, source} a copy of persona `source`
    persona.rename {name, new_name}
    persona.delete {name}         not the one in use
    test.speaker {}       say a test line
    test.motors {}        move mouth, head and tail in turn (only while Billy is idle)
    mic.meter {on}        start or stop `mic` events

A request that is malformed, unknown or longer than `MAX_LINE` bytes gets a `reply` with
`ok: false` and one sentence, and the connection stays open. A page that reads too slowly
(`MAX_QUEUED` events waiting) is disconnected; it reconnects and gets a fresh `hello`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from core.errors import BillyError

SOCKET_NAME = "billy.sock"
MAX_LINE = 64 * 1024
"""Longest line (bytes) either side accepts."""
MAX_QUEUED = 2000
"""Events waiting for one page before it is disconnected (about 20 s of speech)."""
MAX_TEXT = 1000
"""Longest say/talk text (characters)."""
COMMANDS = ("listen", "stop", "restart", "shutdown")


class ProtocolError(BillyError, ValueError):
    """A channel message that is not what the protocol allows; the message says why."""

    def __init__(self, message: str, request_id: int | None = None):
        super().__init__(message)
        self.request_id = request_id


def encode(message: dict[str, Any]) -> bytes:
    """One message as its line."""
    return json.dumps(message, ensure_ascii=False, separators=(",", ":"), default=str).encode("utf-8") + b"\n"


def decode(line: bytes) -> dict[str, Any]:
    """One line as a message with a string `type`; ProtocolError otherwise."""
    if len(line) > MAX_LINE:
        raise ProtocolError(f"a line of {len(line)} bytes is over the {MAX_LINE}-byte limit")
    try:
        message = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ProtocolError(f"not a JSON line ({exc.__class__.__name__})") from None
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        raise ProtocolError('a message must be a JSON object with a "type"')
    return message


# --- requests ----------------------------------------------------------------------------


def _text(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{what} must be text")
    if any((ord(c) < 32 and c not in "\n\t") or 127 <= ord(c) < 160 for c in value):
        raise ValueError(f"{what} holds a control character; send plain text")
    value = value.strip()
    if not value:
        raise ValueError(f"{what} is empty")
    if len(value) > MAX_TEXT:
        raise ValueError(f"{what} is {len(value)} characters long; keep it under {MAX_TEXT}")
    return value


def _short(value: Any, what: str) -> str:
    value = _text(value, what)
    if len(value) > 100:
        raise ValueError(f"{what} is too long")
    return value


def _command(value: Any, what: str) -> str:
    if value not in COMMANDS:
        raise ValueError(f"{what} must be one of {', '.join(COMMANDS)}")
    return value


def _boolean(value: Any, what: str) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{what} must be true or false")
    return value


def _object(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValueError(f"{what} must be a JSON object")
    return value


REQUESTS: dict[str, dict[str, Callable[[Any, str], Any]]] = {
    "say": {"text": _text},
    "talk": {"text": _text},
    "command": {"command": _command},
    "song": {"song": _short},
    "persona.get": {"name": _short},
    "persona.use": {"name": _short},
    "persona.save": {"name": _short, "edit": _object},
    "persona.create": {"name": _short, "source": _short},
    "persona.rename": {"name": _short, "new_name": _short},
    "persona.delete": {"name": _short},
    "test.speaker": {},
    "test.motors": {},
    "mic.meter": {"on": _boolean},
}
"""Every request type and its fields, each with its check."""


@dataclass(frozen=True)
class Request:
    """A checked request from the page."""

    id: int
    type: str
    args: dict[str, Any] = field(default_factory=dict)


def parse_request(message: dict[str, Any]) -> Request:
    """Check a page → Billy message against `REQUESTS`; ProtocolError (with the id, if any) otherwise."""
    request_id = message.get("id")
    if isinstance(request_id, bool) or not isinstance(request_id, int):
        raise ProtocolError('a request needs an integer "id"')
    kind = message["type"]
    fields = REQUESTS.get(kind)
    if fields is None:
        raise ProtocolError(f"unknown request {kind[:40]!r}", request_id)
    extra = set(message) - set(fields) - {"type", "id"}
    if extra:
        raise ProtocolError(f"{kind}: unexpected field {sorted(extra)[0][:40]!r}", request_id)
    args = {}
    for name, check in fields.items():
        if name not in message:
            raise ProtocolError(f'{kind}: missing field "{name}"', request_id)
        try:
            args[name] = check(message[name], name)
        except ValueError as exc:
            raise ProtocolError(f"{kind}: {exc}", request_id) from None
    return Request(request_id, kind, args)


def reply(request_id: int | None, error: str = "", **data: Any) -> dict[str, Any]:
    """The `reply` to request `request_id`: ok with `data`, or not ok with one sentence."""
    if error:
        return {"type": "reply", "id": request_id, "ok": False, "error": error}
    return {"type": "reply", "id": request_id, "ok": True, "data": data}

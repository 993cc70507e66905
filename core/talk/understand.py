"""Understanding before any model is asked: Billy's own commands from templates, the home from Home Assistant.

For every brain, Ollama included, a turn first tries Billy's sentence templates (personality,
songs, goodbyes). What they do not recognise goes, when Home Assistant is set up, to HA's own
conversation agent, which is the judge of what the home can do: a command it carries out or a
question it answers is spoken as HA said it. Anything else HA says (no intent matched, no such
device, a greeting) hands the turn to the brain, unless the words had the shape of a home
command, when HA's refusal is the honest answer. A question about whether to do something
never goes to HA. Nothing acts before the
turn commits (the user may still be talking), so `handle` takes the commit to wait for.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from core.errors import BackendError
from core.home.homeassistant import HomeAssistantClient
from core.interfaces import SongBook, ToolCall, ToolRecord, Tools
from core.persona.store import PersonaStore
from core.talk.endofturn import TurnEndings
from core.talk.intents import ADVICE, HOME, Recognized, SentenceTemplates
from core.talk.responses import Responses

log = logging.getLogger(__name__)

TEMPLATES = "templates"
HOME_ASSISTANT = "home assistant"
BRAIN = "brain"
"""How a turn was decided, as recorded in `TurnRecord.decided_by` and `ToolRecord.decided_by`."""


@dataclass(frozen=True)
class Handled:
    """A turn answered without the brain: what to say, and what it stood for."""

    speech: str
    decided_by: str
    tool: ToolRecord | None = None
    song: Any = None
    end: bool = False


class Understanding:
    """Recognises and carries out what Billy can do without a model."""

    def __init__(
        self,
        templates: SentenceTemplates,
        responses: Responses,
        tools: Tools,
        personas: PersonaStore,
        songs: SongBook | None = None,
        home: HomeAssistantClient | None = None,
    ):
        self.templates = templates
        self.endings = TurnEndings()
        self.responses = responses
        self.tools = tools
        self.personas = personas
        self.songs = songs
        self.home = home if home is not None and home.enabled else None

    def recognize(self, text: str) -> Recognized | None:
        """What the templates make of `text` (no side effects; about a millisecond)."""
        return self.templates.recognize(text, self.personas.current().traits, self.songs)

    def finished(self, text: str, recognized: Recognized | None) -> bool:
        """Whether `text` is a whole request, so Billy may answer after the end silence alone."""
        return (recognized is not None and recognized.tool is not None) or self.endings.finished(text)

    def asks_home(self, recognized: Recognized | None) -> bool:
        """Whether this turn goes to Home Assistant before the brain."""
        return self.home is not None and (recognized is None or recognized.intent == HOME)

    async def handle(
        self, text: str, recognized: Recognized | None, commit: Callable[[], Awaitable[None]]
    ) -> Handled | None:
        """Carry out what was recognised once the turn commits; None when the brain should answer."""
        if recognized is not None and recognized.tool is not None:
            await commit()
            return await self._command(recognized)
        if recognized is not None and recognized.intent == ADVICE:
            return None
        if self.home is not None:
            await commit()
            return await self._ask_home(text, recognized)
        if recognized is not None and recognized.intent == HOME:
            await commit()
            return Handled(self._line("home_not_set_up"), TEMPLATES)
        return None

    async def _command(self, recognized: Recognized) -> Handled:
        before = self.personas.current().traits
        call = ToolCall(str(recognized.tool), dict(recognized.arguments))
        outcome = await self.tools.call(call)
        record = ToolRecord(call.name, call.arguments, outcome.result, TEMPLATES)
        if call.name == "update_personality":
            changes = " and ".join(_change(t, before.get(t, v), v) for t, v in recognized.arguments.items())
            same = all(before.get(t) == v for t, v in recognized.arguments.items())
            key = "personality_unchanged" if same else "personality_changed"
            if outcome.error:
                key = "fallback"
            elif self.personas.unsaved:
                key = "personality_not_saved"
            return Handled(self._line(key, changes=changes), TEMPLATES, record)
        if call.name == "play_song":
            song = self.songs.find(outcome.song) if outcome.song and self.songs else None
            if song is None:
                return Handled(self._line("no_songs"), TEMPLATES, record)
            return Handled(self._line("play_song", title=song.title), TEMPLATES, record, song=song)
        if call.name == "end_conversation":
            return Handled(self._line("goodbye"), TEMPLATES, record, end=True)
        return Handled(self._line("fallback"), TEMPLATES, record)

    async def _ask_home(self, text: str, recognized: Recognized | None) -> Handled | None:
        assert self.home is not None
        started = time.monotonic()
        try:
            answer = await self.home.ask(text)
        except BackendError as exc:
            log.warning("Home Assistant could not be asked: %s", exc)
            if recognized is not None and recognized.intent == HOME:
                return Handled(self._line("home_unreachable"), TEMPLATES)
            return None
        log.info(
            "Home Assistant answered in %.0f ms: %s %r", (time.monotonic() - started) * 1000, answer.kind, answer.speech
        )
        if not answer.answered and (recognized is None or recognized.intent != HOME):
            return None  # not for the home after all: HA's refusal or small talk would only confuse
        speech = answer.speech or self._line("home_failed")
        record = ToolRecord("smart_home_command", {"prompt": text}, speech, HOME_ASSISTANT)
        return Handled(speech, HOME_ASSISTANT, record)

    def _line(self, key: str, **slots: object) -> str:
        return self.responses.line(key, self.personas.current(), **slots)


def _change(trait: str, before: int, after: int) -> str:
    """ "humor up to 90", "sarcasm down to 20", "warmth at 65"."""
    if after == before:
        return f"{trait} at {after}"
    return f"{trait} {'up' if after > before else 'down'} to {after}"

"""The conversation's parts that need no model, built once from the persona, the songs and Home Assistant.

The app wires them into the session; the tool evaluation builds the same ones, so what it
measures is what Billy does.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.body.songs import SongLibrary
from core.home.homeassistant import HomeAssistantClient
from core.persona.store import PersonaStore
from core.talk.guard import ReplyGuard
from core.talk.intents import SentenceTemplates
from core.talk.prompt import build_system_prompt, instruction_texts, persona_card
from core.talk.responses import Responses
from core.talk.tools import ToolRegistry
from core.talk.understand import Understanding


@dataclass
class TalkParts:
    personas: PersonaStore
    songs: SongLibrary
    tools: ToolRegistry
    responses: Responses
    understanding: Understanding
    guard: ReplyGuard

    def system_prompt(self) -> str:
        """The long prompt for brains that can follow it (persona, trait rules, tools)."""
        return build_system_prompt(self.personas.current(), self.songs.titles(), tools=self.tools.names())

    def card(self) -> str:
        """The short persona card for the small embedded brain."""
        return persona_card(self.personas.current())

    def fallback(self) -> str:
        """What Billy says when the brain's reply fails the guard twice."""
        return self.responses.line("fallback", self.personas.current())


def build_talk_parts(personas: PersonaStore, songs: SongLibrary, home: HomeAssistantClient | None) -> TalkParts:
    """Billy hears and speaks English (Whisper tiny.en, an English voice), so his templates are English."""
    tools = ToolRegistry(personas, songs.titles, home)
    responses = Responses()
    understanding = Understanding(SentenceTemplates(), responses, tools, personas, songs, home)
    guard = ReplyGuard(lambda: instruction_texts(tools.schemas()))
    return TalkParts(personas, songs, tools, responses, understanding, guard)

"""The brain's part of a turn: stream its words sentence by sentence, guarded, with tool rounds in between.

Each finished sentence is judged by the reply guard before it is handed on to be spoken. A
reply whose first sentence fails is sampled once more; if that fails too, Billy says a line
of his own instead. A reply that goes bad later is cut there. Tool calls (through the API or
written into the text by a small model) run only after the turn commits; their results go
back to the brain for up to `MAX_TOOL_ROUNDS` more steps.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any

from core.brains.toolparse import TextToolCallFilter
from core.interfaces import Brain, BrainDone, SongBook, TextDelta, ToolCall, ToolRecord, Tools, TurnRecord
from core.talk.guard import ReplyGuard
from core.talk.history import History
from core.talk.speech import ms
from core.voice.sentences import SentenceSplitter

log = logging.getLogger(__name__)

MAX_TOOL_ROUNDS = 3
"""Model steps per turn that may call tools before it must answer in words."""
SAMPLES = 2
"""Tries at a reply the guard accepts before Billy says a line of his own."""


@dataclass
class Thought:
    """What the brain said and asked for in one turn."""

    reply: str = ""
    song: Any = None
    end: bool = False


@dataclass
class _Step:
    said: list[str] = field(default_factory=list)
    calls: list[ToolCall] = field(default_factory=list)
    rejected: str = ""


class Thinker:
    """Asks the brain, guards its words, and runs the tools it calls."""

    def __init__(
        self,
        brain: Brain,
        tools: Tools,
        system_prompt: Callable[[], str],
        history: History,
        guard: ReplyGuard,
        fallback: Callable[[], str],
        songs: SongBook | None = None,
    ):
        self.brain = brain
        self.tools = tools
        self.system_prompt = system_prompt
        self.history = history
        self.guard = guard
        self.fallback = fallback
        self.songs = songs

    def remember(self, text: str, said: str) -> None:
        """A turn answered without the brain still belongs to the conversation it remembers."""
        self.history.add({"role": "user", "content": text})
        self.history.add({"role": "assistant", "content": said})

    async def think(
        self,
        text: str,
        say: Callable[[str], None],
        record: TurnRecord,
        t0: float,
        commit: Callable[[], Awaitable[None]],
    ) -> Thought:
        """Answer `text`; `say` takes each sentence that may be spoken, in order."""
        previous = next((m["content"] for m in reversed(self.history.messages()) if m["role"] == "assistant"), "")
        self.history.add({"role": "user", "content": text})
        thought = Thought()
        spoken: list[str] = []

        def accept(sentence: str) -> bool:
            reason = self.guard.check(sentence, " ".join(spoken), previous, text)
            if reason is not None:
                log.warning("reply guard: %s in %r", reason, sentence)
                record.guard.append(f"{reason}: {sentence}")
                return False
            record.latency_ms.setdefault("llm_first_sentence", ms(time.monotonic() - t0))
            spoken.append(sentence)
            say(sentence)
            return True

        for _ in range(MAX_TOOL_ROUNDS + 1):
            step = await self._step(accept, record)
            for _ in range(SAMPLES - 1):
                if not (step.rejected and not step.said and not step.calls):
                    break
                step = await self._step(accept, record)
            if step.rejected and not step.said and not step.calls and not spoken:
                line = self.fallback()
                record.latency_ms.setdefault("llm_first_sentence", ms(time.monotonic() - t0))
                spoken.append(line)
                say(line)
                step.said.append(line)
            said = " ".join(step.said)
            self.history.add(_assistant_message(said, step.calls))
            if not step.calls:
                break
            await commit()
            for i, call in enumerate(step.calls):
                outcome = await self.tools.call(call)
                record.tool_calls.append(ToolRecord(call.name, call.arguments, outcome.result))
                call_id = call.id or f"call_{i}"
                self.history.add(
                    {"role": "tool", "content": outcome.result, "tool_call_id": call_id, "name": call.name}
                )
                if outcome.song:
                    thought.song = self.songs.find(outcome.song) if self.songs else None
                if outcome.end_conversation:
                    thought.end = True
            if thought.song is not None and not said:
                break
        thought.reply = " ".join(spoken)
        return thought

    async def _step(self, accept: Callable[[str], bool], record: TurnRecord) -> _Step:
        """One streamed model step: its accepted sentences and tool calls, or why it was cut."""
        messages = [{"role": "system", "content": self.system_prompt()}, *self.history.messages()]
        splitter = SentenceSplitter()
        parser = TextToolCallFilter(self.tools.schemas())
        step = _Step()

        def take(pieces: list[str]) -> bool:
            for sentence in pieces:
                if not accept(sentence):
                    step.rejected = sentence
                    return False
                step.said.append(sentence)
            return True

        async with aclosing(self.brain.chat(messages, self.tools.schemas())) as events:
            async for event in events:
                if isinstance(event, TextDelta):
                    speakable, found = parser.feed(event.text)
                    step.calls.extend(found)
                    if speakable and not take(splitter.feed(speakable)):
                        break
                elif isinstance(event, ToolCall):
                    step.calls.append(event)
                elif isinstance(event, BrainDone):
                    break
        record.backends["llm"] = self.brain.last_used
        if not step.rejected:
            speakable, found = parser.flush()
            step.calls.extend(found)
            take([*splitter.feed(speakable), *splitter.flush()] if speakable else splitter.flush())
        return step


def _assistant_message(said: str, calls: list[ToolCall]) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": said}
    if calls:
        message["tool_calls"] = [
            {"id": c.id or f"call_{i}", "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for i, c in enumerate(calls)
        ]
    return message

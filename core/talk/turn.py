"""One turn: think and speak at once, run the tools the brain asks for, and record how long it took.

The brain streams text; each finished sentence goes to the voice while the brain still writes.
Tool calls (through the API or written into the text by a small model) run after the turn
commits, their results go back to the brain for up to `MAX_TOOL_ROUNDS` more steps, and a
song the tools chose plays after the answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.brains.toolparse import TextToolCallFilter
from core.errors import BillyError
from core.interfaces import (
    Body,
    Brain,
    BrainDone,
    SongBook,
    Speaker,
    TextDelta,
    ToolCall,
    ToolRecord,
    Tools,
    TurnRecord,
)
from core.state import State, StateOwner
from core.talk.history import History
from core.talk.speech import Speech, ms
from core.voice.sentences import SentenceSplitter

log = logging.getLogger(__name__)

MAX_TOOL_ROUNDS = 3
"""Model steps per turn that may call tools before it must answer in words."""


class Outcome(enum.Enum):
    """How a turn ended, which decides what the conversation does next."""

    CONTINUE = "continue"
    """Answered: listen for a follow-up."""
    END = "end"
    """The conversation is over (a goodbye, or an error that was announced)."""
    NO_SPEECH = "no speech"
    """Nothing usable was heard: listen again, up to the retry limit."""


class CancelReason(enum.Enum):
    """Why a turn or a conversation was cancelled."""

    BARGE_IN = "barge-in"
    RESUMED = "resumed"
    """The user went on talking before the turn committed: it never happened."""
    DOUBLE_PRESS = "double press"
    STOP_COMMAND = "stop command"
    SHUTDOWN = "shutting down"


@dataclass
class SessionHooks:
    """Observers of the session; each must be quick (hand work over, don't block)."""

    on_turn: list[Callable[[TurnRecord], None]] = field(default_factory=list)


class Responder:
    """Answers one message at a time: brain → sentences → voice, tools in between."""

    def __init__(
        self,
        state: StateOwner,
        speaker: Speaker,
        speech: Speech,
        brain: Brain,
        tools: Tools,
        system_prompt: Callable[[], str],
        history: History,
        hooks: SessionHooks,
        sounds_dir: Path,
        body: Body | None = None,
        songs: SongBook | None = None,
    ):
        self.state = state
        self.speaker = speaker
        self.speech = speech
        self.brain = brain
        self.tools = tools
        self.system_prompt = system_prompt
        self.history = history
        self.hooks = hooks
        self.sounds_dir = sounds_dir
        self.body = body
        self.songs = songs

    async def respond(
        self,
        text: str,
        record: TurnRecord,
        t0: float,
        commit: Callable[[], Awaitable[None]],
        cancel_reason: Callable[[], CancelReason | None],
        speech_end: float | None = None,
    ) -> Outcome:
        """Think and speak at once; `commit` runs before the first sound or action."""
        self.state.set(State.THINKING, "thinking")
        record.transcript = record.transcript or text
        self.speech.first_sound.arm()
        sentences: asyncio.Queue[str | None] = asyncio.Queue()
        speaking = asyncio.create_task(self.speech.speak(sentences, record, commit), name="speak")
        try:
            try:
                reply, song, end = await self._think(text, sentences, record, t0, commit)
                record.reply = reply
            finally:
                sentences.put_nowait(None)
            await speaking
        except BillyError as exc:
            log.error("the turn failed: %s", exc)
            with contextlib.suppress(BillyError):
                await speaking
            await self.error_cue(record, exc)
            return Outcome.END
        except asyncio.CancelledError:
            speaking.cancel()
            reason = cancel_reason()
            if reason is not CancelReason.RESUMED:  # a resumed turn never happened
                record.error = f"interrupted ({reason.value if reason else 'cancelled'})"
                self.publish(record)
            raise
        first_heard = self.speech.first_sound.time
        if speech_end is not None and first_heard is not None:
            record.latency_ms["end_of_speech_to_first_audio"] = ms(first_heard - speech_end)
            record.latency_ms["output_latency"] = ms(first_heard - self.speech.first_sound.queued_at)
        self.publish(record)
        if song is not None:
            await self.perform(song)
        return Outcome.END if end else Outcome.CONTINUE

    async def announce(self, text: str) -> None:
        """Speak `text` as it is (an announcement), sentence by sentence."""
        self.state.set(State.SPEAKING, "announcement")
        sentences: asyncio.Queue[str | None] = asyncio.Queue()
        splitter = SentenceSplitter()
        for sentence in [*splitter.feed(text), *splitter.flush()]:
            sentences.put_nowait(sentence)
        sentences.put_nowait(None)
        await self.speech.speak(sentences, TurnRecord(transcript=""), _nothing)

    async def perform(self, song: Any) -> None:
        """Play a song with the fish dancing."""
        if self.body is None:
            return
        self.state.set(State.PLAYING_SONG, song.title)
        await self.body.perform(song, self.speaker)

    async def error_cue(self, record: TurnRecord, exc: Exception) -> None:
        record.error = str(exc)
        self.publish(record)
        self.state.set(State.ERROR, str(exc))
        self.speaker.clear()
        await self.speech.play_file(self.sounds_dir / "error.wav")

    def publish(self, record: TurnRecord) -> None:
        log.info(
            "turn: %s",
            ", ".join(f"{k} {v:.0f} ms" for k, v in record.latency_ms.items()) or "no timings",
        )
        for hook in self.hooks.on_turn:
            try:
                hook(record)
            except Exception:
                log.exception("turn observer failed")

    async def _think(
        self,
        text: str,
        sentences: asyncio.Queue[str | None],
        record: TurnRecord,
        t0: float,
        commit: Callable[[], Awaitable[None]],
    ) -> tuple[str, Any, bool]:
        self.history.add({"role": "user", "content": text})
        splitter = SentenceSplitter()
        parser = TextToolCallFilter(self.tools.schemas())
        spoken: list[str] = []
        song = None
        end = False

        def emit(pieces: list[str]) -> None:
            for sentence in pieces:
                if "llm_first_sentence" not in record.latency_ms:
                    record.latency_ms["llm_first_sentence"] = ms(time.monotonic() - t0)
                sentences.put_nowait(sentence)

        for _ in range(MAX_TOOL_ROUNDS + 1):
            messages = [{"role": "system", "content": self.system_prompt()}, *self.history.messages()]
            calls: list[ToolCall] = []
            content: list[str] = []
            async for event in self.brain.chat(messages, self.tools.schemas()):
                if isinstance(event, TextDelta):
                    speakable, found = parser.feed(event.text)
                    calls.extend(found)
                    if speakable:
                        content.append(speakable)
                        emit(splitter.feed(speakable))
                elif isinstance(event, ToolCall):
                    calls.append(event)
                elif isinstance(event, BrainDone):
                    break
            speakable, found = parser.flush()
            calls.extend(found)
            if speakable:
                content.append(speakable)
                emit(splitter.feed(speakable))
            record.backends["llm"] = self.brain.last_used
            said = "".join(content).strip()
            spoken.append(said)
            self.history.add(_assistant_message(said, calls))
            if not calls:
                break
            await commit()
            for i, call in enumerate(calls):
                outcome = await self.tools.call(call)
                record.tool_calls.append(ToolRecord(call.name, call.arguments, outcome.result))
                log.info("tool %s(%s) -> %s", call.name, call.arguments, outcome.result)
                call_id = call.id or f"call_{i}"
                self.history.add(
                    {"role": "tool", "content": outcome.result, "tool_call_id": call_id, "name": call.name}
                )
                if outcome.song:
                    song = self.songs.find(outcome.song) if self.songs else None
                if outcome.end_conversation:
                    end = True
            if song is not None and not said:
                break
        emit(splitter.flush())
        return " ".join(s for s in spoken if s), song, end


def _assistant_message(said: str, calls: list[ToolCall]) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": said}
    if calls:
        message["tool_calls"] = [
            {"id": c.id or f"call_{i}", "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for i, c in enumerate(calls)
        ]
    return message


async def _nothing() -> None:
    """An announcement has nothing to commit: nobody was speaking."""

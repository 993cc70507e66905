"""One turn: understand, then answer while speaking, and record how long it took.

A turn first tries to understand the words without a model (Billy's sentence templates, then
Home Assistant's agent); a command found there is carried out once the turn commits and
acknowledged in Billy's own words at once. Everything else goes to the brain, whose
sentences go to the voice while it still writes. A song chosen by either plays afterwards.
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

from core.errors import BillyError
from core.interfaces import (
    Body,
    Speaker,
    TurnRecord,
)
from core.state import State, StateOwner
from core.talk.intents import Recognized
from core.talk.speech import Speech, ms
from core.talk.think import Thinker
from core.talk.understand import BRAIN, Understanding
from core.voice.sentences import SentenceSplitter

log = logging.getLogger(__name__)


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
    """Answers one message at a time: understanding or brain → sentences → voice."""

    def __init__(
        self,
        state: StateOwner,
        speaker: Speaker,
        speech: Speech,
        understanding: Understanding | None,
        thinker: Thinker,
        hooks: SessionHooks,
        sounds_dir: Path,
        body: Body | None = None,
    ):
        self.state = state
        self.speaker = speaker
        self.speech = speech
        self.understanding = understanding
        self.thinker = thinker
        self.hooks = hooks
        self.sounds_dir = sounds_dir
        self.body = body

    async def respond(
        self,
        text: str,
        record: TurnRecord,
        t0: float,
        commit: Callable[..., Awaitable[None]],
        cancel_reason: Callable[[], CancelReason | None],
        speech_end: float | None = None,
    ) -> Outcome:
        """Understand or think, and speak at once; `commit` runs before the first sound or action.

        `commit(finished=...)` is told whether the words form a whole request, so that a whole
        one need not wait out the pause tolerance.
        """
        record.transcript = record.transcript or text
        recognized = None
        finished = False
        if self.understanding is not None:
            recognized = self.understanding.recognize(text)
            record.latency_ms["understand"] = ms(time.monotonic() - t0)
            finished = self.understanding.finished(text, recognized)
            log.info("heard a %s request", "whole" if finished else "possibly unfinished")

        async def commit_turn() -> None:
            await commit(finished=finished)

        self.speech.first_sound.arm()
        sentences: asyncio.Queue[str | None] = asyncio.Queue()
        speaking = asyncio.create_task(self.speech.speak(sentences, record, commit_turn), name="speak")
        try:
            try:
                reply, song, end = await self._answer(text, recognized, sentences.put_nowait, record, t0, commit_turn)
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

    async def _answer(
        self,
        text: str,
        recognized: Recognized | None,
        say: Callable[[str], None],
        record: TurnRecord,
        t0: float,
        commit: Callable[[], Awaitable[None]],
    ) -> tuple[str, Any, bool]:
        """(reply, song, end): from understanding when it handles the words, else from the brain."""
        handled = None
        if self.understanding is not None:
            handled = await self.understanding.handle(text, recognized, commit)
        if handled is None:
            record.decided_by = BRAIN
            thought = await self.thinker.think(text, say, record, t0, commit)
            return thought.reply, thought.song, thought.end
        record.decided_by = handled.decided_by
        if handled.tool is not None:
            record.tool_calls.append(handled.tool)
        self.thinker.remember(text, handled.speech)
        record.latency_ms.setdefault("llm_first_sentence", ms(time.monotonic() - t0))
        splitter = SentenceSplitter()
        for sentence in [*splitter.feed(handled.speech), *splitter.flush()]:
            say(sentence)
        return handled.speech, handled.song, handled.end

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
            "turn (%s): %s",
            record.decided_by or "announcement",
            ", ".join(f"{k} {v:.0f} ms" for k, v in record.latency_ms.items()) or "no timings",
        )
        for hook in self.hooks.on_turn:
            try:
                hook(record)
            except Exception:
                log.exception("turn observer failed")


async def _nothing(finished: bool = True) -> None:
    """An announcement has nothing to commit: nobody was speaking."""

"""The voice session: triggers → listen → transcribe → think → speak → follow up.

Everything here runs on the one asyncio loop. Threads (mic, speaker, GPIO, MQTT) only hand
data over with `loop.call_soon_threadsafe`; blocking model calls run in executors. The
session is the only writer of `StateOwner`. It owns the conversation (one task) and the turn
inside it (another task), so a press can cancel just the turn and a double press the whole.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from core.config import Settings
from core.errors import BillyError
from core.interfaces import (
    Body,
    Brain,
    Microphone,
    SongBook,
    Speaker,
    Synthesizer,
    Tools,
    Transcriber,
    TurnRecord,
    WakeWord,
)
from core.listen.endpoint import Endpointer
from core.state import State, StateOwner
from core.talk.guard import ReplyGuard
from core.talk.history import History
from core.talk.listener import Heard, Listener
from core.talk.speech import Speech, ms
from core.talk.think import Thinker
from core.talk.turn import CancelReason, Outcome, Responder, SessionHooks
from core.talk.understand import Understanding

log = logging.getLogger(__name__)

DOUBLE_PRESS_SECONDS = 0.6
"""Two presses closer than this end the session."""


class Session:
    """Owns the conversation: who may speak, when to listen, and the state Billy is in."""

    def __init__(
        self,
        settings: Settings,
        state: StateOwner,
        mic: Microphone,
        speaker: Speaker,
        transcriber: Transcriber,
        brain: Brain,
        synthesizer: Synthesizer,
        tools: Tools,
        system_prompt: Callable[[], str],
        wakeup_clip: Callable[[], Path | None],
        sounds_dir: Path,
        body: Body | None = None,
        songs: SongBook | None = None,
        wake_word: WakeWord | None = None,
        hooks: SessionHooks | None = None,
        endpointer: Endpointer | None = None,
        understanding: Understanding | None = None,
        guard: ReplyGuard | None = None,
        fallback: Callable[[], str] | None = None,
    ):
        """`understanding`: what Billy recognises without a model (None: the brain answers everything);
        `guard` judges the brain's sentences against the instruction texts it returns; `fallback`
        is the line said when the brain's reply fails the guard twice."""
        self.settings = settings
        self.state = state
        self.speaker = speaker
        self.transcriber = transcriber
        self.wakeup_clip = wakeup_clip
        self.sounds_dir = sounds_dir
        self.body = body
        self.songs = songs
        self.hooks = hooks or SessionHooks()
        self.history = History(settings.session.history_max_tokens)
        self.listener = Listener(
            settings.endpoint,
            settings.audio,
            mic,
            speaker,
            transcriber,
            wake_word,
            on_wake=self.wake,
            is_busy=lambda: self.busy,
            endpointer=endpointer,
        )
        self.listener.on_resumed = lambda: self._cancel_turn(CancelReason.RESUMED)
        self.listener.on_ended = self._thinking
        self.speech = Speech(speaker, synthesizer, state, body)
        self.thinker = Thinker(
            brain,
            tools,
            system_prompt,
            self.history,
            guard or ReplyGuard(lambda: [system_prompt()]),
            fallback or (lambda: "Sorry, I lost my train of thought."),
            songs,
        )
        self.responder = Responder(
            state, speaker, self.speech, understanding, self.thinker, self.hooks, sounds_dir, body
        )
        self._conversation: asyncio.Task | None = None
        self._turn: asyncio.Task | None = None
        self._cancel_reason: CancelReason | None = None
        self._last_press = -1.0
        self._ending: asyncio.Task | None = None

    # --- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        """Start listening to the mic; call once, on the loop."""
        await self.listener.start()

    async def close(self) -> None:
        await self.end_conversation(CancelReason.SHUTDOWN)
        await self.listener.close()
        self.speech.close()

    @property
    def busy(self) -> bool:
        """True while a conversation, an announcement or a song is under way."""
        return self._conversation is not None and not self._conversation.done()

    @property
    def awaiting_speech(self) -> bool:
        """True when Billy listens for a user and nobody is talking: the moment to speak to him."""
        turn_running = self._turn is not None and not self._turn.done()
        return (
            self.busy
            and self.listener.listening
            and not self.listener.in_speech
            and not turn_running
            and not self.listener.gated(time.monotonic())
            and self.state.state is State.LISTENING
        )

    async def wait_until_free(self) -> None:
        """Wait for the conversation under way to end, however it ends; being cancelled ends the wait."""
        while self.busy:
            try:
                await asyncio.shield(self._conversation)  # type: ignore[arg-type]
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    raise  # the waiter itself is cancelled (shutdown), not just the conversation
            except Exception:
                log.debug("the conversation waited for ended with an error", exc_info=True)

    # --- triggers (all called on the loop) ---------------------------------------------

    def press(self) -> None:
        """The button: start a session, interrupt Billy, or (twice quickly) end the session."""
        now = time.monotonic()
        double = now - self._last_press < DOUBLE_PRESS_SECONDS
        self._last_press = now
        if double and self.busy:
            log.info("double press: ending the session")
            self._ending = asyncio.create_task(self.end_conversation(CancelReason.DOUBLE_PRESS))
            return
        if not self.busy:
            self._start(self._converse("button"))
            return
        if self._turn is not None and not self._turn.done():
            log.info("press while %s: interrupting", self.state.state.value)
            self._cancel_turn(CancelReason.BARGE_IN)

    def wake(self) -> None:
        """The wake word was heard while idle."""
        if not self.busy:
            self._start(self._converse("wake word"))

    def listen(self) -> None:
        """Remote `listen` command: like a press when idle."""
        if not self.busy:
            self._start(self._converse("listen command", clip=False))

    async def stop_speaking(self) -> None:
        """Remote `stop`: silence Billy and end whatever he is doing."""
        await self.end_conversation(CancelReason.STOP_COMMAND)

    async def say(self, text: str, prompt: bool = False, interactive: bool = False) -> None:
        """Speak an announcement (or answer it as a prompt); waits until Billy is free first."""
        await self.wait_until_free()
        self._start(self._announce(text, prompt, interactive))
        await self.wait_until_free()

    async def sing(self, name: str) -> bool:
        """Play a song by name or keyword; False when no such song is installed."""
        song = self.songs.find(name) if self.songs else None
        if song is None:
            titles = self.songs.titles() if self.songs else []
            log.warning("no song matches %r; installed: %s", name, ", ".join(titles) or "none")
            return False
        await self.wait_until_free()
        self._start(self.responder.perform(song))
        await self.wait_until_free()
        return True

    async def end_conversation(self, reason: CancelReason) -> None:
        task = self._conversation
        if task is None or task.done():
            return
        self._cancel_reason = reason
        self.speech.silence()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task

    # --- conversation flows -------------------------------------------------------------

    def _start(self, flow: Awaitable[None]) -> None:
        self._conversation = asyncio.create_task(self._guarded(flow), name="conversation")

    async def _guarded(self, flow: Awaitable[None]) -> None:
        """Run one flow; whatever happens, Billy ends up idle and quiet."""
        self._cancel_reason = None
        try:
            await flow
        except asyncio.CancelledError:
            log.info("session ended (%s)", self._cancel_reason.value if self._cancel_reason else "cancelled")
        except Exception as exc:  # a bug or a dead part: say so, keep running
            log.error("session failed: %s", exc, exc_info=not isinstance(exc, BillyError))
            self.state.set(State.ERROR, str(exc))
            with contextlib.suppress(Exception):
                await self.speech.play_file(self.sounds_dir / "error.wav")
        finally:
            self.listener.stop_listening()
            self.history.clear()
            if self.body is not None:
                self.body.stop()
            self.state.set(State.IDLE, "session over")

    async def _converse(self, trigger: str, clip: bool = True) -> None:
        self.history.clear()
        self.state.set(State.LISTENING, trigger)
        if clip:
            path = self.wakeup_clip()
            if path is not None:
                await self.speech.play_file(path)
        misses = 0
        while True:
            heard = await self._next_utterance(self.settings.session.mic_timeout_seconds)
            if heard is None:
                log.info("no speech for %.1f s: session over", self.settings.session.mic_timeout_seconds)
                return
            outcome = await self._run_turn(heard)
            if outcome is Outcome.NO_SPEECH:
                misses += 1
                if misses > self.settings.session.follow_up_retry_limit:
                    log.info("nothing usable heard %d times: session over", misses)
                    return
                continue
            misses = 0
            if outcome is Outcome.END or self.settings.session.run_mode == "dory":
                return

    async def _announce(self, text: str, prompt: bool, interactive: bool) -> None:
        outcome = Outcome.CONTINUE
        if prompt:
            self.history.clear()
            self.state.set(State.THINKING, "prompt")
            record = TurnRecord(transcript=text)
            outcome = await self.responder.respond(
                text, record, time.monotonic(), self.listener.commit, lambda: self._cancel_reason
            )
        else:
            await self.responder.announce(text)
        if interactive and outcome is not Outcome.END:
            await self._converse("announcement", clip=False)

    async def _next_utterance(self, timeout: float, keep: bool = False) -> Heard | None:
        self.state.set(State.LISTENING, "waiting for speech")
        return await self.listener.next_utterance(timeout, keep)

    # --- a turn -------------------------------------------------------------------------

    def _thinking(self) -> None:
        """The speaker is done: a turn under way shows Billy thinking until he speaks."""
        if self._turn is not None and not self._turn.done() and self.state.state is State.LISTENING:
            self.state.set(State.THINKING, "thinking")

    def _cancel_turn(self, reason: CancelReason) -> None:
        self._cancel_reason = reason
        if reason is not CancelReason.RESUMED:
            self.speech.silence()
        if self._turn is not None:
            self._turn.cancel()

    async def _run_turn(self, heard: Heard) -> Outcome:
        """Run one turn as its own task so a press or more speech can cancel just the turn."""
        while True:
            before = self.history.snapshot()
            self._cancel_reason = None
            self._turn = asyncio.create_task(self._turn_body(heard), name="turn")
            try:
                return await self._turn
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    self._turn.cancel()
                    raise
                reason = self._cancel_reason
            finally:
                self._turn = None
            if reason is CancelReason.RESUMED:
                self.history.restore(before)  # the turn never committed: take it back whole
                continued = await self._next_utterance(self.settings.endpoint.max_utterance_seconds, keep=True)
                if continued is None:
                    return Outcome.NO_SPEECH
                heard = continued
                continue
            log.info("turn interrupted (%s): listening again", reason.value if reason else "cancelled")
            return Outcome.CONTINUE

    async def _turn_body(self, heard: Heard) -> Outcome:
        utterance = heard.utterance
        record = TurnRecord(transcript="")
        record.latency_ms["endpoint"] = ms(utterance.ended_time - utterance.speech_end_time)
        if self.listener.ended:
            self._thinking()
        stt_start = time.monotonic()
        try:
            transcript = await heard.transcript
        except BillyError as exc:
            await self.listener.commit(finished=True)  # let the speaker finish before the error cue
            log.error("speech to text failed: %s", exc)
            await self.responder.error_cue(record, exc)
            return Outcome.END
        record.latency_ms["stt"] = ms(time.monotonic() - stt_start)
        record.backends["stt"] = self.transcriber.last_used
        text = transcript.text.strip()
        if not text:
            await self.listener.commit(finished=True)  # a cough before more words is no reason to stop
            log.info("heard no words (%s)", transcript.rejected_reason or "empty")
            self.state.set(State.LISTENING, "nothing heard")
            return Outcome.NO_SPEECH
        log.info("heard: %s", text)
        record.transcript = text
        return await self.responder.respond(
            text,
            record,
            time.monotonic(),
            self.listener.commit,
            lambda: self._cancel_reason,
            speech_end=utterance.speech_end_time,
        )

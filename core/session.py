"""The voice session: trigger → listen → transcribe → think → speak → follow up.

Everything here runs on the one asyncio loop. Threads (mic, speaker, GPIO, MQTT) only hand
data over with `loop.call_soon_threadsafe`; blocking model calls run in executors. The
session is the only writer of `StateOwner`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from core.config import Settings
from core.endpoint import Endpointer, SpeechEnded, SpeechPaused, SpeechResumed, SpeechStarted, Utterance
from core.errors import BillyError
from core.history import History
from core.interfaces import (
    AudioFrame,
    Brain,
    BrainDone,
    Microphone,
    PlayedBlock,
    Speaker,
    Synthesizer,
    TextDelta,
    ToolCall,
    ToolRecord,
    Transcriber,
    Transcript,
    TurnRecord,
)
from core.sentences import SentenceSplitter
from core.simaudio import read_wav
from core.state import State, StateOwner
from core.toolparse import TextToolCallFilter

log = logging.getLogger(__name__)

DOUBLE_PRESS_SECONDS = 0.6
"""Two presses closer than this end the session."""
MAX_TOOL_ROUNDS = 3
"""Model steps per turn that may call tools before it must answer in words."""
FRAME_QUEUE_FRAMES = 500
"""Mic frames (20 ms each, so 10 s) buffered for the loop; the oldest are dropped beyond."""
MIC_STALL_SECONDS = 0.5
"""How long a turn waits for late mic frames before it commits without them."""


@dataclass
class Heard:
    """An utterance and, when the end silence was used to start STT early, its transcript task."""

    utterance: Utterance
    speculative: asyncio.Future[Transcript] | None = None


@dataclass
class SessionHooks:
    """Observers of the session; each must be quick (hand work over, don't block)."""

    on_turn: list[Callable[[TurnRecord], None]] = field(default_factory=list)


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
        tools: Any,
        system_prompt: Callable[[], str],
        wakeup_clip: Callable[[], Path | None],
        sounds_dir: Path,
        body: Any = None,
        songs: Any = None,
        wake_word: Any = None,
        hooks: SessionHooks | None = None,
    ):
        self.settings = settings
        self.state = state
        self.mic = mic
        self.speaker = speaker
        self.transcriber = transcriber
        self.brain = brain
        self.synthesizer = synthesizer
        self.tools = tools
        self.system_prompt = system_prompt
        self.wakeup_clip = wakeup_clip
        self.sounds_dir = sounds_dir
        self.body = body
        self.songs = songs
        self.wake_word = wake_word
        self.hooks = hooks or SessionHooks()
        self.history = History(settings.session.history_max_tokens)
        self._endpointer = Endpointer(settings.endpoint, mic.sample_rate)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._frames: asyncio.Queue[AudioFrame] | None = None
        self._events: asyncio.Queue[Any] = asyncio.Queue()
        self._stt_pool = ThreadPoolExecutor(1, thread_name_prefix="stt")
        self._tts_pool = ThreadPoolExecutor(1, thread_name_prefix="tts")
        self._wake_pool = ThreadPoolExecutor(1, thread_name_prefix="wakeword")
        self._listening = False
        self._in_speech = False
        self._conversation: asyncio.Task | None = None
        self._turn: asyncio.Task | None = None
        self._cancel_reason = ""
        self._audio_started = False
        self._commit_at: float | None = None
        """Play-clock time before which the turn may neither speak nor act (the user may go on)."""
        self._mic_until = 0.0
        """Play-clock time up to which the endpointer has heard the mic."""
        self._last_press = -1.0
        self._wake_pending = False
        self._first_sound: _FirstSound = _FirstSound()
        self._dropped_frames = 0
        self._pump_task: asyncio.Task | None = None
        self._ending: asyncio.Task | None = None
        self.speaker.add_listener(self._first_sound.on_played)

    # --- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        """Start the mic and the frame pump; call once, on the loop."""
        self._loop = asyncio.get_running_loop()
        self._frames = asyncio.Queue(FRAME_QUEUE_FRAMES)
        self._pump_task = asyncio.create_task(self._pump(), name="mic-pump")
        self.mic.start(self._on_frame)

    async def close(self) -> None:
        await self.end_conversation("shutting down")
        self.mic.stop()
        if self._pump_task:
            self._pump_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pump_task
        for pool in (self._stt_pool, self._tts_pool, self._wake_pool):
            pool.shutdown(wait=False, cancel_futures=True)

    @property
    def busy(self) -> bool:
        """True while a conversation, an announcement or a song is under way."""
        return self._conversation is not None and not self._conversation.done()

    @property
    def awaiting_speech(self) -> bool:
        """True when Billy listens for a user and nobody is talking: the moment to speak to him."""
        tail = self.settings.audio.half_duplex_tail_ms / 1000
        turn_running = self._turn is not None and not self._turn.done()
        return (
            self.busy
            and self._listening
            and not self._in_speech
            and not turn_running
            and not self.speaker.is_playing
            and time.monotonic() > self.speaker.heard_until + tail
            and self.state.state is State.LISTENING
        )

    async def wait_until_free(self) -> None:
        while self.busy:
            with contextlib.suppress(asyncio.CancelledError, BaseException):
                await asyncio.shield(self._conversation)  # type: ignore[arg-type]

    # --- triggers (all called on the loop) ---------------------------------------------

    def press(self) -> None:
        """The button: start a session, interrupt Billy, or (twice quickly) end the session."""
        now = time.monotonic()
        double = now - self._last_press < DOUBLE_PRESS_SECONDS
        self._last_press = now
        if double and self.busy:
            log.info("double press: ending the session")
            self._ending = asyncio.create_task(self.end_conversation("double press"))
            return
        if not self.busy:
            self._start_conversation(self._converse("button"))
            return
        if self._turn is not None and not self._turn.done():
            log.info("press while %s: interrupting", self.state.state.value)
            self._cancel_turn("barge-in")

    def wake(self) -> None:
        """The wake word was heard while idle."""
        if not self.busy:
            self._start_conversation(self._converse("wake word"))

    def listen(self) -> None:
        """Remote `listen` command: like a press when idle."""
        if not self.busy:
            self._start_conversation(self._converse("listen command", clip=False))

    async def stop_speaking(self) -> None:
        """Remote `stop`: silence Billy and end whatever he is doing."""
        await self.end_conversation("stop command")

    async def say(self, text: str, prompt: bool = False, interactive: bool = False) -> None:
        """Speak an announcement (or answer it as a prompt); waits until Billy is free first."""
        await self.wait_until_free()
        self._start_conversation(self._announce(text, prompt, interactive))
        await self.wait_until_free()

    async def sing(self, name: str) -> bool:
        """Play a song by name or keyword; False when no such song is installed."""
        song = self.songs.find(name) if self.songs else None
        if song is None:
            log.warning("no song matches %r; installed: %s", name, ", ".join(self.song_titles()) or "none")
            return False
        await self.wait_until_free()
        self._start_conversation(self._perform(song))
        await self.wait_until_free()
        return True

    async def end_conversation(self, reason: str) -> None:
        task = self._conversation
        if task is None or task.done():
            return
        self._cancel_reason = reason
        self.speaker.clear()
        if self.body is not None:
            self.body.stop()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task

    def song_titles(self) -> list[str]:
        return self.songs.titles() if self.songs else []

    # --- conversation flows -------------------------------------------------------------

    def _start_conversation(self, flow: Any) -> None:
        self._conversation = asyncio.create_task(self._guarded(flow), name="conversation")

    async def _guarded(self, flow: Any) -> None:
        """Run one flow; whatever happens, Billy ends up idle and quiet."""
        try:
            await flow
        except asyncio.CancelledError:
            log.info("session ended (%s)", self._cancel_reason or "cancelled")
        except Exception as exc:  # a bug or a dead part: say so, keep running
            log.error("session failed: %s", exc, exc_info=not isinstance(exc, BillyError))
            self.state.set(State.ERROR, str(exc))
            with contextlib.suppress(Exception):
                await self._play_file(self.sounds_dir / "error.wav")
        finally:
            self._listening = False
            self._in_speech = False
            self._commit_at = None
            self.history.clear()
            if self.body is not None:
                self.body.stop()
            self.state.set(State.IDLE, "session over")

    async def _converse(self, trigger: str, clip: bool = True, first: Heard | None = None) -> None:
        self.history.clear()
        self.state.set(State.LISTENING, trigger)
        if clip:
            path = self.wakeup_clip()
            if path is not None:
                await self._play_file(path)
        misses = 0
        while True:
            heard = first or await self._next_utterance(self.settings.session.mic_timeout_seconds)
            first = None
            if heard is None:
                log.info("no speech for %.1f s: session over", self.settings.session.mic_timeout_seconds)
                return
            outcome = await self._run_turn(heard)
            if outcome == "no speech":
                misses += 1
                if misses > self.settings.session.follow_up_retry_limit:
                    log.info("nothing usable heard %d times: session over", misses)
                    return
                continue
            misses = 0
            if outcome == "end" or self.settings.session.run_mode == "dory":
                return

    async def _announce(self, text: str, prompt: bool, interactive: bool) -> None:
        if prompt:
            self.history.clear()
            outcome = await self._respond(text, TurnRecord(transcript=text), time.monotonic())
        else:
            self.state.set(State.SPEAKING, "announcement")
            self._audio_started = False
            sentences: asyncio.Queue[str | None] = asyncio.Queue()
            splitter = SentenceSplitter()
            for sentence in [*splitter.feed(text), *splitter.flush()]:
                sentences.put_nowait(sentence)
            sentences.put_nowait(None)
            await self._speak(sentences, TurnRecord(transcript=""), time.monotonic())
            outcome = "continue"
        if interactive and outcome != "end":
            await self._converse("announcement", clip=False)

    async def _perform(self, song: Any) -> None:
        self.state.set(State.PLAYING_SONG, song.title)
        await self.body.perform(song, self.speaker)

    # --- listening ----------------------------------------------------------------------

    def _on_frame(self, frame: AudioFrame) -> None:
        """Audio thread: hand the frame to the loop, nothing else."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._enqueue_frame, frame)

    def _enqueue_frame(self, frame: AudioFrame) -> None:
        assert self._frames is not None
        if self._frames.full():
            self._frames.get_nowait()
            self._dropped_frames += 1
            if self._dropped_frames in (1, 100, 1000):
                log.warning("the loop fell behind the mic: %d frames dropped so far", self._dropped_frames)
        self._frames.put_nowait(frame)

    def _gated(self, frame: AudioFrame) -> bool:
        """Half-duplex: ignore the mic while Billy's own voice may still be in the room."""
        tail = self.settings.audio.half_duplex_tail_ms / 1000
        return self.speaker.is_playing or frame.time < self.speaker.heard_until + tail

    async def _pump(self) -> None:
        assert self._frames is not None
        was_gated = False
        while True:
            frame = await self._frames.get()
            if self._gated(frame):
                if not was_gated:
                    self._endpointer.reset()
                    self._in_speech = False
                was_gated = True
                continue
            was_gated = False
            if not self.busy:
                if self.wake_word is not None and not self._wake_pending:
                    self._check_wake_word(frame)
                continue
            if not self._listening:
                continue
            for event in self._endpointer.process(frame):
                self._route(event)
            self._mic_until = frame.time + len(frame.pcm) / self.mic.sample_rate

    def _check_wake_word(self, frame: AudioFrame) -> None:
        self._wake_pending = True
        future = asyncio.get_running_loop().run_in_executor(self._wake_pool, self.wake_word.process, frame)

        def done(fut: asyncio.Future) -> None:
            self._wake_pending = False
            if not fut.cancelled() and fut.exception() is None and fut.result():
                log.info("wake word heard")
                self.wake()
            elif not fut.cancelled() and fut.exception() is not None:
                log.error("wake word detector failed: %s", fut.exception())

        future.add_done_callback(done)

    def _route(self, event: Any) -> None:
        if isinstance(event, SpeechStarted | SpeechResumed):
            self._in_speech = True
        elif isinstance(event, SpeechEnded):
            self._in_speech = False
        turn_running = self._turn is not None and not self._turn.done()
        if turn_running:
            if isinstance(event, SpeechResumed) and not self._audio_started:
                log.info("the user kept talking: dropping the answer in progress")
                self._cancel_turn("resumed")
                self._events.put_nowait(event)
            elif self._cancel_reason == "resumed":
                self._events.put_nowait(event)
            return
        self._events.put_nowait(event)

    def _reset_listening(self) -> None:
        self._endpointer.reset()
        self._in_speech = False
        while not self._events.empty():
            self._events.get_nowait()

    async def _next_utterance(self, timeout: float, keep: bool = False) -> Heard | None:
        """Wait for the next complete utterance, or None after `timeout` s without speech."""
        if not keep:
            self._reset_listening()
        self.state.set(State.LISTENING, "waiting for speech")
        self._listening = True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        speculative: tuple[float, asyncio.Future[Transcript]] | None = None
        while True:
            wait = None if self._in_speech else max(0.0, deadline - loop.time())
            try:
                event = await asyncio.wait_for(self._events.get(), wait)
            except TimeoutError:
                return None
            if isinstance(event, SpeechPaused):
                if speculative:
                    speculative[1].cancel()
                speculative = (event.utterance.speech_end_time, self._transcribe(event.utterance))
            elif isinstance(event, SpeechResumed):
                if speculative:
                    speculative[1].cancel()
                speculative = None
            elif isinstance(event, SpeechEnded):
                utterance = event.utterance
                if speculative and abs(speculative[0] - utterance.speech_end_time) < 1e-6:
                    return Heard(utterance, speculative[1])
                if speculative:
                    speculative[1].cancel()
                return Heard(utterance)
            elif isinstance(event, SpeechStarted):
                deadline = loop.time() + timeout

    def _transcribe(self, utterance: Utterance) -> asyncio.Future[Transcript]:
        loop = asyncio.get_running_loop()
        return loop.run_in_executor(self._stt_pool, self.transcriber.transcribe, utterance.pcm, utterance.sample_rate)

    # --- a turn -------------------------------------------------------------------------

    def _cancel_turn(self, reason: str) -> None:
        self._cancel_reason = reason
        if reason != "resumed":
            self.speaker.clear()
            if self.body is not None:
                self.body.stop()
        if self._turn is not None:
            self._turn.cancel()

    async def _run_turn(self, heard: Heard) -> str:
        """Run one turn as its own task so a press or more speech can cancel just the turn."""
        while True:
            before = self.history.snapshot()
            self._cancel_reason = ""
            self._audio_started = False
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
            if reason == "resumed":
                self.history.restore(before)  # the turn never committed: take it back whole
                continued = await self._next_utterance(self.settings.endpoint.max_utterance_seconds, keep=True)
                if continued is None:
                    return "no speech"
                heard = continued
                continue
            log.info("turn interrupted (%s): listening again", reason)
            return "continue"

    async def _turn_body(self, heard: Heard) -> str:
        utterance = heard.utterance
        record = TurnRecord(transcript="")
        record.latency_ms["endpoint"] = _ms(utterance.ended_time - utterance.speech_end_time)
        # Keep the endpointer running until the turn commits: the user may not be done yet.
        self._listening = True
        self._commit_at = utterance.ended_time + self._endpointer.commit_delay
        self.state.set(State.THINKING, "transcribing")
        stt_start = time.monotonic()
        future = heard.speculative or self._transcribe(utterance)
        try:
            transcript = await future
        except BillyError as exc:
            log.error("speech to text failed: %s", exc)
            await self._error_cue(record, exc)
            return "end"
        record.latency_ms["stt"] = _ms(time.monotonic() - stt_start)
        record.backends["stt"] = getattr(self.transcriber, "last_used", self.transcriber.name)
        text = transcript.text.strip()
        if not text:
            log.info("heard no words (%s)", transcript.rejected_reason or "empty")
            self.state.set(State.LISTENING, "nothing heard")
            return "no speech"
        log.info("heard: %s", text)
        record.transcript = text
        outcome = await self._respond(text, record, time.monotonic(), speech_end=utterance.speech_end_time)
        return outcome

    async def _respond(self, text: str, record: TurnRecord, t0: float, speech_end: float | None = None) -> str:
        """Think and speak at once: sentences go to the voice while the model still writes."""
        self.state.set(State.THINKING, "thinking")
        record.transcript = record.transcript or text
        self._audio_started = False
        self._first_sound.arm()
        sentences: asyncio.Queue[str | None] = asyncio.Queue()
        speaking = asyncio.create_task(self._speak(sentences, record, t0), name="speak")
        song = None
        end = False
        try:
            try:
                reply, song, end = await self._think(text, sentences, record, t0)
                record.reply = reply
            finally:
                sentences.put_nowait(None)
            await speaking
        except BillyError as exc:
            log.error("the turn failed: %s", exc)
            with contextlib.suppress(BillyError):
                await speaking
            await self._error_cue(record, exc)
            return "end"
        except asyncio.CancelledError:
            speaking.cancel()
            if self._cancel_reason != "resumed":  # a resumed turn never happened
                record.error = f"interrupted ({self._cancel_reason or 'cancelled'})"
                self._publish(record)
            raise
        first_heard = self._first_sound.time
        if speech_end is not None and first_heard is not None:
            record.latency_ms["end_of_speech_to_first_audio"] = _ms(first_heard - speech_end)
            record.latency_ms["output_latency"] = _ms(first_heard - self._first_sound.queued_at)
        self._publish(record)
        if song is not None and self.body is not None:
            await self._perform(song)
        return "end" if end else "continue"

    async def _think(
        self, text: str, sentences: asyncio.Queue[str | None], record: TurnRecord, t0: float
    ) -> tuple[str, Any, bool]:
        self.history.add({"role": "user", "content": text})
        splitter = SentenceSplitter()
        parser = TextToolCallFilter(self.tools.schemas())
        spoken: list[str] = []
        song = None
        end = False

        def emit(piece: str) -> None:
            for sentence in splitter.feed(piece):
                if "llm_first_sentence" not in record.latency_ms:
                    record.latency_ms["llm_first_sentence"] = _ms(time.monotonic() - t0)
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
                        emit(speakable)
                elif isinstance(event, ToolCall):
                    calls.append(event)
                elif isinstance(event, BrainDone):
                    break
            speakable, found = parser.flush()
            calls.extend(found)
            if speakable:
                content.append(speakable)
                emit(speakable)
            record.backends["llm"] = getattr(self.brain, "last_used", self.brain.name)
            said = "".join(content).strip()
            spoken.append(said)
            assistant: dict[str, Any] = {"role": "assistant", "content": said}
            if calls:
                assistant["tool_calls"] = [
                    {
                        "id": c.id or f"call_{i}",
                        "type": "function",
                        "function": {"name": c.name, "arguments": c.arguments},
                    }
                    for i, c in enumerate(calls)
                ]
            self.history.add(assistant)
            if not calls:
                break
            await self._commit()
            for i, call in enumerate(calls):
                outcome = await self.tools.call(call)
                record.tool_calls.append(ToolRecord(call.name, call.arguments, outcome.result))
                log.info("tool %s(%s) -> %s", call.name, call.arguments, outcome.result)
                self.history.add(
                    {
                        "role": "tool",
                        "content": outcome.result,
                        "tool_call_id": call.id or f"call_{i}",
                        "name": call.name,
                    }
                )
                if outcome.song:
                    song = self.songs.find(outcome.song) if self.songs else None
                if outcome.end_conversation:
                    end = True
            if song is not None and not said:
                break
        for sentence in splitter.flush():
            if "llm_first_sentence" not in record.latency_ms:
                record.latency_ms["llm_first_sentence"] = _ms(time.monotonic() - t0)
            sentences.put_nowait(sentence)
        return " ".join(s for s in spoken if s), song, end

    async def _speak(self, sentences: asyncio.Queue[str | None], record: TurnRecord, t0: float) -> None:
        """Synthesize sentence by sentence and queue the audio; return once it has been heard."""
        loop = asyncio.get_running_loop()
        while True:
            sentence = await sentences.get()
            if sentence is None:
                break
            chunks: asyncio.Queue[np.ndarray | BaseException | None] = asyncio.Queue()
            stop = threading.Event()
            synth_start = time.monotonic()

            def produce(text: str = sentence, out: asyncio.Queue = chunks, stop: threading.Event = stop) -> None:
                try:
                    for chunk in self.synthesizer.synthesize(text):
                        if stop.is_set():
                            break
                        loop.call_soon_threadsafe(out.put_nowait, chunk)
                except BaseException as exc:  # handed to the loop, which decides
                    loop.call_soon_threadsafe(out.put_nowait, exc)
                loop.call_soon_threadsafe(out.put_nowait, None)

            work = loop.run_in_executor(self._tts_pool, produce)
            try:
                while True:
                    chunk = await chunks.get()
                    if chunk is None:
                        break
                    if isinstance(chunk, BaseException):
                        raise chunk
                    if "tts_first_audio" not in record.latency_ms:
                        record.latency_ms["tts_first_audio"] = _ms(time.monotonic() - synth_start)
                        record.backends["tts"] = getattr(self.synthesizer, "last_used", self.synthesizer.name)
                    rate = getattr(self.synthesizer, "last_sample_rate", None) or self.synthesizer.sample_rate
                    if not self._audio_started:
                        await self._commit()
                        self._audio_started = True
                        self._first_sound.mark_queued()
                        self.state.set(State.SPEAKING, "speaking")
                    self.speaker.play(chunk, rate)
            except asyncio.CancelledError:
                stop.set()
                raise
            finally:
                stop.set()
                await asyncio.shield(work)
        await self._wait_heard()

    async def _commit(self) -> None:
        """Wait until the user can no longer be mid-sentence, then stop listening for more.

        Until then a `SpeechResumed` cancels the turn with nothing said or done. The wait is on
        mic frames actually heard (a busy loop cannot skip them), bounded in case the mic stalls.
        """
        commit_at = self._commit_at
        if commit_at is None:
            return
        give_up = time.monotonic() + max(0.0, commit_at - time.monotonic()) + MIC_STALL_SECONDS
        while self._mic_until < commit_at and time.monotonic() < give_up:
            await asyncio.sleep(0.01)
        self._commit_at = None
        self._listening = False

    async def _wait_heard(self) -> None:
        while self.speaker.is_playing:
            await asyncio.sleep(min(0.05, max(0.005, self.speaker.heard_until - time.monotonic())))
        if self.body is not None:
            self.body.speech_finished(self.speaker.heard_until)

    async def _play_file(self, path: Path) -> None:
        try:
            pcm, rate = read_wav(path)
        except (OSError, ValueError) as exc:
            log.warning("cannot play %s: %s", path, exc)
            return
        self.speaker.play(pcm, rate)
        await self._wait_heard()

    async def _error_cue(self, record: TurnRecord, exc: Exception) -> None:
        record.error = str(exc)
        self._publish(record)
        self.state.set(State.ERROR, str(exc))
        self.speaker.clear()
        await self._play_file(self.sounds_dir / "error.wav")

    def _publish(self, record: TurnRecord) -> None:
        log.info(
            "turn: %s",
            ", ".join(f"{k} {v:.0f} ms" for k, v in record.latency_ms.items()) or "no timings",
        )
        for hook in self.hooks.on_turn:
            try:
                hook(record)
            except Exception:
                log.exception("turn observer failed")


class _FirstSound:
    """Finds the play-clock time of the first sample of an answer, as it is heard."""

    def __init__(self) -> None:
        self._armed = False
        self.time: float | None = None
        self.queued_at = 0.0
        self._lock = threading.Lock()

    def arm(self) -> None:
        with self._lock:
            self._armed = False
            self.time = None

    def mark_queued(self) -> None:
        with self._lock:
            self.queued_at = time.monotonic()
            self._armed = True

    def on_played(self, block: PlayedBlock) -> None:
        """Audio thread: note the first non-silent sample after the answer was queued."""
        if not self._armed:
            return
        nonzero = np.flatnonzero(block.pcm)
        if nonzero.size == 0:
            return
        with self._lock:
            if self._armed:
                self.time = block.time + nonzero[0] / block.sample_rate
                self._armed = False


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 1)

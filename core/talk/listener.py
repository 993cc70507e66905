"""The listener: mic frames → endpoint events → utterances, with speech to text started early.

Frames arrive on the audio thread and are handed to the loop (`call_soon_threadsafe`) into a
bounded queue; one pump task gates them (half-duplex: Billy never hears himself), feeds the
wake word while nobody talks to Billy, and feeds the endpointer while the session listens.
Once the user pauses, the transcript of what was said so far is started on the STT thread,
so that it is usually ready when the end of the utterance is decided.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from core.config import AudioSettings, EndpointSettings
from core.interfaces import AudioFrame, Microphone, Speaker, Transcriber, Transcript, WakeWord
from core.listen.endpoint import (
    Endpointer,
    EndpointEvent,
    SpeechEnded,
    SpeechPaused,
    SpeechResumed,
    SpeechStarted,
    Utterance,
)

log = logging.getLogger(__name__)

FRAME_QUEUE_FRAMES = 500
"""Mic frames (20 ms each, so 10 s) buffered for the loop; the oldest are dropped beyond."""
MIC_STALL_SECONDS = 0.5
"""How long a commit waits for late mic frames before it goes ahead without them."""


@dataclass
class Heard:
    """An utterance, heard up to its speaker's first pause, and its transcript under way."""

    utterance: Utterance
    transcript: asyncio.Future[Transcript]


class Listener:
    """Hears the user: owns the frame queue, the endpointer and the speculative transcripts.

    While a turn is *held* (answer prepared, user possibly not done), speech that resumes calls
    `on_resumed` and its events stay queued, so the rest of the sentence joins the utterance.
    """

    def __init__(
        self,
        endpoint: EndpointSettings,
        audio: AudioSettings,
        mic: Microphone,
        speaker: Speaker,
        transcriber: Transcriber,
        wake_word: WakeWord | None = None,
        on_wake: Callable[[], None] = lambda: None,
        is_busy: Callable[[], bool] = lambda: True,
        endpointer: Endpointer | None = None,
    ):
        self.mic = mic
        self.speaker = speaker
        self.transcriber = transcriber
        self.wake_word = wake_word
        self.on_wake = on_wake
        self.is_busy = is_busy
        self.on_resumed: Callable[[], None] = lambda: None
        """Called on the loop when speech resumes while a turn is held."""
        self.on_ended: Callable[[], None] = lambda: None
        """Called on the loop once the held utterance has surely ended (or its turn committed)."""
        self.ended = False
        """The held utterance's end silence has passed (its speaker paused for good, or the turn committed)."""
        self._end_silence_s = endpoint.end_silence_ms / 1000
        self._tail_s = audio.half_duplex_tail_ms / 1000
        self._endpointer = endpointer or Endpointer(endpoint, mic.sample_rate)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._frames: asyncio.Queue[AudioFrame] | None = None
        self._events: asyncio.Queue[EndpointEvent] = asyncio.Queue()
        self._stt_pool = ThreadPoolExecutor(1, thread_name_prefix="stt")
        self._wake_pool = ThreadPoolExecutor(1, thread_name_prefix="wakeword")
        self._pump_task: asyncio.Task | None = None
        self._dropped_frames = 0
        self._wake_pending = False
        self.listening = False
        """True while frames go to the endpointer."""
        self.in_speech = False
        """True between the start of speech and its end, as the endpointer sees it."""
        self._commit_at: float | None = None
        """Play-clock time before which the held turn may neither speak nor act."""
        self._mic_until = 0.0
        """Play-clock time up to which the endpointer has heard the mic."""
        self._finished_at = 0.0
        """Play-clock time after which a held whole request may commit (its end silence heard)."""

    # --- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        """Start the mic and the frame pump; call once, on the loop."""
        self._loop = asyncio.get_running_loop()
        self._frames = asyncio.Queue(FRAME_QUEUE_FRAMES)
        self._pump_task = asyncio.create_task(self._pump(), name="mic-pump")
        self.mic.start(self._on_frame)

    async def close(self) -> None:
        self.mic.stop()
        if self._pump_task:
            self._pump_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pump_task
        for pool in (self._stt_pool, self._wake_pool):
            pool.shutdown(wait=False, cancel_futures=True)

    def stop_listening(self) -> None:
        """The conversation is over: hear nothing more until the next `next_utterance`."""
        self.listening = False
        self.in_speech = False
        self._commit_at = None

    # --- utterances ---------------------------------------------------------------------

    async def next_utterance(self, timeout: float, keep: bool = False) -> Heard | None:
        """The next utterance as soon as its speaker pauses, or None after `timeout` seconds without speech.

        It comes at the first pause (about 200 ms of silence), with its transcript already
        under way, so the answer is prepared while Billy still listens; the utterance is then
        *held*: `commit` decides when the speaker can no longer be mid-sentence, and speech
        that resumes first calls `on_resumed`. `keep`: continue the utterance already under
        way (its events are queued) instead of starting afresh.
        """
        self._commit_at = None  # whatever turn was held is over
        if not keep:
            self._endpointer.reset()
            self.in_speech = False
            while not self._events.empty():
                self._events.get_nowait()
        self.listening = True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            wait = None if self.in_speech else max(0.0, deadline - loop.time())
            try:
                event = await asyncio.wait_for(self._events.get(), wait)
            except TimeoutError:
                return None
            if isinstance(event, SpeechPaused | SpeechEnded):
                self._hold(event.utterance, ended=isinstance(event, SpeechEnded))
                return Heard(event.utterance, self.transcribe(event.utterance))
            if isinstance(event, SpeechStarted):
                deadline = loop.time() + timeout

    def transcribe(self, utterance: Utterance) -> asyncio.Future[Transcript]:
        """Transcribe on the STT thread (never on the loop or the audio thread)."""
        loop = asyncio.get_running_loop()
        return loop.run_in_executor(self._stt_pool, self.transcriber.transcribe, utterance.pcm, utterance.sample_rate)

    # --- holding a turn until the user is surely done -----------------------------------

    def _hold(self, utterance: Utterance, ended: bool) -> None:
        """Keep listening after `utterance` paused or ended until its turn commits or speech resumes."""
        self.listening = True
        self.ended = ended
        end = utterance.speech_end_time
        self._finished_at = end + self._end_silence_s
        self._commit_at = end + self._end_silence_s + self._endpointer.commit_delay

    async def commit(self, finished: bool = False) -> None:
        """Wait until the speaker can no longer be mid-sentence, then stop listening for more.

        `finished`: the words form a whole request (not a phrase cut off mid-way), so the end
        silence is enough; otherwise the whole pause tolerance is waited out. Until then a
        `SpeechResumed` calls `on_resumed`. The wait is on mic frames actually heard (a busy
        loop cannot skip them), bounded in case the mic stalls.
        """
        commit_at = self._commit_at
        if commit_at is None:
            return
        if finished:
            commit_at = min(commit_at, self._finished_at)
        give_up = time.monotonic() + max(0.0, commit_at - time.monotonic()) + MIC_STALL_SECONDS
        while self._mic_until < commit_at and time.monotonic() < give_up:
            await asyncio.sleep(0.01)
        self._commit_at = None
        self.listening = False
        self._end()

    def _end(self) -> None:
        if not self.ended:
            self.ended = True
            self.on_ended()

    # --- frames -------------------------------------------------------------------------

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

    def gated(self, frame_time: float) -> bool:
        """Half-duplex: ignore the mic while Billy's own voice may still be in the room."""
        return self.speaker.is_playing or frame_time < self.speaker.heard_until + self._tail_s

    async def _pump(self) -> None:
        assert self._frames is not None
        was_gated = False
        while True:
            frame = await self._frames.get()
            if self.gated(frame.time):
                if not was_gated:
                    self._endpointer.reset()
                    self.in_speech = False
                was_gated = True
                continue
            was_gated = False
            if not self.is_busy():
                if self.wake_word is not None and not self._wake_pending:
                    self._check_wake_word(frame)
                continue
            if not self.listening:
                continue
            for event in self._endpointer.process(frame):
                self._route(event)
            self._mic_until = frame.time + len(frame.pcm) / self.mic.sample_rate

    def _check_wake_word(self, frame: AudioFrame) -> None:
        assert self.wake_word is not None
        self._wake_pending = True
        future = asyncio.get_running_loop().run_in_executor(self._wake_pool, self.wake_word.process, frame)

        def done(fut: asyncio.Future) -> None:
            self._wake_pending = False
            if fut.cancelled():
                return
            if fut.exception() is not None:
                log.error("wake word detector failed: %s", fut.exception())
            elif fut.result():
                log.info("wake word heard")
                self.on_wake()

        future.add_done_callback(done)

    def _route(self, event: EndpointEvent) -> None:
        if isinstance(event, SpeechStarted | SpeechResumed):
            self.in_speech = True
        elif isinstance(event, SpeechEnded):
            self.in_speech = False
        if self._commit_at is not None:  # a turn is held: only its end and resumed speech matter
            if isinstance(event, SpeechEnded):
                self._end()
            elif isinstance(event, SpeechResumed):
                log.info("the user kept talking: dropping the answer in progress")
                self._commit_at = None
                self._events.put_nowait(event)
                self.on_resumed()
            return
        self._events.put_nowait(event)

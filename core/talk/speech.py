"""Billy's voice out: sentences → TTS (on its own thread) → the speaker, and when the first sample is heard.

Sentences arrive on a queue while the brain still writes; each is synthesized chunk by chunk
and queued on the speaker as soon as a chunk exists. The first chunk waits for the turn to
commit (the user may not be done), and the moment its first sample is *heard* is the end of
the turn's key latency figure.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from core.audio.wav import read_wav
from core.interfaces import Body, PlayedBlock, Speaker, Synthesizer, TurnRecord
from core.state import State, StateOwner

log = logging.getLogger(__name__)


class Speech:
    """Speaks sentences and files, and waits until they have been heard."""

    def __init__(self, speaker: Speaker, synthesizer: Synthesizer, state: StateOwner, body: Body | None = None):
        self.speaker = speaker
        self.synthesizer = synthesizer
        self.state = state
        self.body = body
        self.first_sound = FirstSound()
        self._epoch = 0
        """Goes up on every `silence()`: audio made before it is never played after it."""
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="tts")
        speaker.add_listener(self.first_sound.on_played)

    def silence(self) -> None:
        """Fall silent now (barge-in, stop): drop what is queued, and any chunk already on its way."""
        self._epoch += 1
        self.speaker.clear()
        if self.body is not None:
            self.body.stop()

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def speak(
        self,
        sentences: asyncio.Queue[str | None],
        record: TurnRecord,
        before_first_audio: Callable[[], Awaitable[None]],
    ) -> None:
        """Synthesize sentence by sentence until None, queue the audio, and return once it has been heard.

        `before_first_audio` runs once, just before the first sample is queued (the commit).
        """
        loop = asyncio.get_running_loop()
        epoch = self._epoch
        started = False
        while (sentence := await sentences.get()) is not None:
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

            work = loop.run_in_executor(self._pool, produce)
            try:
                while (chunk := await chunks.get()) is not None:
                    if isinstance(chunk, BaseException):
                        raise chunk
                    if self._epoch != epoch:  # silenced while this chunk was on its way
                        return
                    if "tts_first_audio" not in record.latency_ms:
                        record.latency_ms["tts_first_audio"] = ms(time.monotonic() - synth_start)
                        record.backends["tts"] = self.synthesizer.last_used
                    if not started:
                        ready = time.monotonic()
                        await before_first_audio()
                        record.latency_ms["hold"] = ms(time.monotonic() - ready)
                        started = True
                        self.first_sound.mark_queued()
                        self.state.set(State.SPEAKING, "speaking")
                    self.speaker.play(chunk, self.synthesizer.sample_rate)
            finally:
                stop.set()
                await asyncio.shield(work)
        await self.wait_heard()

    async def wait_heard(self) -> None:
        """Return once everything queued has been heard; then the mouth may close."""
        while self.speaker.is_playing:
            await asyncio.sleep(min(0.05, max(0.005, self.speaker.heard_until - time.monotonic())))
        if self.body is not None:
            self.body.speech_finished(self.speaker.heard_until)

    async def play_file(self, path: Path) -> None:
        """Play a clip (wake-up line, error sound) and wait until it has been heard; a bad file is only logged."""
        try:
            pcm, rate = read_wav(path)
        except (OSError, ValueError) as exc:
            log.warning("cannot play %s: %s", path, exc)
            return
        self.speaker.play(pcm, rate)
        await self.wait_heard()


class FirstSound:
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


def ms(seconds: float) -> float:
    """Seconds as milliseconds, rounded to a tenth: the unit of every latency figure."""
    return round(seconds * 1000, 1)

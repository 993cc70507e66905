"""A simulated mic and speaker that run in real time on the play clock.

They stand in for a sound card in `python main.py simulate` and in the tests, with the
same timing contract as the real devices: the mic stamps each frame with the moment its
first sample was captured, and the speaker reports each block with the moment it is heard
(consumed at real-time pace, heard `latency_s` later). Both keep their schedule from
deadlines computed from their start time, so they never drift.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from core.audio.playback import BufferedSpeaker, deliver, notify
from core.audio.transforms import float_to_pcm16, resample, to_mono
from core.audio.wav import write_wav
from core.interfaces import AudioFrame, FrameHandler

log = logging.getLogger(__name__)

_JOIN_TIMEOUT_S = 2.0


@dataclass(eq=False)
class InputHandle:
    """One clip fed into the simulated mic. Times are play-clock seconds, filled in as it is captured."""

    samples: int
    """Length of the clip at the mic's rate."""
    started_at: float | None = None
    """When its first sample was captured."""
    ended_at: float | None = None
    """When its last sample was captured."""
    done: threading.Event = field(default_factory=threading.Event)
    """Set once the frame holding its last sample has been handed out."""


class SimulatedMicrophone:
    """A mic that hands out a frame every `frame_ms`, on time, holding silence or the clips fed to it."""

    def __init__(self, sample_rate: int = 16000, frame_ms: int = 20) -> None:
        self.sample_rate = int(sample_rate)
        self.frame_len = round(self.sample_rate * frame_ms / 1000)
        if self.frame_len <= 0:
            raise ValueError(f"frame_ms must give at least one sample, got {frame_ms} ms")
        self._period = self.frame_len / self.sample_rate
        self._lock = threading.Lock()
        self._queue: deque[list] = deque()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._on_frame: FrameHandler | None = None
        self._failed = False

    def feed(self, pcm: np.ndarray, sample_rate: int) -> InputHandle:
        """Queue a clip (int16 or float ±1, mono or `(frames, channels)`) after anything already queued."""
        a = np.asarray(pcm)
        a = to_mono(a) if a.ndim == 2 else a.reshape(-1)
        samples = a.copy() if a.dtype == np.int16 else float_to_pcm16(a)
        if int(sample_rate) != self.sample_rate:
            samples = resample(samples, int(sample_rate), self.sample_rate)
        handle = InputHandle(samples.size)
        with self._lock:
            self._queue.append([handle, samples, 0])
        return handle

    @property
    def queued_seconds(self) -> float:
        """Fed audio not captured yet."""
        with self._lock:
            return sum(s.size - pos for _, s, pos in self._queue) / self.sample_rate

    def start(self, on_frame: FrameHandler) -> None:
        """Start the capture thread; `on_frame` runs on it and must only hand the frame over."""
        if self._thread is not None:
            raise RuntimeError("microphone already started")
        self._on_frame = on_frame
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name="billy-sim-mic", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._stopping.set()
        thread.join(_JOIN_TIMEOUT_S)

    def _run(self) -> None:
        t0 = time.monotonic()
        k = 0
        while True:
            # Frame k is captured over [t0 + k·period, t0 + (k+1)·period) and handed out at its end.
            # A late wake-up hands out the overdue frames at once, like a driver's buffer would.
            wait = t0 + (k + 1) * self._period - time.monotonic()
            if self._stopping.wait(wait) if wait > 0 else self._stopping.is_set():
                return
            frame_time = t0 + k * self._period
            pcm, finished = self._take(frame_time)
            self._failed = deliver(self._on_frame, AudioFrame(pcm, frame_time), self._failed, "simulated mic")
            for handle in finished:
                handle.done.set()
            k += 1

    def _take(self, frame_time: float) -> tuple[np.ndarray, list[InputHandle]]:
        out = np.zeros(self.frame_len, dtype=np.int16)
        finished = []
        filled = 0
        with self._lock:
            while filled < self.frame_len and self._queue:
                entry = self._queue[0]
                handle, samples, pos = entry
                if pos == 0:
                    handle.started_at = frame_time + filled / self.sample_rate
                k = min(self.frame_len - filled, samples.size - pos)
                out[filled : filled + k] = samples[pos : pos + k]
                entry[2] = pos + k
                filled += k
                if entry[2] >= samples.size:
                    handle.ended_at = (
                        frame_time + (filled - 1) / self.sample_rate if samples.size else handle.started_at
                    )
                    finished.append(handle)
                    self._queue.popleft()
        return out, finished


class SimulatedSpeaker(BufferedSpeaker):
    """A speaker that consumes its queue in real time, block by block, each heard `latency_s` later.

    It records what it plays at `record_rate` (other rates are resampled into it) on the play
    clock, so `recording(t0)` puts every sample at the index of its heard time. `clear()`
    drops the queue at once; blocks already consumed, i.e. heard within the next `latency_s`,
    still sound, as on a real card. When nothing has sounded for a second it stops reporting
    silence and sleeps until the next `play()`, to keep CPU low; a thread that falls more than
    `latency_s` behind restarts its schedule from now (an underrun: the audio sounds late).
    """

    def __init__(
        self,
        latency_s: float = 0.15,
        block_ms: int = 10,
        record_rate: int = 22050,
        max_record_s: float = 3600.0,
        max_queued_s: float = 600.0,
    ) -> None:
        self.sample_rate = int(record_rate)
        super().__init__(self.sample_rate, self.sample_rate, max_queued_s)
        self.latency_s = float(latency_s)
        self.block_len = max(1, round(self.sample_rate * block_ms / 1000))
        self._block_s = self.block_len / self.sample_rate
        self._max_record = int(max_record_s * self.sample_rate)
        self._record_lock = threading.Lock()
        self._recorded: deque[tuple[float, np.ndarray]] = deque()
        self._recorded_samples = 0
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name="billy-sim-speaker", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._stopping.set()
        self._wake.set()
        thread.join(_JOIN_TIMEOUT_S)

    def play(self, pcm: np.ndarray, sample_rate: int) -> None:
        super().play(pcm, sample_rate)
        self._wake.set()  # the clock thread sleeps while there is nothing to play

    def recording(self, start_time: float) -> np.ndarray:
        """Everything played so far, int16 at `sample_rate`; index i is heard at `start_time + i / sample_rate`.

        Quiet stretches are zeros; audio heard before `start_time` is cut off.
        """
        with self._record_lock:
            blocks = list(self._recorded)
        placed = [(round((heard - start_time) * self.sample_rate), pcm) for heard, pcm in blocks]
        end = max((i + pcm.size for i, pcm in placed), default=0)
        out = np.zeros(max(0, end), dtype=np.int16)
        for i, pcm in placed:
            skip = max(0, -i)
            if skip < pcm.size:
                out[i + skip : i + pcm.size] = pcm[skip:]
        return out

    def write_wav(self, path: str | os.PathLike[str], start_time: float) -> None:
        """Write `recording(start_time)` as a mono WAV at `sample_rate`."""
        write_wav(path, self.recording(start_time), self.sample_rate)

    def _run(self) -> None:
        t0 = time.monotonic()
        k = 0
        while not self._stopping.is_set():
            if self._buffer.is_idle(time.monotonic()):
                self._wake.clear()
                if self._buffer.is_idle(time.monotonic()):
                    self._wake.wait()
                t0 = time.monotonic()
                k = 0
                continue
            deadline = t0 + k * self._block_s
            now = time.monotonic()
            if deadline > now:
                if self._stopping.wait(deadline - now):
                    return
            elif now - deadline > self.latency_s:
                t0, k, deadline = now, 0, now
            pcm, filled, blocks = self._buffer.pull(self.block_len, deadline + self.latency_s)
            if filled:
                self._record(deadline + self.latency_s, pcm[:filled])
            notify(self._listeners, blocks, self._failed)
            k += 1

    def _record(self, heard: float, pcm: np.ndarray) -> None:
        with self._record_lock:
            self._recorded.append((heard, pcm))
            self._recorded_samples += pcm.size
            while self._recorded_samples > self._max_record:
                _, old = self._recorded.popleft()
                self._recorded_samples -= old.size

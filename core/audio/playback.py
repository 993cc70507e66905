"""The playback buffer every speaker shares, and the hand-over of played blocks and mic frames.

`PlaybackBuffer` is what an output device has still to play; `BufferedSpeaker` wraps it for
the PortAudio and the simulated speaker alike, so both keep the same play-clock contract.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Iterable

import numpy as np

from core.audio.transforms import StreamResampler, float_to_pcm16, to_mono
from core.interfaces import AudioFrame, FrameHandler, PlayedBlock, PlayedHandler

log = logging.getLogger(__name__)


def notify(listeners: Iterable[PlayedHandler], blocks: list[PlayedBlock], failed: set[int]) -> None:
    """Call every listener with every block; a failing listener is logged (once with its traceback), never fatal."""
    for block in blocks:
        for listener in listeners:
            try:
                listener(block)
            except Exception:
                if id(listener) in failed:
                    log.debug("speaker listener %r failed again", listener, exc_info=True)
                else:
                    failed.add(id(listener))
                    log.exception("speaker listener %r failed; playback goes on", listener)


def deliver(on_frame: FrameHandler | None, frame: AudioFrame, failed: bool, who: str) -> bool:
    """Hand a mic frame over; a failing handler is logged once, never fatal. Returns `failed` updated."""
    if on_frame is None:
        return failed
    try:
        on_frame(frame)
    except Exception:
        if not failed:
            log.exception("%s: the frame handler failed; capture goes on", who)
        return True
    return failed


class _Fifo:
    """int16 samples in arrival order, taken from the front without copying what stays."""

    def __init__(self) -> None:
        self._chunks: deque[np.ndarray] = deque()
        self._pos = 0
        self.size = 0

    def push(self, samples: np.ndarray) -> None:
        if samples.size:
            self._chunks.append(samples)
            self.size += samples.size

    def take(self, n: int) -> np.ndarray:
        n = min(n, self.size)
        parts = []
        need = n
        while need:
            chunk = self._chunks[0]
            k = min(chunk.size - self._pos, need)
            parts.append(chunk[self._pos : self._pos + k])
            self._pos += k
            need -= k
            if self._pos == chunk.size:
                self._chunks.popleft()
                self._pos = 0
        self.size -= n
        if len(parts) == 1:
            return parts[0]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int16)


class _Run:
    """Audio at one source rate played without a break: source samples and their device-rate copy.

    The resampler's last few milliseconds wait for the input that follows them; `tail` holds
    them as if silence followed. Once playback reaches the tail, the run is closed: the
    silence guess has been played, so later audio starts a new run.
    """

    def __init__(self, rate: int, device_rate: int) -> None:
        self.rate = rate
        self.resampler = StreamResampler(rate, device_rate)
        self.source = _Fifo()
        self.device = _Fifo()
        self.tail = np.zeros(0, dtype=np.int16)
        self.closed = False
        self.source_total = 0
        self.source_taken = 0
        self.device_taken = 0

    @property
    def device_left(self) -> int:
        return self.device.size + self.tail.size


class PlaybackBuffer:
    """What an output device has still to play, shared by the real and the simulated speaker.

    `put` (any thread) resamples to the device rate and queues; `pull` (the audio thread)
    takes one device block and says which source samples it holds, as PlayedBlocks at the
    rate they were given. Resampling happens outside the lock `pull` takes, so a long `put`
    never starves the device. The queue holds at most `max_queued_s` seconds: a chunk that
    would overflow it is dropped whole, with a warning.
    """

    def __init__(
        self, device_rate: int, idle_rate: int, max_queued_s: float = 600.0, idle_report_s: float = 1.0
    ) -> None:
        self.device_rate = int(device_rate)
        self.max_queued_s = max_queued_s
        self.idle_report_s = idle_report_s
        self._lock = threading.Lock()
        self._put_lock = threading.Lock()
        self._runs: deque[_Run] = deque()
        self._generation = 0
        self._last_rate = int(idle_rate)
        self._write_head = 0.0
        self._heard_end = 0.0

    def put(self, pcm: np.ndarray, sample_rate: int) -> None:
        """Queue mono samples (int16, or float at full scale ±1; a 2-D block is mixed down)."""
        source = _as_pcm16(pcm)
        rate = int(sample_rate)
        if rate <= 0 or rate != sample_rate:
            raise ValueError(f"sample_rate must be a positive integer (hertz), got {sample_rate!r}")
        if source.size == 0:
            return
        with self._put_lock:
            with self._lock:
                generation = self._generation
                queued = sum(r.device_left for r in self._runs) / self.device_rate
                if queued + source.size / rate > self.max_queued_s:
                    log.warning(
                        "playback queue full (%.0f s queued, limit %.0f s); dropped %.1f s of audio",
                        queued,
                        self.max_queued_s,
                        source.size / rate,
                    )
                    return
            while True:
                with self._lock:
                    last = self._runs[-1] if self._runs else None
                if last is not None and not last.closed and last.rate == rate:
                    run = last
                else:
                    run = _Run(rate, self.device_rate)  # queued only once it holds audio
                device = run.resampler.process(source)
                tail = run.resampler.peek_flush()
                with self._lock:
                    if self._generation != generation:
                        return  # clear() came after this play() began: it wins
                    if run.closed:
                        continue  # playback reached this run's tail meanwhile: start a fresh run
                    if run is not last:
                        if self._runs:
                            self._runs[-1].closed = True  # its tail is final: a new run follows it
                        self._runs.append(run)
                    run.source.push(source)
                    run.source_total += source.size
                    run.device.push(device)
                    run.tail = tail
                    return

    def pull(self, frames: int, heard_time: float) -> tuple[np.ndarray, int, list[PlayedBlock]]:
        """Take the next `frames` device samples, whose first is heard at play-clock `heard_time`.

        Returns the block (zeros where nothing is queued), how many leading samples are audio,
        and the PlayedBlocks for listeners: the source samples of each run in the block, then
        the silence after them, unless nothing was heard for `idle_report_s`.
        """
        out = np.zeros(frames, dtype=np.int16)
        blocks: list[PlayedBlock] = []
        filled = 0
        with self._lock:
            while filled < frames and self._runs:
                run = self._runs[0]
                start = filled
                got = run.device.take(frames - filled)
                out[filled : filled + got.size] = got
                filled += got.size
                if filled < frames and run.tail.size:
                    run.closed = True
                    piece, run.tail = run.tail[: frames - filled], run.tail[frames - filled :]
                    out[filled : filled + piece.size] = piece
                    filled += piece.size
                run.device_taken += filled - start
                finished = run.device_left == 0 and (run.closed or filled < frames)
                if finished:
                    run.closed = True
                    self._runs.popleft()
                    target = run.source_total
                else:
                    target = min(run.source_total, round(run.device_taken * run.rate / self.device_rate))
                source = run.source.take(target - run.source_taken)
                run.source_taken += source.size
                if source.size:
                    blocks.append(PlayedBlock(source, heard_time + start / self.device_rate, run.rate))
                    self._last_rate = run.rate
            self._write_head = heard_time + frames / self.device_rate
            if filled:
                self._heard_end = heard_time + filled / self.device_rate
            silence_at = heard_time + filled / self.device_rate
            if filled < frames and silence_at - self._heard_end <= self.idle_report_s and self._heard_end > 0.0:
                rate = self._last_rate
                silent = np.zeros(round((frames - filled) * rate / self.device_rate), dtype=np.int16)
                if silent.size:
                    blocks.append(PlayedBlock(silent, silence_at, rate))
        return out, filled, blocks

    def clear(self) -> None:
        """Drop everything queued. Samples already pulled are beyond recall: they end at the write head."""
        with self._lock:
            self._generation += 1
            for run in self._runs:
                run.closed = True
            self._runs.clear()
            self._heard_end = min(self._heard_end, self._write_head)

    def heard_until(self, now: float, latency_s: float) -> float:
        """Play-clock time at which the last queued sample will have been heard (0.0 before any sound).

        Queued audio follows the last pulled block while the device runs (that block is still
        ahead of `now`), else it starts `latency_s` from `now`.
        """
        with self._lock:
            left = sum(r.device_left for r in self._runs)
            if left == 0:
                return self._heard_end
            start = self._write_head if self._write_head >= now else now + latency_s
            return start + left / self.device_rate

    def is_playing(self, now: float) -> bool:
        with self._lock:
            return bool(self._runs) or now < self._heard_end

    def is_idle(self, now: float) -> bool:
        """Nothing queued and nothing heard for `idle_report_s`: a device may stop reporting silence."""
        with self._lock:
            return not self._runs and now - self._heard_end > self.idle_report_s


def _as_pcm16(pcm: np.ndarray) -> np.ndarray:
    a = np.asarray(pcm)
    if a.ndim == 2:
        a = to_mono(a)
    elif a.ndim != 1:
        raise ValueError(f"play() takes mono samples, got shape {a.shape}")
    if a.dtype == np.int16:
        return a.copy()
    if np.issubdtype(a.dtype, np.floating):
        return float_to_pcm16(a)
    raise TypeError(f"play() takes int16 (or float ±1) samples, got {a.dtype}")


class BufferedSpeaker:
    """What every speaker shares: a `PlaybackBuffer` of queued samples and the listeners told
    about each played block. A subclass consumes the buffer on its own clock and keeps
    `latency_s`, how long after it is consumed a sample is heard."""

    latency_s: float = 0.0

    def __init__(self, device_rate: int, sample_rate: int, max_queued_s: float) -> None:
        self._buffer = PlaybackBuffer(device_rate, sample_rate, max_queued_s)
        self._listeners: tuple[PlayedHandler, ...] = ()
        self._failed: set[int] = set()

    def play(self, pcm: np.ndarray, sample_rate: int) -> None:
        """Queue samples after what is queued; resampled here, on the caller's thread (long clips: call
        from an executor)."""
        self._buffer.put(pcm, sample_rate)

    def clear(self) -> None:
        self._buffer.clear()

    def add_listener(self, on_played: PlayedHandler) -> None:
        self._listeners = (*self._listeners, on_played)

    @property
    def is_playing(self) -> bool:
        return self._buffer.is_playing(time.monotonic())

    @property
    def heard_until(self) -> float:
        return self._buffer.heard_until(time.monotonic(), self.latency_s)

"""What the page hears of Billy's threads: his voice, the mic's level and his log lines.

Each tap runs on the thread that calls it (the speaker's, the mic's, any logger's), does a
little arithmetic, and hands one event to the loop through `publish` (the channel's
`publish_threadsafe`). None of them does anything while no page is connected.
"""

from __future__ import annotations

import base64
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from core.interfaces import AudioFrame, FrameHandler, Microphone, PlayedBlock

Publish = Callable[[dict[str, Any]], None]

AUDIO_CHUNK_S = 0.1
"""Played audio is sent to the page in pieces of about this length (seconds)."""
METER_INTERVAL_S = 0.1
LOG_LINES = 200
"""Log lines a page gets when it connects."""


def audio_event(t: float, rate: int, pcm: np.ndarray) -> dict[str, Any]:
    """The `audio` event for int16 mono `pcm` first heard at `t` (seconds) at `rate` (hertz)."""
    data = np.ascontiguousarray(pcm, dtype="<i2").tobytes()
    return {"type": "audio", "t": round(t, 4), "rate": int(rate), "pcm": base64.b64encode(data).decode("ascii")}


def dbfs(rms: float) -> float:
    """An int16 RMS level in dB below full scale, one decimal; -100 for silence."""
    return round(max(-100.0, 20 * math.log10(rms / 32768.0)), 1) if rms > 0 else -100.0


def level_dbfs(pcm: np.ndarray) -> float:
    """RMS level of int16 samples in dB below full scale; -100 for silence."""
    if pcm.size == 0:
        return -100.0
    return dbfs(math.sqrt(float(np.mean(np.square(pcm.astype(np.float64))))))


class AudioTap:
    """A speaker listener that sends what is heard, in ~100 ms pieces, to the page (simulation)."""

    def __init__(self, publish: Publish, active: Callable[[], bool], chunk_s: float = AUDIO_CHUNK_S):
        self._publish = publish
        self._active = active
        self._chunk_s = chunk_s
        self._parts: list[np.ndarray] = []
        self._start = 0.0
        self._end = 0.0
        self._rate = 0

    def __call__(self, block: PlayedBlock) -> None:
        if not self._active():
            self._parts.clear()
            return
        contiguous = abs(block.time - self._end) < 0.002 and block.sample_rate == self._rate
        if self._parts and not contiguous:
            self.flush()
        if not self._parts:
            self._start, self._rate = block.time, block.sample_rate
        self._parts.append(block.pcm)
        self._end = block.time + block.pcm.size / block.sample_rate
        if self._end - self._start >= self._chunk_s - 0.001:
            self.flush()

    def flush(self) -> None:
        if not self._parts:
            return
        pcm = np.concatenate(self._parts)
        self._parts = []
        if np.any(pcm):  # silence is not worth sending: the page plays nothing for it
            self._publish(audio_event(self._start, self._rate, pcm))


class MicTap:
    """The mic as Billy's session sees it, plus a level meter the page can switch on."""

    def __init__(self, mic: Microphone, publish: Publish, interval_s: float = METER_INTERVAL_S):
        self.mic = mic
        self.metering = False
        self._publish = publish
        self._interval = interval_s
        self._on_frame: FrameHandler | None = None
        self._squares = 0.0
        self._count = 0

    @property
    def sample_rate(self) -> int:
        return self.mic.sample_rate

    def start(self, on_frame: FrameHandler) -> None:
        self._on_frame = on_frame
        self.mic.start(self._frame)

    def stop(self) -> None:
        self.mic.stop()

    def __getattr__(self, name: str) -> Any:  # the simulated mic's `feed` and friends
        return getattr(self.mic, name)

    def _frame(self, frame: AudioFrame) -> None:
        if self._on_frame is not None:
            self._on_frame(frame)
        if not self.metering:
            self._count = 0
            return
        self._squares += float(np.sum(np.square(frame.pcm.astype(np.float64))))
        self._count += frame.pcm.size
        if self._count >= self._interval * self.sample_rate:
            level = dbfs(math.sqrt(self._squares / self._count))
            self._squares, self._count = 0.0, 0
            self._publish({"type": "mic", "level": level})


class LogTap(logging.Handler):
    """Billy's log lines for the page: the last `LOG_LINES` kept for a new page, secrets blanked out."""

    def __init__(self, publish: Publish, secrets: Iterable[str], level: int = logging.NOTSET):
        super().__init__(level)
        self._publish = publish
        self._secrets = sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True)
        self._lines: deque[dict[str, Any]] = deque(maxlen=LOG_LINES)
        self._lock_lines = threading.Lock()
        self.setFormatter(logging.Formatter("%(message)s"))

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "•••")
        return text

    def lines(self) -> list[dict[str, Any]]:
        with self._lock_lines:
            return list(self._lines)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = {
                "type": "log",
                "time": round(record.created if record.created else time.time(), 3),
                "level": record.levelname,
                "name": record.name,
                "message": self.redact(self.format(record))[:2000],
            }
        except Exception:
            self.handleError(record)
            return
        with self._lock_lines:
            self._lines.append(line)
        self._publish(line)

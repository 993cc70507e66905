"""What the endpointer measures with: Silero VAD (streaming, from faster-whisper's assets), levels, recent audio."""

from __future__ import annotations

import bisect
import functools
import math
from collections import deque
from pathlib import Path
from typing import Protocol

import numpy as np
from scipy.signal import butter, sosfilt

from core.errors import BackendError

WINDOW = 512
"""Samples per VAD window at 16 kHz (32 ms), what Silero VAD wants."""
_CONTEXT = 64
"""Samples of the previous window Silero VAD sees in front of each window."""
BLOCK = 64
"""Samples per energy block (4 ms) used to place start and end precisely."""
FLOOR_DBFS = -96.0
_HIGH_PASS_HZ = 250


class VoiceDetector(Protocol):
    """A streaming voice detector: one speech probability (0-1) per `WINDOW`-sample window."""

    def __call__(self, window: np.ndarray) -> float: ...

    def reset(self) -> None:
        """Forget the stream (a new listen)."""


@functools.cache
def _vad_session(path: str):
    import onnxruntime

    opts = onnxruntime.SessionOptions()
    opts.inter_op_num_threads = 1
    opts.intra_op_num_threads = 1
    opts.log_severity_level = 4
    return onnxruntime.InferenceSession(path, sess_options=opts, providers=["CPUExecutionProvider"])


def default_vad_model() -> Path:
    """The Silero VAD model carried by faster-whisper."""
    from faster_whisper.utils import get_assets_path

    return Path(get_assets_path()) / "silero_vad_v6.onnx"


class SileroVad:
    """Streaming Silero VAD (v6): one speech probability per 512-sample window."""

    def __init__(self, model_path: Path):
        if not model_path.is_file():
            raise BackendError(
                f"The voice activity model {model_path} is missing: reinstall faster-whisper "
                "(`.venv/bin/pip install --force-reinstall faster-whisper==1.2.1`)."
            )
        self._session = _vad_session(str(model_path))
        self.reset()

    def reset(self) -> None:
        self._h = np.zeros((1, 1, 128), dtype=np.float32)
        self._c = np.zeros((1, 1, 128), dtype=np.float32)
        self._context = np.zeros(_CONTEXT, dtype=np.float32)

    def __call__(self, window: np.ndarray) -> float:
        x = window.astype(np.float32) / 32768.0
        inputs = np.concatenate([self._context, x])[None, :]
        prob, self._h, self._c = self._session.run(None, {"input": inputs, "h": self._h, "c": self._c})
        self._context = x[-_CONTEXT:]
        return float(np.ravel(prob)[0])


def dbfs(pcm: np.ndarray) -> float:
    """Level (dBFS) of a window."""
    x = pcm.astype(np.float64)
    power = float(np.mean(x * x)) if x.size else 0.0
    return max(FLOOR_DBFS, 10 * math.log10(power / 32768.0**2 + 1e-12))


def smoothed_levels(pcm: np.ndarray) -> np.ndarray:
    """Level (dBFS) of each whole 4 ms block, averaged in power with its two neighbours.

    The 12 ms average steadies noise (a 4 ms block of fan noise swings by several dB) while
    moving an edge by at most one block.
    """
    n = len(pcm) // BLOCK
    if n == 0:
        return np.zeros(0)
    x = pcm[: n * BLOCK].astype(np.float64).reshape(n, BLOCK)
    power = np.convolve(np.mean(x * x, axis=1), np.ones(3) / 3, mode="same")
    return np.maximum(FLOOR_DBFS, 10 * np.log10(power / 32768.0**2 + 1e-12))


class AudioHistory:
    """Recent samples by absolute index (counted from `reset`), and when each was captured.

    Keeps a high-passed twin of the samples (250 Hz, 2nd order) that all levels are measured
    on: hum, fans and pink noise live low, while the ends of words (s, t, breathy vowels)
    live high, so the filter gains 10-30 dB of signal-to-noise where the edges are.
    """

    def __init__(self, capacity: int, sample_rate: int):
        self._buf = np.zeros(capacity, dtype=np.int16)
        self._high = np.zeros(capacity, dtype=np.float32)
        self._sos = butter(2, _HIGH_PASS_HZ, btype="highpass", fs=sample_rate, output="sos")
        self._zi = np.zeros((self._sos.shape[0], 2))
        self._rate = sample_rate
        self.base = 0
        """Absolute index of `_buf[0]`."""
        self.end = 0
        """Absolute index one past the newest sample."""
        self._anchors: deque[tuple[int, float]] = deque()
        """(absolute index, play-clock time) of the first sample of each frame."""

    def append(self, pcm: np.ndarray, time: float) -> None:
        n = len(pcm)
        if self.end - self.base + n > len(self._buf):
            self._grow(self.end - self.base + n)
        start = self.end - self.base
        self._buf[start : start + n] = pcm
        self._high[start : start + n], self._zi = sosfilt(self._sos, pcm.astype(np.float64), zi=self._zi)
        self._anchors.append((self.end, time))
        self.end += n

    def _grow(self, needed: int) -> None:
        size = max(needed, 2 * len(self._buf))
        kept = self.end - self.base
        self._buf = np.concatenate([self._buf[:kept], np.zeros(size - kept, dtype=np.int16)])
        self._high = np.concatenate([self._high[:kept], np.zeros(size - kept, dtype=np.float32)])

    def forget_before(self, index: int) -> None:
        """Drop samples older than absolute `index` (keeps the buffer from growing)."""
        index = min(max(index, self.base), self.end)
        keep = self.end - index
        self._buf[:keep] = self._buf[index - self.base : self.end - self.base]
        self._high[:keep] = self._high[index - self.base : self.end - self.base]
        self.base = index
        while len(self._anchors) > 1 and self._anchors[1][0] <= index:
            self._anchors.popleft()

    def get(self, start: int, stop: int) -> np.ndarray:
        """The int16 samples from absolute `start` to `stop` (clipped to what is kept)."""
        start = max(start, self.base)
        stop = min(stop, self.end)
        return self._buf[start - self.base : max(start, stop) - self.base].copy()

    def high(self, start: int, stop: int) -> np.ndarray:
        """The high-passed twin of `get` (float)."""
        start = max(start, self.base)
        stop = min(stop, self.end)
        return self._high[start - self.base : max(start, stop) - self.base]

    def time_of(self, index: int) -> float:
        """Play-clock time of absolute sample `index` (extrapolated past the ends)."""
        if not self._anchors:
            return index / self._rate
        pos = bisect.bisect_right(self._anchors, index, key=lambda a: a[0]) - 1
        anchor_index, anchor_time = self._anchors[max(pos, 0)]
        return anchor_time + (index - anchor_index) / self._rate

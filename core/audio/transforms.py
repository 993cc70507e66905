"""Pure audio transforms: sample formats, resampling, channel mixing and levels.

Each is a function of its inputs (the streaming resampler keeps only the input history it
needs between chunks), so each is tested on plain arrays, away from any sound card.
Layouts follow sounddevice: a multichannel block is `(frames, channels)`.
"""

from __future__ import annotations

import functools
import math

import numpy as np
from scipy import signal

SILENCE_DBFS = -120.0
"""What `rms_dbfs` says for digital silence (and anything quieter), instead of -inf."""

_ZERO_CROSSINGS = 24
"""Half-length of the resampling filter, in zero crossings of its sinc (taps per output ≈ 2×this)."""
_ROLLOFF = 0.88
"""Filter cutoff as a fraction of the lower Nyquist frequency: leaves room for the transition band."""
_KAISER_BETA = 8.0
"""Kaiser window shape: about 80 dB of stopband, so aliases stay below the int16 noise floor of speech."""
_RENDER_BLOCK = 4096
"""Outputs computed per vectorised step, which bounds the memory a long one-shot resample takes."""


def pcm16_to_float(pcm: np.ndarray) -> np.ndarray:
    """int16 samples to float32 in [-1, 1): divides by 32768, so the round trip is exact."""
    return _int16(pcm).astype(np.float32) / np.float32(32768.0)


def float_to_pcm16(samples: np.ndarray) -> np.ndarray:
    """Float samples (full scale ±1) to int16, rounded and clipped; NaN becomes 0, ±inf full scale.

    Clipping happens in float before the cast, so an over-range sample never wraps around.
    """
    x = np.nan_to_num(np.asarray(samples, dtype=np.float64), nan=0.0, posinf=1.0, neginf=-1.0)
    return np.clip(np.rint(x * 32768.0), -32768, 32767).astype(np.int16)


def to_mono(block: np.ndarray) -> np.ndarray:
    """Average the channels of a `(frames, channels)` block into a new 1-D array of the same dtype.

    A 1-D array is already mono and comes back as a copy. Integer samples are averaged in a
    wider type and rounded, so two full-scale channels cannot overflow.
    """
    a = np.asarray(block)
    if a.ndim == 1:
        return a.copy()
    if a.ndim != 2:
        raise ValueError(f"audio block must be (frames,) or (frames, channels), got shape {a.shape}")
    if a.shape[1] == 1:
        return a[:, 0].copy()
    if np.issubdtype(a.dtype, np.integer):
        return np.rint(a.mean(axis=1, dtype=np.float64)).astype(a.dtype)
    return a.mean(axis=1).astype(a.dtype)


def rms_dbfs(pcm: np.ndarray) -> float:
    """RMS level in dB relative to full scale (a full-scale square wave is 0, a full-scale sine -3.01).

    int16 input is scaled by 32768; float input is taken as full scale ±1. Empty input and
    silence give `SILENCE_DBFS`.
    """
    a = np.asarray(pcm)
    if a.size == 0:
        return SILENCE_DBFS
    x = a.astype(np.float64).reshape(-1)
    if a.dtype == np.int16:
        x /= 32768.0
    rms = math.sqrt(float(np.mean(x * x)))
    if rms <= 10.0 ** (SILENCE_DBFS / 20.0):
        return SILENCE_DBFS
    return 20.0 * math.log10(rms)


def envelope(pcm: np.ndarray, sample_rate: int, window_ms: float) -> np.ndarray:
    """RMS of consecutive windows of `window_ms`, in the units of `pcm` (int16 units for int16), as float32.

    Window i starts at sample i × round(sample_rate × window_ms / 1000). A last partial
    window is measured over the samples it has, so the end of a block is never lost.
    """
    x = np.asarray(pcm, dtype=np.float64).reshape(-1)
    size = max(1, round(sample_rate * window_ms / 1000.0))
    if x.size == 0:
        return np.zeros(0, dtype=np.float32)
    full = x.size // size
    squares = (x[: full * size].reshape(full, size) ** 2).mean(axis=1)
    if x.size > full * size:
        squares = np.append(squares, np.mean(x[full * size :] ** 2))
    return np.sqrt(squares).astype(np.float32)


@functools.lru_cache(maxsize=32)
def _filter_bank(up: int, down: int) -> tuple[np.ndarray, int]:
    """Polyphase bank `bank[phase, tap] = h[phase + tap*up]` of a windowed-sinc low-pass, and its delay.

    The prototype runs at the upsampled rate (in × up), cuts at the lower of the two Nyquist
    frequencies, and is scaled by `up` so the zero-stuffed signal keeps its level. Its delay
    (half its length, in upsampled samples) is what the resampler compensates.
    """
    wide = max(up, down)
    half = _ZERO_CROSSINGS * wide
    h = signal.firwin(2 * half + 1, _ROLLOFF / wide, window=("kaiser", _KAISER_BETA)) * up
    taps = -(-h.size // up)
    padded = np.zeros(taps * up)
    padded[: h.size] = h
    bank = np.ascontiguousarray(padded.reshape(taps, up).T)
    bank.flags.writeable = False
    return bank, half


class StreamResampler:
    """Rational-ratio polyphase resampler for int16 audio arriving in chunks of any size.

    Output sample n is the band-limited input evaluated at time n / out_rate: the filter's
    delay is compensated, so output and input line up in time. Chunking changes nothing:
    feeding a signal in pieces gives the same samples as feeding it whole, and after
    `flush()` the total is exactly ceil(total_in × out_rate / in_rate) samples, however
    long the stream. Until the flush, the last few milliseconds wait for the input that
    follows them.
    """

    def __init__(self, in_rate: int, out_rate: int) -> None:
        if int(in_rate) != in_rate or int(out_rate) != out_rate or in_rate <= 0 or out_rate <= 0:
            raise ValueError(f"sample rates must be positive integers (hertz), got {in_rate} → {out_rate}")
        self.in_rate = int(in_rate)
        self.out_rate = int(out_rate)
        g = math.gcd(self.in_rate, self.out_rate)
        self.up = self.out_rate // g
        self.down = self.in_rate // g
        if self.passthrough:
            self._bank, self._delay = np.ones((1, 1)), 0
        else:
            self._bank, self._delay = _filter_bank(self.up, self.down)
        self._taps = self._bank.shape[1]
        self.reset()

    @property
    def passthrough(self) -> bool:
        """Both rates are equal: chunks are copied through untouched."""
        return self.up == self.down

    def reset(self) -> None:
        """Forget the stream: the next chunk starts a new signal preceded by silence."""
        self._buf = np.zeros(self._taps - 1)
        self._buf_start = -(self._taps - 1)
        self._n_in = 0
        self._n_out = 0

    def process(self, chunk: np.ndarray) -> np.ndarray:
        """Resample the next chunk; returns every output sample whose inputs have all arrived."""
        x = _int16(chunk)
        if x.ndim != 1:
            raise ValueError(f"resampler takes mono 1-D audio, got shape {x.shape}")
        if self.passthrough:
            self._n_in += x.size
            self._n_out += x.size
            return x.copy()
        self._buf = np.concatenate([self._buf, x.astype(np.float64)])
        self._n_in += x.size
        ready = (self._n_in * self.up - 1 - self._delay) // self.down + 1
        out = self._render(self._n_out, max(ready, self._n_out), self._buf, self._buf_start)
        self._n_out += out.size
        self._trim()
        return out

    def peek_flush(self) -> np.ndarray:
        """What `flush()` would return now (the tail, as if silence followed), without changing state."""
        if self.passthrough:
            return np.zeros(0, dtype=np.int16)
        total = -(-self._n_in * self.up // self.down)
        if total <= self._n_out:
            return np.zeros(0, dtype=np.int16)
        last_input = ((total - 1) * self.down + self._delay) // self.up
        missing = last_input + 1 - (self._buf_start + self._buf.size)
        buf = np.concatenate([self._buf, np.zeros(max(0, missing))])
        return self._render(self._n_out, total, buf, self._buf_start)

    def flush(self) -> np.ndarray:
        """End the stream: returns the remaining output (input taken as silence after the end) and resets."""
        out = self.peek_flush()
        self.reset()
        return out

    def _render(self, start: int, stop: int, buf: np.ndarray, buf_start: int) -> np.ndarray:
        out = np.empty(stop - start, dtype=np.int16)
        back = np.arange(self._taps)
        for lo in range(start, stop, _RENDER_BLOCK):
            n = np.arange(lo, min(stop, lo + _RENDER_BLOCK), dtype=np.int64)
            t = n * self.down + self._delay
            newest = t // self.up - buf_start
            y = np.einsum("ij,ij->i", buf[newest[:, None] - back], self._bank[t % self.up])
            out[lo - start : lo - start + n.size] = np.clip(np.rint(y), -32768, 32767)
        return out

    def _trim(self) -> None:
        """Drop history no future output needs (the next output's oldest tap and later stay)."""
        oldest = (self._n_out * self.down + self._delay) // self.up - (self._taps - 1)
        drop = min(max(0, oldest - self._buf_start), self._buf.size)
        if drop:
            self._buf = self._buf[drop:]
            self._buf_start += drop


def resample(pcm: np.ndarray, in_rate: int, out_rate: int) -> np.ndarray:
    """Resample a whole int16 mono signal (same filter and alignment as `StreamResampler`)."""
    r = StreamResampler(in_rate, out_rate)
    head = r.process(pcm)
    return np.concatenate([head, r.flush()])


def _int16(pcm: np.ndarray) -> np.ndarray:
    a = np.asarray(pcm)
    if a.dtype != np.int16:
        raise TypeError(f"expected int16 samples, got {a.dtype}; convert floats with float_to_pcm16()")
    return a

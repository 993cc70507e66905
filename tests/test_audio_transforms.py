"""The pure audio transforms: formats, channel mixing, levels and the streaming resampler."""

from __future__ import annotations

import math

import numpy as np
import pytest

from core.audio.transforms import (
    SILENCE_DBFS,
    StreamResampler,
    envelope,
    float_to_pcm16,
    pcm16_to_float,
    resample,
    rms_dbfs,
    to_mono,
)

RATE_PAIRS = [(22050, 16000), (16000, 48000), (22050, 48000), (44100, 16000), (48000, 16000), (48000, 44100)]


def _tone(freq: float, rate: int, seconds: float, amplitude: float = 12000.0, phase: float = 0.3) -> np.ndarray:
    t = np.arange(round(rate * seconds)) / rate
    return amplitude * np.sin(2 * np.pi * freq * t + phase)


def _noise(n: int, seed: int = 1) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal(n) * 4000).astype(np.int16)


# --- sample formats ---------------------------------------------------------------------


def test_int16_float_round_trip_is_exact_for_every_value() -> None:
    every = np.arange(-32768, 32768, dtype=np.int32).astype(np.int16)
    as_float = pcm16_to_float(every)
    assert as_float.dtype == np.float32
    assert as_float.min() == -1.0 and as_float.max() < 1.0
    np.testing.assert_array_equal(float_to_pcm16(as_float), every)


def test_float_to_pcm16_clips_instead_of_wrapping() -> None:
    x = np.array([2.0, -2.0, 1.0, -1.0, 0.99999, 1e9, np.nan, np.inf, -np.inf, 0.5], dtype=np.float32)
    np.testing.assert_array_equal(
        float_to_pcm16(x), [32767, -32768, 32767, -32768, 32767, 32767, 0, 32767, -32768, 16384]
    )


def test_pcm16_to_float_refuses_other_integer_widths() -> None:
    with pytest.raises(TypeError, match="int16"):
        pcm16_to_float(np.array([70000], dtype=np.int32))


# --- channels ---------------------------------------------------------------------------


def test_to_mono_averages_across_channels_not_time() -> None:
    block = np.array([[100, 300], [-32768, -32768], [32767, 32767], [1, 2]], dtype=np.int16)
    mono = to_mono(block)
    assert mono.dtype == np.int16
    np.testing.assert_array_equal(mono, [200, -32768, 32767, 2])  # 1.5 rounds to even


def test_to_mono_keeps_one_channel_and_copies() -> None:
    block = np.arange(6, dtype=np.int16).reshape(6, 1)
    mono = to_mono(block)
    np.testing.assert_array_equal(mono, np.arange(6))
    mono[0] = 99
    assert block[0, 0] == 0
    flat = np.arange(4, dtype=np.int16)
    assert to_mono(flat) is not flat


def test_to_mono_float_and_bad_shapes() -> None:
    block = np.array([[0.5, -0.5, 1.0], [0.25, 0.25, 0.25]], dtype=np.float32)
    out = to_mono(block)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [1.0 / 3.0, 0.25])
    with pytest.raises(ValueError, match="shape"):
        to_mono(np.zeros((2, 2, 2)))


# --- levels -----------------------------------------------------------------------------


def test_rms_dbfs_of_known_signals() -> None:
    sine = float_to_pcm16(np.sin(2 * np.pi * 1000 * np.arange(16000) / 16000) * 0.999969)
    assert rms_dbfs(sine) == pytest.approx(-3.01, abs=0.01)
    half = (sine // 2).astype(np.int16)
    assert rms_dbfs(half) == pytest.approx(-9.03, abs=0.02)
    square = np.where(np.arange(1600) % 32 < 16, 1.0, -1.0)
    assert rms_dbfs(square) == pytest.approx(0.0, abs=1e-9)
    assert rms_dbfs(np.zeros(100, dtype=np.int16)) == SILENCE_DBFS
    assert rms_dbfs(np.zeros(0, dtype=np.int16)) == SILENCE_DBFS


def test_envelope_is_rms_per_window_with_partial_last_window() -> None:
    pcm = np.concatenate([np.full(160, 1000), np.zeros(160), np.full(50, -300)]).astype(np.int16)
    env = envelope(pcm, 16000, 10)
    assert env.dtype == np.float32
    np.testing.assert_allclose(env, [1000.0, 0.0, 300.0])
    tone = _tone(500, 16000, 0.1, amplitude=8000)
    np.testing.assert_allclose(envelope(tone, 16000, 20), 8000 / math.sqrt(2), rtol=0.01)
    assert envelope(np.zeros(0, dtype=np.int16), 16000, 10).size == 0


# --- resampling -------------------------------------------------------------------------


@pytest.mark.parametrize(("in_rate", "out_rate"), RATE_PAIRS)
def test_chunked_equals_whole_and_length_is_exact(in_rate: int, out_rate: int) -> None:
    x = _noise(in_rate // 2 + 7)
    whole = resample(x, in_rate, out_rate)
    assert whole.size == math.ceil(x.size * out_rate / in_rate)
    r = StreamResampler(in_rate, out_rate)
    rng = np.random.default_rng(in_rate + out_rate)
    parts, i = [], 0
    while i < x.size:
        n = int(rng.choice([1, 2, 3, 160, 441, 1024, 2000]))
        parts.append(r.process(x[i : i + n]))
        i += n
    parts.append(r.flush())
    chunked = np.concatenate(parts)
    assert chunked.size == whole.size
    assert np.abs(chunked.astype(np.int32) - whole).max() <= 1


@pytest.mark.parametrize(("in_rate", "out_rate"), RATE_PAIRS)
@pytest.mark.parametrize("freq", [440.0, 3000.0])
def test_tones_keep_level_and_timing(in_rate: int, out_rate: int, freq: float) -> None:
    """Output sample n is the input at time n/out_rate: checked against the tone computed at the output rate."""
    out = resample(_tone(freq, in_rate, 0.5).round().astype(np.int16), in_rate, out_rate).astype(np.float64)
    expected = _tone(freq, out_rate, 0.5)
    edge = out_rate // 50  # the filter's start-up and end (20 ms)
    error = out[edge:-edge] - expected[edge : out.size - edge]
    assert np.abs(error).max() < 0.002 * 12000


@pytest.mark.parametrize(("in_rate", "out_rate", "freq"), [(22050, 16000, 10000.0), (44100, 16000, 12000.0)])
def test_frequencies_above_the_new_nyquist_are_removed(in_rate: int, out_rate: int, freq: float) -> None:
    x = _tone(freq, in_rate, 0.5, amplitude=20000).round().astype(np.int16)
    out = resample(x, in_rate, out_rate)
    edge = out_rate // 50
    assert rms_dbfs(out[edge:-edge]) < rms_dbfs(x) - 60


def test_no_drift_over_a_long_stream() -> None:
    """30 s in 20 ms chunks: the output count never strays more than the filter delay from in × out / in."""
    r = StreamResampler(22050, 16000)
    chunk = _noise(441, seed=5)
    total_in = total_out = 0
    worst = 0.0
    for _ in range(1500):
        total_out += r.process(chunk).size
        total_in += chunk.size
        worst = max(worst, abs(total_in * 16000 / 22050 - total_out))
    total_out += r.flush().size
    assert total_out == math.ceil(total_in * 16000 / 22050)
    assert worst < 30  # under 2 ms at 16 kHz, and bounded: it does not grow with the stream


def test_peek_flush_does_not_disturb_the_stream() -> None:
    x = _noise(3000, seed=9)
    r = StreamResampler(22050, 48000)
    head = r.process(x[:1000])
    first, second = r.peek_flush(), r.peek_flush()
    np.testing.assert_array_equal(first, second)
    rest = r.process(x[1000:])
    np.testing.assert_array_equal(np.concatenate([head, rest, r.flush()]), resample(x, 22050, 48000))
    # after flush the resampler starts a fresh stream
    np.testing.assert_array_equal(np.concatenate([r.process(x), r.flush()]), resample(x, 22050, 48000))


def test_equal_rates_pass_through_untouched() -> None:
    x = _noise(500)
    r = StreamResampler(16000, 16000)
    out = r.process(x)
    np.testing.assert_array_equal(out, x)
    assert out is not x
    assert r.flush().size == 0


def test_bad_input_is_refused_clearly() -> None:
    with pytest.raises(ValueError, match="positive integers"):
        StreamResampler(0, 16000)
    with pytest.raises(ValueError, match="positive integers"):
        StreamResampler(22050.5, 16000)  # type: ignore[arg-type]
    r = StreamResampler(22050, 16000)
    with pytest.raises(TypeError, match="int16"):
        r.process(np.zeros(10, dtype=np.float32))
    with pytest.raises(ValueError, match="mono"):
        r.process(np.zeros((10, 2), dtype=np.int16))

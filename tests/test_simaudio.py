"""The simulated mic and speaker, in real time on the play clock, and the WAV helpers."""

from __future__ import annotations

import itertools
import threading
import time
import wave
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from scipy.io import wavfile

from core.audio.simulated import SimulatedMicrophone, SimulatedSpeaker
from core.audio.transforms import resample
from core.audio.wav import read_wav, write_wav
from core.interfaces import AudioFrame, PlayedBlock

LATENCY = 0.15


def _wait_for(condition, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def _tone(freq: float, rate: int, seconds: float, amplitude: float = 8000.0) -> np.ndarray:
    return (amplitude * np.sin(2 * np.pi * freq * np.arange(round(rate * seconds)) / rate)).astype(np.int16)


# --- WAV files --------------------------------------------------------------------------

WAVE = np.sin(np.arange(2000) * 0.03) * 0.5


def _write_24bit(path: Path, x: np.ndarray, rate: int) -> None:
    ints = np.round(x * (2**23 - 1)).astype("<i4")
    raw = ints.view(np.uint8).reshape(-1, 4)[:, :3].tobytes()  # little-endian: drop the top byte
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(3)
        w.setframerate(rate)
        w.writeframes(raw)


@pytest.mark.parametrize(
    ("kind", "data", "tolerance"),
    [
        ("uint8", np.round(WAVE * 127 + 128).astype(np.uint8), 0.01),
        ("int16", np.round(WAVE * 32767).astype(np.int16), 1e-4),
        ("int32", np.round(WAVE * (2**31 - 1)).astype(np.int32), 1e-4),
        ("float32", WAVE.astype(np.float32), 1e-4),
        ("float64", WAVE, 1e-4),
    ],
)
def test_read_wav_any_format(tmp_path: Path, kind: str, data: np.ndarray, tolerance: float) -> None:
    path = tmp_path / f"{kind}.wav"
    wavfile.write(path, 44100, data)
    pcm, rate = read_wav(path)
    assert rate == 44100 and pcm.dtype == np.int16 and pcm.shape == WAVE.shape
    assert np.abs(pcm / 32768.0 - WAVE).max() < tolerance


def test_read_wav_24_bit_and_stereo(tmp_path: Path) -> None:
    _write_24bit(tmp_path / "a.wav", WAVE, 22050)
    pcm, rate = read_wav(tmp_path / "a.wav")
    assert rate == 22050
    assert np.abs(pcm / 32768.0 - WAVE).max() < 1e-4
    stereo = np.stack([WAVE, np.zeros_like(WAVE)], axis=1).astype(np.float32)
    wavfile.write(tmp_path / "s.wav", 48000, stereo)
    pcm, rate = read_wav(tmp_path / "s.wav")
    assert rate == 48000 and pcm.ndim == 1
    assert np.abs(pcm / 32768.0 - WAVE / 2).max() < 1e-4


def test_read_wav_bad_files_name_the_path(tmp_path: Path) -> None:
    text = tmp_path / "notes.wav"
    text.write_text("this is not audio")
    with pytest.raises(ValueError, match=r"notes\.wav is not a readable WAV file"):
        read_wav(text)
    good = tmp_path / "good.wav"
    wavfile.write(good, 16000, np.zeros(100, dtype=np.int16))
    cut = tmp_path / "cut.wav"
    cut.write_bytes(good.read_bytes()[:30])
    with pytest.raises(ValueError, match=r"cut\.wav"):
        read_wav(cut)
    with pytest.raises(FileNotFoundError):
        read_wav(tmp_path / "missing.wav")


def test_write_wav_round_trip(tmp_path: Path) -> None:
    pcm = _tone(440, 22050, 0.1)
    write_wav(tmp_path / "out" / "x.wav", pcm, 22050)
    back, rate = read_wav(tmp_path / "out" / "x.wav")
    assert rate == 22050
    np.testing.assert_array_equal(back, pcm)
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["x.wav"]  # no temp file left behind


# --- the microphone ---------------------------------------------------------------------


@pytest.fixture
def mic() -> Iterator[tuple[SimulatedMicrophone, list[tuple[AudioFrame, float]]]]:
    m = SimulatedMicrophone(sample_rate=16000, frame_ms=20)
    got: list[tuple[AudioFrame, float]] = []
    m.start(lambda frame: got.append((frame, time.monotonic())))
    yield m, got
    m.stop()


def test_mic_frames_are_on_time_and_do_not_drift(mic) -> None:
    _, got = mic
    started = time.monotonic()
    _wait_for(lambda: len(got) >= 30)
    frames = [f for f, _ in got[:30]]
    assert all(f.pcm.dtype == np.int16 and f.pcm.shape == (320,) and not f.pcm.any() for f in frames)
    times = np.array([f.time for f in frames])
    np.testing.assert_allclose(np.diff(times), 0.02, atol=1e-9)  # deadlines from the start: no drift at all
    assert abs(times[0] - started) < 0.05
    for frame, arrived in got[:30]:
        assert arrived >= frame.time + 0.02 - 1e-3  # a frame is handed out once it has been captured


def test_fed_clips_play_in_order_with_exact_times(mic) -> None:
    m, got = mic
    first = _tone(500, 22050, 0.3)
    second = _tone(900, 16000, 0.2)
    h1 = m.feed(first, 22050)
    h2 = m.feed(second, 16000)
    assert h2.done.wait(5.0) and h1.done.is_set()
    frames = [f for f, _ in got]
    timeline = np.concatenate([f.pcm for f in frames])
    t0 = frames[0].time
    start1 = round((h1.started_at - t0) * 16000)
    start2 = round((h2.started_at - t0) * 16000)
    expected1 = resample(first, 22050, 16000)
    np.testing.assert_array_equal(timeline[start1 : start1 + expected1.size], expected1)
    np.testing.assert_array_equal(timeline[start2 : start2 + second.size], second)
    assert start2 == start1 + expected1.size  # back to back
    assert h1.ended_at == pytest.approx(h1.started_at + (expected1.size - 1) / 16000, abs=1e-9)
    assert h2.ended_at == pytest.approx(h2.started_at + (second.size - 1) / 16000, abs=1e-9)
    assert not timeline[: max(0, start1)].any()


def test_feed_from_another_thread_lands_after_what_is_queued(mic) -> None:
    m, _ = mic
    h1 = m.feed(np.full(1000, 100, dtype=np.int16), 16000)
    handles = []
    thread = threading.Thread(target=lambda: handles.append(m.feed(np.full(500, -100, dtype=np.int16), 16000)))
    thread.start()
    thread.join()
    assert handles[0].done.wait(5.0)
    assert handles[0].started_at == pytest.approx(h1.ended_at + 1 / 16000, abs=1e-9)
    assert m.queued_seconds == 0.0


def test_mic_survives_a_failing_handler() -> None:
    m = SimulatedMicrophone()
    calls = []

    def handler(frame: AudioFrame) -> None:
        calls.append(frame)
        raise RuntimeError("consumer bug")

    m.start(handler)
    try:
        _wait_for(lambda: len(calls) >= 5)
    finally:
        m.stop()


# --- the speaker ------------------------------------------------------------------------


@pytest.fixture
def speaker() -> Iterator[tuple[SimulatedSpeaker, list[PlayedBlock]]]:
    s = SimulatedSpeaker(latency_s=LATENCY, block_ms=10)
    blocks: list[PlayedBlock] = []
    s.add_listener(blocks.append)
    s.start()
    yield s, blocks
    s.stop()


def _click_train(rate: int, seconds: float, every_s: float) -> np.ndarray:
    pcm = np.zeros(round(rate * seconds), dtype=np.int16)
    pcm[:: round(rate * every_s)] = 20000
    return pcm


def _clicks_heard(blocks: list[PlayedBlock]) -> np.ndarray:
    return np.array([b.time + i / b.sample_rate for b in blocks for i in np.flatnonzero(b.pcm > 10000)])


def test_play_clock_is_exact_and_latency_shows(speaker) -> None:
    s, blocks = speaker
    clicks = _click_train(22050, 1.0, 0.1)
    t_play = time.monotonic()
    s.play(clicks, 22050)
    assert s.heard_until == pytest.approx(t_play + LATENCY + 1.0, abs=0.03)
    _wait_for(lambda: not s.is_playing)

    heard = _clicks_heard(blocks)
    assert heard.size == 10
    np.testing.assert_allclose(np.diff(heard), 0.1, atol=1e-4)  # the stream keeps real-time pace
    assert LATENCY - 0.02 <= heard[0] - t_play <= LATENCY + 0.06  # heard a latency after play()

    recording = s.recording(t_play)
    assert s.sample_rate == 22050
    in_recording = t_play + np.flatnonzero(recording) / 22050
    np.testing.assert_allclose(in_recording, heard, atol=1e-3)


def test_other_rates_are_resampled_into_the_recording_in_place(speaker) -> None:
    s, blocks = speaker
    clicks = _click_train(16000, 0.5, 0.1)
    t_play = time.monotonic()
    s.play(clicks, 16000)
    _wait_for(lambda: not s.is_playing)
    heard = _clicks_heard(blocks)
    assert heard.size == 5 and {b.sample_rate for b in blocks if b.pcm.any()} == {16000}
    recording = s.recording(t_play).astype(np.int32)
    peaks = []
    for t in heard:  # the band-limited click's peak sits where the click is heard
        i = round((t - t_play) * 22050)
        window = recording[i - 50 : i + 50]
        peaks.append(t_play + (i - 50 + int(np.argmax(window))) / 22050)
    np.testing.assert_allclose(peaks, heard, atol=1e-3)


def test_played_blocks_form_a_continuous_timeline_with_silence_after(speaker) -> None:
    s, blocks = speaker
    voice = _tone(300, 22050, 0.3)
    s.play(voice, 22050)
    _wait_for(lambda: not s.is_playing)
    time.sleep(0.2)
    timeline = list(blocks)
    np.testing.assert_array_equal(np.concatenate([b.pcm for b in timeline])[: voice.size], voice)
    for a, b in itertools.pairwise(timeline):
        assert b.time == pytest.approx(a.time + a.pcm.size / a.sample_rate, abs=1e-4)
    silence_after = [b for b in timeline if b.time >= timeline[0].time + 0.3]
    assert len(silence_after) >= 5 and not any(b.pcm.any() for b in silence_after)


@pytest.mark.slow
def test_idle_speaker_stops_reporting_silence(speaker) -> None:
    s, blocks = speaker
    s.play(_tone(300, 22050, 0.05), 22050)
    _wait_for(lambda: not s.is_playing)
    time.sleep(1.3)
    count = len(blocks)
    time.sleep(0.3)
    assert len(blocks) == count
    s.play(_tone(300, 22050, 0.05), 22050)  # and wakes up for the next sound
    _wait_for(lambda: len(blocks) > count)


def test_clear_falls_silent_after_what_is_in_flight(speaker) -> None:
    s, blocks = speaker
    t_play = time.monotonic()
    s.play(_tone(440, 22050, 2.0), 22050)
    time.sleep(0.4)
    t_clear = time.monotonic()
    s.clear()
    until = s.heard_until
    assert t_clear - 0.02 <= until <= t_clear + LATENCY + 0.02  # only the blocks already consumed
    _wait_for(lambda: not s.is_playing)
    time.sleep(0.1)
    recording = s.recording(t_play)
    last_heard = t_play + np.flatnonzero(recording)[-1] / 22050
    assert last_heard == pytest.approx(until, abs=0.002)
    assert 0.3 < last_heard - t_play < 0.4 + LATENCY + 0.05
    assert not any(b.pcm.any() for b in blocks if b.time >= until)


@pytest.mark.slow
def test_two_plays_apart_land_at_their_own_times(speaker, tmp_path: Path) -> None:
    s, _ = speaker
    t0 = time.monotonic()
    s.play(_click_train(22050, 0.05, 1.0), 22050)
    _wait_for(lambda: not s.is_playing)
    time.sleep(1.2)  # long enough for the speaker to go idle and restart its schedule
    t_second = time.monotonic()
    s.play(_click_train(22050, 0.05, 1.0), 22050)
    _wait_for(lambda: not s.is_playing)
    clicks = t0 + np.flatnonzero(s.recording(t0)) / 22050
    assert clicks.size == 2
    assert LATENCY - 0.02 <= clicks[0] - t0 <= LATENCY + 0.06
    assert LATENCY - 0.02 <= clicks[1] - t_second <= LATENCY + 0.06
    s.write_wav(tmp_path / "speaker.wav", t0)
    pcm, rate = read_wav(tmp_path / "speaker.wav")
    assert rate == 22050
    np.testing.assert_array_equal(pcm, s.recording(t0))

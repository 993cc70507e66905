"""The endpointer on real speech (the bundled piper voice) mixed with noise, and on noise alone."""

from __future__ import annotations

import numpy as np
import pytest

from core.config import EndpointSettings
from core.listen.endpoint import Endpointer, SpeechEnded, SpeechPaused, SpeechResumed, SpeechStarted
from tests.helpers.speech import SAMPLE_RATE, frames, mix, noise, silence, speech_16k, speech_bounds, with_pause

T0 = 1000.0
"""Play-clock time of the first sample fed in each test."""
LEAD = 1.0
"""Seconds of background before the voice starts."""
SETTINGS = EndpointSettings()

SENTENCES = [
    "Hello there, how are you doing today?",
    "Turn on the kitchen lights please.",
    "What time is it?",
    "Tell me a joke about fish.",
    "Can you play a song for me?",
]


def _run(pcm: np.ndarray, settings: EndpointSettings = SETTINGS, frame_ms: float = 20, **kwargs) -> list:
    endpointer = Endpointer(settings, **kwargs)
    events = []
    for frame in frames(pcm, frame_ms, T0):
        events.extend(endpointer.process(frame))
    return events


def _scene(text: str, kind: str = "silence", snr_db: float = 20, seed: int = 0) -> tuple[np.ndarray, float, float]:
    """The voice after LEAD seconds of background, 1.5 s of background after it.

    Returns the samples and the play-clock times of the first and last voice sample.
    """
    voice = speech_16k(text)
    first, last = speech_bounds(voice)
    offset = int(LEAD * SAMPLE_RATE) - first
    seconds = (offset + len(voice)) / SAMPLE_RATE + 1.5
    if kind == "silence":
        pcm = np.concatenate([silence(offset / SAMPLE_RATE), voice, silence(1.5)])
    else:
        pcm = mix(voice, noise(kind, seconds, -45, seed=seed), snr_db, offset=offset)
    return pcm, T0 + (offset + first) / SAMPLE_RATE, T0 + (offset + last) / SAMPLE_RATE


def _kinds(events: list) -> list[str]:
    return [type(e).__name__ for e in events]


def _ended(events: list) -> list:
    return [e.utterance for e in events if isinstance(e, SpeechEnded)]


@pytest.mark.parametrize("kind", ["white", "pink", "hum", "fan", "slams", "silence"])
@pytest.mark.parametrize("level", [-60, -30, -10])
def test_noise_alone_is_never_speech(kind: str, level: float) -> None:
    assert _run(noise(kind, 6, level, seed=7)) == []


def test_digital_silence_and_odd_frames_are_never_speech() -> None:
    assert _run(silence(5), frame_ms=7) == []
    assert _run(np.zeros(0, dtype=np.int16)) == []


@pytest.mark.slow
def test_clean_sentence_gives_one_utterance_with_pre_roll() -> None:
    pcm, start, _ = _scene(SENTENCES[0])
    events = _run(pcm)
    assert _kinds(events)[0] == "SpeechStarted"
    assert _kinds(events)[-1] == "SpeechEnded"
    assert _kinds(events).count("SpeechStarted") == 1
    assert _kinds(events).count("SpeechEnded") == 1
    assert "SpeechPaused" in _kinds(events)
    (utterance,) = _ended(events)
    assert abs(events[0].time - start) < 0.05
    assert utterance.start_time == events[0].time
    # The audio is the input from pre_roll before the first speech sample.
    first_index = round((utterance.start_time - T0) * SAMPLE_RATE) - SETTINGS.pre_roll_ms * SAMPLE_RATE // 1000
    assert first_index < round((start - T0) * SAMPLE_RATE) - 0.25 * SAMPLE_RATE
    assert np.array_equal(utterance.pcm, pcm[first_index : first_index + len(utterance.pcm)])
    # ... and runs to the end of speech plus about 100 ms.
    pcm_end = T0 + (first_index + len(utterance.pcm)) / SAMPLE_RATE
    assert 0.08 <= pcm_end - utterance.speech_end_time <= 0.12
    # The decision came end_silence_ms after the end of speech, within one VAD window.
    end_silence = SETTINGS.end_silence_ms / 1000
    assert end_silence <= utterance.ended_time - utterance.speech_end_time <= end_silence + 0.04
    assert utterance.sample_rate == SAMPLE_RATE and utterance.pcm.dtype == np.int16


@pytest.mark.slow
@pytest.mark.parametrize("text", SENTENCES)
@pytest.mark.parametrize(("kind", "snr_db"), [("silence", 0), ("white", 20), ("pink", 20), ("hum", 20), ("fan", 20)])
def test_speech_end_time_is_within_40_ms(text: str, kind: str, snr_db: float) -> None:
    pcm, start, end = _scene(text, kind, snr_db, seed=3)
    events = _run(pcm)
    assert _kinds(events).count("SpeechStarted") == 1  # a comma's pause may end and resume it: one utterance
    utterance = _ended(events)[-1]
    assert abs(utterance.speech_end_time - end) <= 0.040
    assert utterance.start_time - start <= 0.050


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["white", "pink", "hum", "fan"])
@pytest.mark.parametrize("text", [SENTENCES[0], SENTENCES[1], SENTENCES[4]])
def test_noisy_speech_at_10_db_is_one_utterance(text: str, kind: str) -> None:
    pcm, start, end = _scene(text, kind, snr_db=10, seed=5)
    events = _run(pcm)
    utterance = _ended(events)[-1]
    assert _kinds(events).count("SpeechStarted") == 1
    # The pre-roll covers the first word even when detection starts late.
    assert utterance.start_time - SETTINGS.pre_roll_ms / 1000 < start
    assert abs(utterance.speech_end_time - end) < 0.25


@pytest.mark.slow
def test_a_700_ms_pause_resumes_the_same_utterance() -> None:
    voice = with_pause("What is the weather like", "in Paris tomorrow?", 700)
    first, last = speech_bounds(voice)
    pcm = np.concatenate([silence(LEAD), voice, silence(1.5)])
    events = _run(pcm)
    assert _kinds(events) == [
        "SpeechStarted",
        "SpeechPaused",
        "SpeechEnded",
        "SpeechResumed",
        "SpeechPaused",
        "SpeechEnded",
    ]
    started, resumed = events[0], events[3]
    assert isinstance(resumed, SpeechResumed)
    first_half_end = events[2].utterance.speech_end_time
    assert 0.65 <= resumed.time - first_half_end <= 0.75
    final = events[-1].utterance
    assert final.start_time == started.time
    assert abs(final.start_time - (T0 + LEAD + first / SAMPLE_RATE)) < 0.05
    assert abs(final.speech_end_time - (T0 + LEAD + last / SAMPLE_RATE)) <= 0.04
    assert final.duration > (last - first) / SAMPLE_RATE + SETTINGS.pre_roll_ms / 1000


@pytest.mark.parametrize("end_silence_ms", [300, 500])
@pytest.mark.parametrize("text", SENTENCES[:3])
def test_a_tolerated_pause_is_reported_within_the_commit_delay(end_silence_ms: int, text: str) -> None:
    """The session holds its answer for `commit_delay` after an end: speech resuming in a pause
    of `pause_tolerance_ms` must be reported by then, or Billy would cut the user off."""
    settings = EndpointSettings(end_silence_ms=end_silence_ms, pause_tolerance_ms=700)
    words = text.split()
    voice = with_pause(" ".join(words[:2]), " ".join(words[2:]), 700)
    endpointer = Endpointer(settings)
    seen: list[tuple[object, float]] = []
    for frame in frames(np.concatenate([silence(LEAD), voice, silence(1.5)]), 20, T0):
        for event in endpointer.process(frame):
            seen.append((event, frame.time + len(frame.pcm) / SAMPLE_RATE))
    kinds = [type(e).__name__ for e, _ in seen]
    assert kinds.count("SpeechStarted") == 1 and "SpeechResumed" in kinds, kinds
    for i, kind in enumerate(kinds):
        if kind == "SpeechResumed":  # each one, the 700 ms pause's and any shorter one's
            ended = seen[i - 1][0]
            assert isinstance(ended, SpeechEnded)
            assert seen[i][1] <= ended.utterance.ended_time + endpointer.commit_delay
    assert endpointer.commit_delay == pytest.approx((700 - end_silence_ms) / 1000 + 0.160)


def test_no_commit_delay_when_the_end_silence_covers_the_tolerated_pause() -> None:
    assert Endpointer(EndpointSettings(end_silence_ms=800, pause_tolerance_ms=700)).commit_delay == 0.0


@pytest.mark.slow
def test_speech_after_the_resume_window_is_a_new_utterance() -> None:
    a, b = speech_16k(SENTENCES[2]), speech_16k(SENTENCES[3])
    pcm = np.concatenate([silence(0.5), a, silence(2.0), b, silence(1.5)])
    events = _run(pcm, resume_window_ms=1000)
    assert _kinds(events).count("SpeechStarted") == 2
    assert "SpeechResumed" not in _kinds(events)
    assert len(_ended(events)) == 2


@pytest.mark.slow
def test_paused_audio_matches_ended_audio_when_nothing_followed() -> None:
    pcm, _, _ = _scene(SENTENCES[3])
    events = _run(pcm)
    paused = [e.utterance for e in events if isinstance(e, SpeechPaused)][-1]
    (ended,) = _ended(events)
    assert paused.speech_end_time == ended.speech_end_time
    assert np.array_equal(paused.pcm, ended.pcm)
    assert paused.ended_time < ended.ended_time


@pytest.mark.slow
@pytest.mark.parametrize("frame_ms", [10, 37, 100, 2000])
def test_any_frame_size_gives_the_same_edges(frame_ms: float) -> None:
    pcm, _, _ = _scene(SENTENCES[0], "pink", 20, seed=1)
    (reference,) = _ended(_run(pcm, frame_ms=20))
    (utterance,) = _ended(_run(pcm, frame_ms=frame_ms))
    assert utterance.start_time == pytest.approx(reference.start_time, abs=1e-6)
    assert utterance.speech_end_time == pytest.approx(reference.speech_end_time, abs=1e-6)


@pytest.mark.slow
def test_long_speech_is_cut_at_max_utterance_seconds() -> None:
    settings = EndpointSettings(max_utterance_seconds=1.0)
    pcm, _, _ = _scene(SENTENCES[0])
    events = _run(pcm, settings)
    first_end = next(e for e in events if isinstance(e, SpeechEnded)).utterance
    assert 1.0 <= first_end.ended_time - first_end.start_time <= 1.0 + 0.04


@pytest.mark.slow
def test_reset_forgets_speech_in_progress() -> None:
    pcm, _, _ = _scene(SENTENCES[0])
    endpointer = Endpointer(SETTINGS)
    chunks = frames(pcm, 20, T0)
    events = []
    for frame in chunks[: len(chunks) // 2]:
        events.extend(endpointer.process(frame))
    assert any(isinstance(e, SpeechStarted) for e in events)
    endpointer.reset()
    after = []
    for frame in frames(silence(2), 20, T0 + 10):
        after.extend(endpointer.process(frame))
    assert after == []

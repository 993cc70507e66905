"""Billy's body on gpiozero's mock pins: lip sync on the play clock, head and tail, songs, safety."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import numpy as np
import pytest
from gpiozero.pins.mock import MockFactory, MockPWMPin

from core.audio.simulated import SimulatedSpeaker
from core.body.motion import Body
from core.body.motors import Motors, resolve_pins
from core.body.songs import SongLibrary
from core.config import MotionSettings
from core.errors import BadSetting
from core.state import State, StateChange

RATE = 16000
SONGS = Path(__file__).resolve().parent.parent / "sounds" / "songs"


@pytest.fixture
def factory():
    f = MockFactory(pin_class=MockPWMPin)
    yield f
    f.reset()


def _make_body(factory, **settings) -> Body:
    return Body(MotionSettings(**settings), pin_factory=factory)


@pytest.fixture
def speaker():
    s = SimulatedSpeaker(latency_s=0.15, record_rate=RATE)
    s.start()
    yield s
    s.stop()


def syllables(onsets: list[float], total: float, length: float = 0.12) -> np.ndarray:
    """Tone bursts (a voice in miniature) starting at `onsets` seconds, in `total` seconds of silence."""
    pcm = np.zeros(int(total * RATE), dtype=np.float32)
    t = np.arange(int(length * RATE)) / RATE
    burst = 9000 * np.sin(2 * np.pi * 180 * t) * np.hanning(len(t)) ** 0.3
    for onset in onsets:
        i = int(onset * RATE)
        pcm[i : i + len(burst)] = burst
    return pcm.astype(np.int16)


def history(factory, gpio: int, since: float) -> list[tuple[float, float]]:
    """A pin's (absolute play-clock time, value) changes after `since` (when its states were cleared)."""
    pin = factory.pin(gpio)
    out, t = [], since
    for stamp, value in pin.states[1:]:
        t += stamp
        out.append((t, float(value)))
    return out


def clear(factory, *gpios: int) -> float:
    for gpio in gpios:
        factory.pin(gpio).clear_states()
    return time.monotonic()


def change(previous: State, current: State) -> StateChange:
    return StateChange(previous, current, "test", time.monotonic())


def opens(hist: list[tuple[float, float]]) -> list[float]:
    result, was = [], 0.0
    for t, v in hist:
        if v > 0 and was == 0:
            result.append(t)
        was = v
    return result


# --- lip sync -----------------------------------------------------------------------------


def test_mouth_opens_when_each_syllable_is_heard_not_when_queued(factory, speaker):
    body = _make_body(factory)
    body.attach(speaker)
    onsets = [0.2, 0.55, 0.9, 1.3]
    t0 = clear(factory, 17)
    speaker.play(syllables(onsets, 1.7), RATE)
    heard_start = speaker.heard_until - 1.7
    time.sleep(1.7 + speaker.latency_s + 0.3)
    body.close()
    flaps = opens(history(factory, 17, t0))
    assert len(flaps) == len(onsets), flaps
    errors_ms = [1000 * (f - (heard_start + o)) for f, o in zip(flaps, onsets, strict=True)]
    assert all(abs(e) <= 15 for e in errors_ms), errors_ms
    # the naive design would have flapped a whole output latency earlier
    assert all(abs(e + 150) > 100 for e in errors_ms)
    assert factory.pin(17).state == 0


def test_mouth_does_not_chatter_on_noise_or_freeze_on_a_vowel(factory, speaker):
    body = _make_body(factory)
    body.attach(speaker)
    rng = np.random.default_rng(1)
    noise = (rng.normal(0, 60, int(0.6 * RATE))).astype(np.int16)
    t = np.arange(int(1.5 * RATE)) / RATE
    vowel = (8000 * np.sin(2 * np.pi * 150 * t)).astype(np.int16)
    t0 = clear(factory, 17)
    speaker.play(np.concatenate([noise, vowel, np.zeros(RATE // 5, np.int16)]), RATE)
    heard_start = speaker.heard_until - 2.3
    time.sleep(2.3 + speaker.latency_s + 0.2)
    body.close()
    hist = history(factory, 17, t0)
    flaps = opens(hist)
    assert flaps and flaps[0] >= heard_start + 0.6 - 0.015, "noise opened the mouth"
    # a sustained vowel keeps flapping: the mouth is shut again within the max open time, repeatedly
    assert len(flaps) >= 3
    open_spans, opened = [], None
    for t_, v in hist:
        if v > 0 and opened is None:
            opened = t_
        elif v == 0 and opened is not None:
            open_spans.append(t_ - opened)
            opened = None
    assert max(open_spans) < 0.45


def test_articulation_scales_width_and_length():
    widths = {}
    for articulation in (0, 10):
        f = MockFactory(pin_class=MockPWMPin)
        speaker = SimulatedSpeaker(latency_s=0.15, record_rate=RATE)
        speaker.start()
        body = Body(MotionSettings(mouth_articulation=articulation), pin_factory=f)
        body.attach(speaker)
        t0 = clear(f, 17)
        speaker.play(syllables([0.05], 0.6, length=0.5), RATE)
        time.sleep(0.6 + speaker.latency_s + 0.1)
        body.close()
        hist = history(f, 17, t0)
        first_open = next(t for t, v in hist if v > 0)
        first_close = next(t for t, v in hist if t > first_open and v == 0)
        widths[articulation] = (max(v for _, v in hist), first_close - first_open)
        speaker.stop()
    assert widths[10][0] > widths[0][0] + 0.3
    assert widths[10][1] > widths[0][1]


# --- head and tail ------------------------------------------------------------------------


def test_head_out_while_speaking_and_back_after_the_last_sample(factory, speaker):
    body = _make_body(factory, billy_model="classic")
    body.attach(speaker)
    t0 = clear(factory, 22)
    body.on_state(change(State.THINKING, State.SPEAKING))
    speaker.play(syllables([0.1, 0.4], 0.8), RATE)
    heard_until = speaker.heard_until
    body.speech_finished(heard_until)
    body.on_state(change(State.SPEAKING, State.LISTENING))
    time.sleep(heard_until - time.monotonic() + 0.7)
    body.close()
    head = history(factory, 22, t0)
    assert head[0][1] > 0 and head[0][0] - t0 < 0.02, head
    back = [t for t, v in head if v == 0]
    assert back and abs(back[0] - (heard_until + 0.4)) < 0.02, (back, heard_until)


def test_tail_flicks_in_a_long_answer(factory, speaker):
    body = _make_body(factory, billy_model="classic")
    body.attach(speaker)
    t0 = clear(factory, 22, 27)
    body.on_state(change(State.THINKING, State.SPEAKING))
    speaker.play(syllables([0.25 * i for i in range(30)], 7.6), RATE)
    time.sleep(7.6 + speaker.latency_s + 0.2)
    body.close()
    tail = history(factory, 27, t0)
    assert opens(tail), "no tail flick in a 7.5 s answer"
    assert opens(tail)[0] - t0 > 4.0


def test_modern_billy_drives_head_and_tail_through_one_motor(factory):
    motors = Motors(MotionSettings(billy_model="modern", pin_layout="new"), pin_factory=factory)
    motors.set("head", 1.0)
    assert (factory.pin(22).state, factory.pin(27).state) == (1.0, 0.0)
    motors.set("tail", 0.8)
    assert (factory.pin(22).state, factory.pin(27).state) == (0.0, 0.8)
    motors.set("tail", 0.0)
    assert (factory.pin(22).state, factory.pin(27).state) == (1.0, 0.0)
    motors.close()
    assert all(factory.pin(g).state == 0 for g in (17, 22, 27))


@pytest.mark.parametrize(
    ("model", "layout", "drive", "held_low"),
    [
        ("modern", "new", {"mouth": 17, "head": 22, "tail": 27}, {}),
        ("classic", "new", {"mouth": 17, "head": 22, "tail": 27}, {}),
        ("modern", "legacy", {"mouth": 12, "head": 13, "tail": 6}, {"mouth": 5}),
        ("classic", "legacy", {"mouth": 12, "head": 13, "tail": 19}, {"mouth": 5, "head": 6, "tail": 26}),
    ],
)
def test_each_model_and_layout_uses_its_pins(factory, model, layout, drive, held_low):
    motors = Motors(MotionSettings(billy_model=model, pin_layout=layout), pin_factory=factory)
    all_pins = set(drive.values()) | set(held_low.values())
    for motor, gpio in drive.items():
        motors.set(motor, 0.7)
        assert factory.pin(gpio).state == pytest.approx(0.7), motor
        others = all_pins - {gpio}
        assert all(factory.pin(o).state == 0 for o in others), (motor, {o: factory.pin(o).state for o in others})
        motors.set(motor, 0.0)
    motors.close()


def test_pin_overrides_and_bad_overrides(factory):
    settings = MotionSettings(billy_model="classic", pin_overrides={"mouth": 5, "mouth_b": 6, "tail": 16})
    pins = resolve_pins(settings)
    assert (pins["mouth"], pins["mouth_b"], pins["head"], pins["tail"], pins["button"]) == (5, 6, 22, 16, 24)
    motors = Motors(settings, pin_factory=factory)
    motors.set("mouth", 0.5)
    assert factory.pin(5).state == 0.5 and factory.pin(6).state == 0
    motors.close()
    with pytest.raises(BadSetting, match="BILLY_PIN_NOSE"):
        resolve_pins(MotionSettings(pin_overrides={"nose": 4}))
    with pytest.raises(BadSetting, match="GPIO22"):
        resolve_pins(MotionSettings(pin_overrides={"mouth": 22}))


def test_pins_are_low_from_the_start(factory):
    body = _make_body(factory, billy_model="classic", pin_layout="legacy")
    for gpio in (12, 5, 13, 6, 19, 26):
        pin = factory.pin(gpio)
        assert pin.function == "output"
        assert all(value == 0 for _, value in pin.states), (gpio, pin.states)
    body.close()


# --- safety -------------------------------------------------------------------------------


def test_watchdog_brakes_a_motor_held_too_long_and_logs_once(factory, caplog):
    body = _make_body(factory, billy_model="classic", watchdog_seconds=0.3)
    t0 = clear(factory, 22, 17)
    with caplog.at_level(logging.WARNING, logger="core.body.motors"):
        body.on_state(change(State.THINKING, State.SPEAKING))
        time.sleep(0.6)
    head = history(factory, 22, t0)
    assert head[0][1] > 0
    assert head[-1][1] == 0 and 0.28 <= head[-1][0] - head[0][0] <= 0.36, head
    assert len([r for r in caplog.records if "watchdog" in r.getMessage()]) == 1
    body.close()


def test_stop_and_close_after_an_exception_leave_every_pin_low(factory, speaker):
    body = _make_body(factory, billy_model="classic")
    body.attach(speaker)
    with pytest.raises(RuntimeError):
        try:
            body.on_state(change(State.THINKING, State.SPEAKING))
            speaker.play(syllables([0.0, 0.2, 0.4], 2.0), RATE)
            time.sleep(speaker.latency_s + 0.05)
            assert factory.pin(22).state > 0
            raise RuntimeError("the turn blew up")
        finally:
            body.close()
    time.sleep(0.5)
    for gpio in (17, 22, 27):
        assert factory.pin(gpio).state == 0
    body.close()
    body.stop()


def test_stop_acts_at_once_and_forgets_what_was_scheduled(factory, speaker):
    body = _make_body(factory)
    body.attach(speaker)
    speaker.play(syllables([0.3, 0.6, 0.9], 1.2), RATE)
    time.sleep(0.2)
    t0 = clear(factory, 17)
    speaker.clear()
    body.stop()
    time.sleep(1.3)
    assert history(factory, 17, t0) == []
    body.close()


def test_listener_gets_every_change_with_play_clock_time(factory):
    body = _make_body(factory, billy_model="classic")
    seen = []
    body.add_listener(lambda t, motor, value: seen.append((t, motor, value)))
    before = time.monotonic()
    body.on_state(change(State.THINKING, State.SPEAKING))
    body.speech_finished(time.monotonic())
    time.sleep(0.6)
    body.close()
    assert [(m, v) for _, m, v in seen] == [("head", 1.0), ("head", 0.0)]
    assert before <= seen[0][0] <= seen[1][0] - 0.35


# --- songs --------------------------------------------------------------------------------


def test_a_song_drives_mouth_tail_and_head(factory, speaker):
    song = SongLibrary(SONGS).songs()[0]
    body = _make_body(factory, billy_model="classic")
    body.attach(speaker)
    t0 = clear(factory, 17, 22, 27)

    async def sing_a_while():
        task = asyncio.create_task(body.perform(song, speaker))
        await asyncio.sleep(song.head_moves[0][0] + song.head_moves[0][1] + 0.5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(sing_a_while())
    body.close()
    mouth, head, tail = (history(factory, g, t0) for g in (17, 22, 27))
    assert len(opens(mouth)) >= 3
    assert len(opens(tail)) >= 2
    song_start = opens(tail)[0]  # the drums hit on the first beat
    assert opens(head) and abs(opens(head)[0] - song_start - song.head_moves[0][0]) < 0.03
    # the mouth follows the vocals, which come in after a bar of drums alone
    assert opens(mouth)[0] - song_start > 2.0
    # cancelled: the queue is dropped (only the card's own buffer still sounds) and the motors stop
    assert speaker.heard_until <= time.monotonic() + speaker.latency_s + 0.02
    assert all(factory.pin(g).state == 0 for g in (17, 22, 27))


def test_the_lipsync_benchmark_measures_a_known_offset(tmp_path):
    import json

    from core.audio.wav import write_wav
    from core.body.lipsync import mouth_track
    from core.dev.lipsync_bench import lipsync_offset

    rng = np.random.default_rng(3)
    onsets = sorted(rng.uniform(0.3, 3.5, 12))
    pcm = syllables([o for i, o in enumerate(onsets) if i == 0 or o - onsets[i - 1] > 0.2], 4.0)
    write_wav(tmp_path / "speaker.wav", pcm, RATE)
    for shift_ms in (0, 40, -60):
        lines = [
            json.dumps({"time": 10.0 + t + shift_ms / 1000, "motor": "mouth", "value": v})
            for t, v in mouth_track(pcm, RATE, 5)
        ]
        (tmp_path / "motion.jsonl").write_text("\n".join(lines) + "\n")
        measured = lipsync_offset(tmp_path / "motion.jsonl", tmp_path / "speaker.wav", start_time=10.0)
        assert abs(measured - shift_ms) < 12, (shift_ms, measured)

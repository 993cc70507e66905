"""The song library: the shipped demo song, lookups, and bad folders skipped with one warning."""

from __future__ import annotations

import logging
import shutil
import wave
from pathlib import Path

import numpy as np
import pytest

from core.audio.wav import read_wav
from core.body.choreography import song_plan, tail_beats
from core.body.songs import SongLibrary

SONGS = Path(__file__).resolve().parent.parent / "sounds" / "songs"
DEMO = SONGS / "reef_shuffle"


def _copy_demo(root: Path, name: str) -> Path:
    folder = root / name
    shutil.copytree(DEMO, folder)
    return folder


def test_the_demo_song_is_shipped_complete_and_small():
    library = SongLibrary(SONGS)
    song = library.find("reef shuffle")
    assert song is not None and song.title == "Reef Shuffle"
    assert (DEMO / "LICENSE").read_text().count("CC0") >= 2
    total = 0
    for path in (song.full_path, song.vocals_path, song.drums_path):
        with wave.open(str(path)) as f:
            assert (f.getnchannels(), f.getsampwidth(), f.getframerate()) == (1, 2, 22050)
            assert 15 <= f.getnframes() / 22050 <= 25
        total += path.stat().st_size
    assert total < 3_000_000
    assert song.bpm == 110 and song.half_tempo_tail_flap and song.head_moves


def test_find_matches_folder_title_or_keyword_case_insensitively(tmp_path):
    _copy_demo(tmp_path, "reef_shuffle")
    library = SongLibrary(tmp_path)
    for query in ("REEF_SHUFFLE", "Reef Shuffle", "fish song", "shuffle", "Reef"):
        song = library.find(query)
        assert song is not None and song.name == "reef_shuffle", query
    assert library.find("bohemian rhapsody") is None
    assert library.find("") is None
    assert library.titles() == ["Reef Shuffle"]


@pytest.mark.parametrize(
    ("damage", "problem"),
    [
        (lambda f: (f / "drums.wav").unlink(), "drums.wav is missing"),
        (lambda f: (f / "metadata.ini").unlink(), "metadata.ini is missing"),
        (lambda f: (f / "vocals.wav").write_bytes(b"RIFF junk"), "vocals.wav is not a readable WAV"),
        (lambda f: (f / "full.wav").write_bytes((f / "full.wav").read_bytes()[:5000]), "full.wav is cut short"),
        (lambda f: (f / "metadata.ini").write_text("[SONG]\nbpm = fast\n"), "bad value"),
        (lambda f: (f / "metadata.ini").write_text("[SONG]\nhead_moves = 2-3\n"), "head_moves"),
        (lambda f: (f / "metadata.ini").write_text("title = x\n"), "cannot be parsed"),
    ],
)
def test_a_bad_folder_is_skipped_with_one_warning(tmp_path, caplog, damage, problem):
    _copy_demo(tmp_path, "good")
    damage(_copy_demo(tmp_path, "broken"))
    library = SongLibrary(tmp_path)
    with caplog.at_level(logging.WARNING, logger="core.body.songs"):
        assert [s.name for s in library.songs()] == ["good"]
        assert [s.name for s in library.songs()] == ["good"]
        assert library.find("broken") is None
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1, warnings
    assert "broken" in warnings[0] and problem in warnings[0]


def test_an_empty_or_missing_library_has_no_songs(tmp_path):
    assert SongLibrary(tmp_path / "nowhere").songs() == []
    assert SongLibrary(tmp_path).songs() == []


def test_tail_follows_the_drum_beats():
    rate, bpm = 8000, 120
    drums = np.zeros(rate * 4, dtype=np.int16)
    for beat in range(8):
        i = int((0.25 + beat * 0.5) * rate)
        drums[i : i + 400] = 12000
    every = tail_beats(drums, rate, bpm, threshold=3000, half_tempo=False)
    assert np.allclose(every, [0.25 + 0.5 * k for k in range(8)], atol=0.011)
    half = tail_beats(drums, rate, bpm, threshold=3000, half_tempo=True)
    assert np.allclose(half, [0.25 + 1.0 * k for k in range(4)], atol=0.011)
    assert tail_beats(drums, rate, bpm, threshold=20000, half_tempo=False) == []


def test_the_demo_plan_moves_mouth_tail_and_head():
    song = SongLibrary(SONGS).find("reef_shuffle")
    vocals, vr = read_wav(song.vocals_path)
    drums, dr = read_wav(song.drums_path)
    plan = song_plan(song, vocals, vr, drums, dr, articulation=5)
    motors = {m for _, m, v in plan if v > 0}
    assert motors == {"mouth", "head", "tail"}
    assert [t for t, m, v in plan if m == "head" and v > 0] == [s for s, _ in song.head_moves]
    assert plan == sorted(plan, key=lambda c: c[0])
    assert all(v == 0 for _, m, v in plan[-1:])

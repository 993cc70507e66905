"""The songs Billy can sing: one folder each under `sounds/songs/`.

A folder holds `full.wav` (what plays), `vocals.wav` (drives the mouth), `drums.wav` (drives
the tail) and `metadata.ini` with a `[SONG]` section:

- `title`, `keywords` (comma-separated): what people ask for; title defaults to the folder name.
- `bpm` (beats per minute, default 120) and `half_tempo_tail_flap` (true: tail on every 2nd beat).
- `tail_threshold` (int16 RMS of the drums, default 1500): a beat louder than this flicks the tail.
- `gain` (default 1.0): multiplies the vocals and drums levels before they are judged, for
  stems recorded quietly; it does not change the playback volume.
- `head_moves`: `start_second:duration, ...` (seconds): when the head turns out and for how long.

A folder with a missing or unreadable file or bad metadata is skipped with one warning
naming the folder and the problem; the library never raises for a bad folder.
"""

from __future__ import annotations

import configparser
import difflib
import logging
import re
import wave
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

WAVS = ("full.wav", "vocals.wav", "drums.wav")
METADATA = "metadata.ini"


@dataclass(frozen=True)
class Song:
    name: str
    """The folder name."""
    title: str
    keywords: tuple[str, ...]
    bpm: float
    gain: float
    tail_threshold: float
    head_moves: tuple[tuple[float, float], ...]
    """(start, duration) pairs in seconds from the start of the song."""
    half_tempo_tail_flap: bool
    folder: Path

    @property
    def full_path(self) -> Path:
        return self.folder / "full.wav"

    @property
    def vocals_path(self) -> Path:
        return self.folder / "vocals.wav"

    @property
    def drums_path(self) -> Path:
        return self.folder / "drums.wav"


class BadSong(ValueError):
    """A song folder cannot be used; the message says why, for the one warning line."""


def _check_wav(path: Path) -> None:
    """Cheap check of the header and length, without reading the samples."""
    if not path.is_file():
        raise BadSong(f"{path.name} is missing")
    try:
        with wave.open(str(path), "rb") as f:
            channels, width, frames = f.getnchannels(), f.getsampwidth(), f.getnframes()
    except (wave.Error, EOFError, OSError) as exc:
        raise BadSong(f"{path.name} is not a readable WAV file ({exc})") from exc
    if width != 2:
        raise BadSong(f"{path.name} is {8 * width}-bit; save it as 16-bit PCM")
    if frames == 0:
        raise BadSong(f"{path.name} holds no audio")
    if path.stat().st_size < 44 + frames * channels * width:
        raise BadSong(f"{path.name} is cut short (the file is smaller than its header says)")


def _parse_head_moves(text: str) -> tuple[tuple[float, float], ...]:
    moves = []
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        start, sep, duration = item.partition(":")
        try:
            move = (float(start), float(duration))
        except ValueError:
            move = None
        if not sep or move is None or move[0] < 0 or move[1] <= 0:
            raise BadSong(f"head_moves entry {item!r} is not start_second:duration, like 2.5:1.0")
        moves.append(move)
    return tuple(sorted(moves))


def load_song(folder: Path) -> Song:
    """Read and check one song folder; raises BadSong naming the problem."""
    for name in WAVS:
        _check_wav(folder / name)
    meta_path = folder / METADATA
    if not meta_path.is_file():
        raise BadSong(f"{METADATA} is missing")
    parser = configparser.ConfigParser()
    try:
        parser.read(meta_path, encoding="utf-8")
    except (configparser.Error, UnicodeDecodeError) as exc:
        raise BadSong(f"{METADATA} cannot be parsed ({exc})") from exc
    if not parser.has_section("SONG"):
        raise BadSong(f"{METADATA} has no [SONG] section")
    section = parser["SONG"]
    try:
        bpm = section.getfloat("bpm", 120.0)
        gain = section.getfloat("gain", 1.0)
        tail_threshold = section.getfloat("tail_threshold", 1500.0)
        half_tempo = section.getboolean("half_tempo_tail_flap", False)
    except ValueError as exc:
        raise BadSong(f"{METADATA} has a bad value ({exc})") from exc
    if not 20 <= bpm <= 400:
        raise BadSong(f"{METADATA} bpm={bpm:g} is not allowed: use 20 to 400")
    if gain <= 0 or tail_threshold < 0:
        raise BadSong(f"{METADATA} gain must be above 0 and tail_threshold at least 0")
    keywords = tuple(k.strip() for k in section.get("keywords", "").split(",") if k.strip())
    return Song(
        name=folder.name,
        title=section.get("title", "").strip() or folder.name.replace("_", " "),
        keywords=keywords,
        bpm=bpm,
        gain=gain,
        tail_threshold=tail_threshold,
        head_moves=_parse_head_moves(section.get("head_moves", "")),
        half_tempo_tail_flap=half_tempo,
        folder=folder,
    )


class SongLibrary:
    """The song folders under `directory`, read afresh on each call so new songs appear at once."""

    def __init__(self, directory: Path):
        self.directory = Path(directory)
        self._warned: set[tuple[str, str]] = set()

    def songs(self) -> list[Song]:
        if not self.directory.is_dir():
            return []
        found = []
        for folder in sorted(self.directory.iterdir()):
            if not folder.is_dir() or folder.name.startswith((".", "_")):
                continue
            try:
                found.append(load_song(folder))
            except BadSong as exc:
                if (folder.name, str(exc)) not in self._warned:
                    self._warned.add((folder.name, str(exc)))
                    log.warning("song %s is skipped: %s", folder, exc)
            except Exception as exc:
                if (folder.name, repr(exc)) not in self._warned:
                    self._warned.add((folder.name, repr(exc)))
                    log.warning("song %s is skipped: cannot read it (%s)", folder, exc)
        return found

    def titles(self) -> list[str]:
        return [song.title for song in self.songs()]

    def find(self, wanted: str) -> Song | None:
        """The song a spoken or written name means (its title, folder name or a keyword), else None.

        Tolerant of how speech to text writes it: case, spaces and punctuation do not matter
        ("fishsticks", "fish stick"), a name inside a longer phrase counts ("the reef shuffle
        song"), and so does a close spelling.
        """
        by_label: dict[str, Song] = {}
        for song in self.songs():
            for label in (song.title, song.name, *song.keywords):
                by_label.setdefault(label, song)
        label = match_title(wanted, list(by_label), same=lambda a, b: by_label[a] is by_label[b])
        return by_label[label] if label else None


def match_title(wanted: str, titles: list[str], same: Callable[[str, str], bool] = lambda a, b: a == b) -> str | None:
    """The title a spoken or misspelled name means: exact, then loose, then close spelling.

    `same` says when two titles name one thing (a song's title and its keyword), so that a
    name contained in both is still not ambiguous. Only names of five letters or more count
    inside another, so "song" alone never picks "fish song".
    """
    key = _squash(wanted)
    if not key:
        return None
    by_key = {_squash(t): t for t in titles if _squash(t)}
    if key in by_key:
        return by_key[key]
    contained = [t for k, t in by_key.items() if (len(key) >= 5 and key in k) or (len(k) >= 5 and k in key)]
    if contained and all(same(contained[0], other) for other in contained):
        return max(contained, key=len)
    close = difflib.get_close_matches(key, list(by_key), n=1, cutoff=0.75)
    return by_key[close[0]] if close else None


def _squash(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "", text.lower())

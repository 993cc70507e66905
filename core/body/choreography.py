"""Head and tail choreography: when to turn, when to flick, for answers and for songs.

Pure code that turns audio and song metadata into cues (time, motor, value); the motion
thread in `core.body.motion` plays them on the play clock.
"""

from __future__ import annotations

import random

import numpy as np

from core.body.lipsync import envelope, mouth_track
from core.body.songs import Song

Cue = tuple[float, str, float]
"""(seconds, motor, value): relative to the song start for song plans, play clock otherwise."""

HEAD_OUT = 1.0
TAIL_FLICK = 0.85
FLICK_SECONDS = 0.25


def flick(t: float, seconds: float = FLICK_SECONDS) -> list[Cue]:
    return [(t, "tail", TAIL_FLICK), (t + seconds, "tail", 0.0)]


class TalkTail:
    """Occasional tail flicks in long answers: the first after `after_s` of speech, then every few seconds.

    Speech resumes as a new stretch after a pause longer than `pause_s`.
    """

    def __init__(
        self,
        after_s: float = 4.0,
        every_s: tuple[float, float] = (3.0, 6.0),
        pause_s: float = 2.0,
        rng: random.Random | None = None,
    ):
        self.after_s = after_s
        self.every_s = every_s
        self.pause_s = pause_s
        self._rng = rng or random.Random()
        self.reset()

    def reset(self) -> None:
        self._start: float | None = None
        self._last = -np.inf
        self._next = np.inf

    def voiced(self, t: float) -> float | None:
        """Tell it speech is heard at `t`; returns the time of a flick when one is due."""
        if self._start is None or t - self._last > self.pause_s:
            self._start = t
            self._next = t + self.after_s
        self._last = t
        if t >= self._next:
            self._next = t + self._rng.uniform(*self.every_s)
            return t
        return None


def tail_beats(
    drums: np.ndarray, sample_rate: int, bpm: float, threshold: float, half_tempo: bool, gain: float = 1.0
) -> list[float]:
    """Beat times (seconds) at which the drums are louder than `threshold`.

    The beat grid (every beat, or every other one with `half_tempo`) starts at the first drum
    hit above the threshold; a beat counts when the drums pass the threshold within a quarter
    beat of it.
    """
    levels, window_s = envelope(drums, sample_rate)
    levels = levels * gain
    hits = np.nonzero(levels > threshold)[0]
    if hits.size == 0:
        return []
    beat = 60.0 / bpm * (2 if half_tempo else 1)
    end = len(levels) * window_s
    beats = []
    t = hits[0] * window_s
    while t < end:
        lo = max(0, int((t - beat / 4) / window_s))
        hi = max(lo + 1, int((t + beat / 4) / window_s))
        if levels[lo:hi].max(initial=0.0) > threshold:
            beats.append(round(float(t), 4))
        t += beat
    return beats


def song_plan(
    song: Song, vocals: np.ndarray, vocals_rate: int, drums: np.ndarray, drums_rate: int, articulation: int
) -> list[Cue]:
    """Every cue of a song, in time order, in seconds from its first sample."""
    cues: list[Cue] = [(t, "mouth", v) for t, v in mouth_track(vocals, vocals_rate, articulation, song.gain)]
    beat = 60.0 / song.bpm * (2 if song.half_tempo_tail_flap else 1)
    for t in tail_beats(drums, drums_rate, song.bpm, song.tail_threshold, song.half_tempo_tail_flap, song.gain):
        cues += flick(t, min(FLICK_SECONDS, beat / 2))
    for start, duration in song.head_moves:
        cues += [(start, "head", HEAD_OUT), (start + duration, "head", 0.0)]
    return sorted(cues, key=lambda cue: cue[0])

"""From samples to mouth movements: a loudness envelope, and a mouth that follows it.

Pure code with no threads or pins, so it can be tested on arrays and reused for songs.
The mouth opens when the envelope rises above a high threshold and closes when it falls
below a low one (hysteresis), both relative to a running speech level so quiet and loud
voices flap alike. Minimum open and closed times stop it chattering on noise; a maximum
open time closes it on a sustained vowel so it never freezes open.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from core.audio import transforms as audio

WINDOW_MS = 10.0
"""Envelope resolution (milliseconds): finer than a syllable, coarser than a pitch period."""


def envelope(pcm: np.ndarray, sample_rate: int, window_ms: float = WINDOW_MS) -> tuple[np.ndarray, float]:
    """RMS level (int16 units) of consecutive windows of `pcm`, and the window length in seconds."""
    size = max(1, round(sample_rate * window_ms / 1000.0))
    return audio.envelope(pcm, sample_rate, window_ms), size / sample_rate


@dataclass(frozen=True)
class MouthShape:
    """How wide (PWM duty 0…1) and how long (seconds) a flap is."""

    width: float
    min_open: float
    min_closed: float
    max_open: float

    @classmethod
    def for_articulation(cls, articulation: int) -> MouthShape:
        """`MOUTH_ARTICULATION` 0–10: 0 small quick flaps, 10 wide long ones; 5 is the middle."""
        a = max(0, min(10, int(articulation))) / 10.0
        return cls(
            width=0.45 + 0.55 * a,
            min_open=0.05 + 0.05 * a,
            min_closed=0.05,
            max_open=0.18 + 0.24 * a,
        )


class MouthShaper:
    """Turns an envelope, window by window, into mouth commands (time, value).

    `floor` (int16 RMS) is the level below which nothing is speech; `open_ratio` and
    `close_ratio` are the high and low thresholds as fractions of the running speech level,
    which follows peaks at once, decays with `level_decay_s` and starts afresh after
    `fresh_after_s` of quiet (a new sentence or answer).
    """

    def __init__(
        self,
        articulation: int = 5,
        floor: float = 250.0,
        open_ratio: float = 0.4,
        close_ratio: float = 0.2,
        level_decay_s: float = 1.5,
        fresh_after_s: float = 0.5,
    ):
        self.shape = MouthShape.for_articulation(articulation)
        self.floor = floor
        self.open_ratio = open_ratio
        self.close_ratio = close_ratio
        self.level_decay_s = level_decay_s
        self.fresh_after_s = fresh_after_s
        self.reset()

    def reset(self) -> None:
        self._speech_level = 0.0
        self._quiet_since = -math.inf
        self._is_open = False
        self._changed_at = -math.inf

    @property
    def is_open(self) -> bool:
        return self._is_open

    def feed(self, start: float, window_s: float, levels: np.ndarray) -> list[tuple[float, float]]:
        """Commands for the windows of `levels`, the first beginning at play-clock `start`."""
        commands: list[tuple[float, float]] = []
        decay = math.exp(-window_s / self.level_decay_s)
        shape = self.shape
        for i, level in enumerate(np.asarray(levels, dtype=np.float64)):
            t = start + i * window_s
            if level >= self.floor:
                self._quiet_since = math.inf
            elif t < self._quiet_since:
                self._quiet_since = t
            elif t - self._quiet_since >= self.fresh_after_s:
                self._speech_level = 0.0  # a new utterance is judged on its own loudness
            self._speech_level = max(level, self._speech_level * decay, self.floor)
            high = max(self.floor, self.open_ratio * self._speech_level)
            low = max(self.floor * 0.7, self.close_ratio * self._speech_level)
            held = t - self._changed_at
            if self._is_open:
                if (level < low and held >= shape.min_open) or held >= shape.max_open:
                    self._is_open = False
                    self._changed_at = t
                    commands.append((t, 0.0))
            elif level > high and held >= shape.min_closed:
                loudness = min(1.0, level / self._speech_level)
                self._is_open = True
                self._changed_at = t
                commands.append((t, round(shape.width * (0.7 + 0.3 * loudness), 3)))
        return commands

    def close_at(self, t: float) -> list[tuple[float, float]]:
        """The command that shuts an open mouth at `t` (end of audio), if it is open."""
        if not self._is_open:
            return []
        self._is_open = False
        self._changed_at = t
        return [(t, 0.0)]


def mouth_track(pcm: np.ndarray, sample_rate: int, articulation: int, gain: float = 1.0) -> list[tuple[float, float]]:
    """Mouth commands (seconds from the start of `pcm`, value) for a whole recording, e.g. song vocals."""
    levels, window_s = envelope(pcm, sample_rate)
    shaper = MouthShaper(articulation)
    commands = shaper.feed(0.0, window_s, levels * gain)
    return commands + shaper.close_at(len(levels) * window_s)

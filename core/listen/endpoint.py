"""Speech endpointing: finds where an utterance starts and ends in the mic's frames.

Speech is detected by Silero VAD (the ONNX model faster-whisper carries, so nothing is
downloaded), run on 32 ms windows, and gated by energy: a window counts as voiced only when
the model says speech *and* it stands above a tracked noise floor. Start and end are then
refined to 4 ms blocks of energy, because the end of speech drives the project's key latency
figure (end of speech → first sound).

Events come out of `Endpointer.process` in this order for one utterance:

    SpeechStarted → (SpeechPaused → [SpeechResumed])* → SpeechPaused → SpeechEnded
                  → [SpeechResumed → ... → SpeechEnded]   (speech again within the resume window)

All times are play-clock seconds (`time.monotonic()`, as stamped on the `AudioFrame`s); a
decision's time is the play-clock time of the end of the audio that led to it.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

import numpy as np

from core.config import EndpointSettings
from core.errors import BackendError
from core.interfaces import AudioFrame
from core.listen.vad import (
    BLOCK,
    FLOOR_DBFS,
    WINDOW,
    AudioHistory,
    SileroVad,
    VoiceDetector,
    dbfs,
    default_vad_model,
    smoothed_levels,
)

log = logging.getLogger(__name__)

_END_SEARCH = 3 * WINDOW
"""How far past the last voiced window the end of voice is looked for."""
_END_NOISE = 2 * WINDOW
"""Audio after the searched span that also tells how loud the noise is."""
_BRIDGE = 16
"""Quiet blocks (64 ms) that can sit inside voice, like the closure before a plosive."""


@dataclass(frozen=True)
class Utterance:
    """The audio of one utterance.

    `pcm` is int16 mono at `sample_rate` (hertz). It starts `pre_roll_ms` before the first
    speech sample (so no syllable is lost) and ends about 100 ms after the last one.
    `start_time` is the play-clock time (seconds) of the first speech sample,
    `speech_end_time` that of the last speech sample, and `ended_time` the play-clock time at
    which the endpointer decided (end of the audio it had seen then).
    """

    pcm: np.ndarray
    sample_rate: int
    start_time: float
    speech_end_time: float
    ended_time: float

    @property
    def duration(self) -> float:
        """Length of `pcm` in seconds."""
        return len(self.pcm) / self.sample_rate


@dataclass(frozen=True)
class SpeechStarted:
    """Speech began; `time` is the play-clock time (seconds) of its first sample.

    Emitted once `min_speech_ms` of voice has been heard, so it arrives that much later.
    """

    time: float


@dataclass(frozen=True)
class SpeechPaused:
    """About 200 ms of silence followed speech; `utterance` holds the audio so far.

    Once per pause. The session may start transcribing now, speculatively: if the next event
    is `SpeechEnded` with the same `speech_end_time`, the audio did not change.
    """

    utterance: Utterance


@dataclass(frozen=True)
class SpeechEnded:
    """`end_silence_ms` of silence (or `max_utterance_seconds`) ended the utterance."""

    utterance: Utterance


@dataclass(frozen=True)
class SpeechResumed:
    """Speech began again within the resume window after `SpeechEnded`.

    It continues the same utterance: drop the turn started on the last `SpeechEnded` and wait
    for the next one, whose utterance holds all audio from the original start. `time` is the
    play-clock time (seconds) of the first sample of the new speech.
    """

    time: float


EndpointEvent = SpeechStarted | SpeechPaused | SpeechEnded | SpeechResumed


RESUME_WINDOWS = 2
"""Voiced windows (32 ms each) that confirm speech resumed within the resume window."""


class _Phase(Enum):
    IDLE = "idle"
    SPEECH = "speech"
    ENDED = "ended"
    """Ended, but speech within the resume window continues the utterance."""


class Endpointer:
    """Turns mic frames into speech start / pause / end events. Not thread-safe: one caller.

    Robust to steady background noise (white, pink, hum, fan) and to short bumps: Silero VAD
    rejects non-speech sounds, the energy gate rejects voices buried in the noise floor, and
    `min_speech_ms` of voice is needed before speech counts.
    """

    def __init__(
        self,
        settings: EndpointSettings,
        sample_rate: int = 16000,
        resume_window_ms: int | None = None,
        pause_ms: int = 200,
        tail_ms: int = 100,
        vad_threshold: float = 0.5,
        snr_margin_db: float = 3.0,
        vad_model: Path | None = None,
        vad: VoiceDetector | None = None,
    ):
        """`resume_window_ms`: speech this soon after `SpeechEnded` continues the utterance
        (default: long enough for `settings.pause_tolerance_ms`, at least one second).

        `pause_ms`: silence before `SpeechPaused`; `tail_ms`: audio kept after the last speech
        sample; `vad_threshold`: Silero speech probability (0-1) for a voiced window;
        `snr_margin_db`: how far above the noise floor a voiced window must be; `vad`: another
        voice detector than Silero (the fast tests use one that hears loud tones).
        """
        if sample_rate != 16000:
            raise BackendError(f"The endpointer needs 16000 Hz audio, not {sample_rate} Hz: set the mic rate to 16000.")
        self.settings = settings
        self.sample_rate = sample_rate
        if resume_window_ms is None:
            resume_window_ms = max(1000, settings.pause_tolerance_ms - settings.end_silence_ms + 300)
        self._resume_window = resume_window_ms / 1000
        self._pause = pause_ms / 1000
        self._tail = int(tail_ms * sample_rate / 1000)
        self._pre_roll = int(settings.pre_roll_ms * sample_rate / 1000)
        self._min_voiced_windows = max(1, math.ceil(settings.min_speech_ms * sample_rate / 1000 / WINDOW))
        self._max_gap_windows = 6
        self._start_threshold = vad_threshold
        self._keep_threshold = max(0.05, vad_threshold - 0.15)
        self._margin = snr_margin_db
        self._vad = vad or SileroVad(vad_model or default_vad_model())
        self._idle_keep = self._pre_roll + int(settings.min_speech_ms * sample_rate / 1000) + 2 * sample_rate
        self._capacity = int((settings.max_utterance_seconds + 3) * sample_rate) + self._pre_roll
        self.reset()

    @property
    def commit_delay(self) -> float:
        """Seconds after a `SpeechEnded` decision by which speech resuming within the tolerated
        pause (`pause_tolerance_ms`) has been reported as `SpeechResumed`.

        Speech resumes at most `pause_tolerance_ms - end_silence_ms` after the decision, and
        `RESUME_WINDOWS` voiced windows, one partial window and up to two windows of Silero's
        lag later it is reported. Zero when the tolerance is no longer than the end silence.
        """
        gap = (self.settings.pause_tolerance_ms - self.settings.end_silence_ms) / 1000
        if gap <= 0:
            return 0.0
        return gap + (RESUME_WINDOWS + 3) * WINDOW / self.sample_rate

    def reset(self) -> None:
        """Forget everything: the next frame starts a fresh stream (a new listen)."""
        self._vad.reset()
        self._history = AudioHistory(self._capacity, self.sample_rate)
        self._next_window = 0
        """Absolute index of the first sample of the next VAD window."""
        self._phase = _Phase.IDLE
        self._floor_db: float | None = None
        self._peak_db = FLOOR_DBFS
        self._candidate: int | None = None
        """First sample of the voiced run being counted before speech is confirmed."""
        self._candidate_voiced = 0
        self._gap = 0
        self._was_voiced = False
        self._utt_start = 0
        """Absolute index of the first speech sample of the utterance."""
        self._speech_end = 0
        """Absolute index one past the last speech sample (refined)."""
        self._last_voiced_end = 0
        self._end_final = False
        """True once `_speech_end` has seen all the audio it searches, so it no longer moves."""
        self._paused_sent = False
        self._ended_at = 0.0

    # --- the stream -----------------------------------------------------------------------

    def process(self, frame: AudioFrame) -> list[EndpointEvent]:
        """Feed one frame (any length, int16 mono); returns the events it completed, in order."""
        pcm = np.asarray(frame.pcm)
        if pcm.dtype != np.int16:
            pcm = np.clip(pcm, -32768, 32767).astype(np.int16)
        if pcm.ndim != 1:
            pcm = pcm.reshape(-1)
        if pcm.size == 0:
            return []
        self._history.append(pcm, frame.time)
        events: list[EndpointEvent] = []
        while self._history.end - self._next_window >= WINDOW:
            start = self._next_window
            self._next_window += WINDOW
            events.extend(self._on_window(start))
        if self._phase is _Phase.IDLE and self._candidate is None:
            self._history.forget_before(self._next_window - self._idle_keep)
        return events

    def _on_window(self, start: int) -> list[EndpointEvent]:
        prob = self._vad(self._history.get(start, start + WINDOW))
        level = dbfs(self._history.high(start, start + WINDOW))
        if self._floor_db is None:
            self._floor_db = level
        active = prob >= (self._keep_threshold if self._was_voiced else self._start_threshold)
        voiced = active and level >= self._floor_db + self._margin
        if not active:
            self._track_floor(level)
        self._was_voiced = voiced
        if voiced:
            self._peak_db = max(self._peak_db, level)
        end = start + WINDOW
        if self._phase is _Phase.SPEECH:
            return self._in_speech(start, end, voiced)
        return self._listen(start, end, voiced)

    def _track_floor(self, level: float) -> None:
        """Noise floor: falls at once to quieter windows, rises 0.2 dB per window (6 dB/s)."""
        assert self._floor_db is not None
        if level < self._floor_db:
            self._floor_db = level
        else:
            self._floor_db = min(level, self._floor_db + 0.2)

    def _listen(self, start: int, end: int, voiced: bool) -> list[EndpointEvent]:
        """Idle or ended: count voiced windows until `min_speech_ms` confirms speech."""
        events: list[EndpointEvent] = []
        now = self._history.time_of(end)
        if voiced:
            if self._candidate is None:
                self._candidate = start
                self._candidate_voiced = 0
                if self._phase is _Phase.IDLE:
                    self._peak_db = FLOOR_DBFS
            self._candidate_voiced += 1
            self._gap = 0
            self._last_voiced_end = end
            # Right after an end, a little voice is enough to mean "I wasn't done": the sooner
            # the session hears it, the likelier it drops its answer before a word is played.
            needed = self._min_voiced_windows
            if self._phase is _Phase.ENDED:
                needed = min(needed, RESUME_WINDOWS)
            if self._candidate_voiced >= needed:
                first = self._refine_start(self._candidate)
                first_time = self._history.time_of(first)
                if self._phase is _Phase.ENDED and first_time - self._ended_at <= self._resume_window:
                    events.append(SpeechResumed(first_time))
                else:
                    self._utt_start = first
                    events.append(SpeechStarted(first_time))
                self._phase = _Phase.SPEECH
                self._candidate = None
                self._paused_sent = False
        elif self._candidate is not None:
            self._gap += 1
            if self._gap > self._max_gap_windows:
                self._candidate = None
        if self._phase is _Phase.ENDED and self._candidate is None and now - self._ended_at > self._resume_window:
            self._phase = _Phase.IDLE
        return events

    def _in_speech(self, start: int, end: int, voiced: bool) -> list[EndpointEvent]:
        events: list[EndpointEvent] = []
        now = self._history.time_of(end)
        if voiced:
            self._last_voiced_end = end
            self._paused_sent = False
            self._end_final = False
        if not self._end_final:
            self._speech_end = self._refine_end(self._last_voiced_end)
            self._end_final = self._history.end >= self._last_voiced_end + _END_SEARCH + _END_NOISE
        too_long = now - self._history.time_of(self._utt_start) >= self.settings.max_utterance_seconds
        if too_long:
            events.append(SpeechEnded(self._utterance(end)))
            self._phase = _Phase.IDLE
            self._candidate = None
            log.info("utterance cut at %.0f s (MAX_UTTERANCE_SECONDS)", self.settings.max_utterance_seconds)
            return events
        if voiced:
            return events
        silent = now - self._history.time_of(self._speech_end)
        if not self._paused_sent and silent >= self._pause:
            # Sent on a provisional end too: the sooner speculative STT starts, the better, and
            # the end seldom moves once this much silence has followed it.
            self._paused_sent = True
            events.append(SpeechPaused(self._utterance(end)))
        if self._end_final and silent >= self.settings.end_silence_ms / 1000:
            events.append(SpeechEnded(self._utterance(end)))
            self._phase = _Phase.ENDED
            self._ended_at = now
            self._candidate = None
        return events

    # --- precise edges --------------------------------------------------------------------

    def _ceiling(self, *regions: tuple[int, int]) -> float:
        """Level (dBFS) that noise in `regions` (absolute sample ranges) seldom reaches.

        The median of the smoothed blocks plus 2.5 interquartile ranges (at least 3 dB):
        fluctuating noise (a fan, pink noise) pokes above a plain floor every few blocks and
        each poke would move an edge, while the median stays put even when a third of the
        region is voice the detector missed. Never below 35 dB under the loudest speech
        window, nor below -80 dBFS.
        """
        levels = [smoothed_levels(self._history.high(lo, hi)) for lo, hi in regions if hi - lo >= 4 * BLOCK]
        levels = [x for x in levels if x.size]
        ceiling = FLOOR_DBFS
        if levels:
            q1, median, q3 = np.percentile(np.concatenate(levels), [25, 50, 75])
            ceiling = float(median + max(3.0, 2.5 * (q3 - q1)))
        return max(ceiling, self._peak_db - 35.0, -80.0)

    def _refine_start(self, first_window: int) -> int:
        """First sample of voice: walk back from the first voiced window while voice goes on.

        Silero often misses a soft first word in noise, so the walk goes back through blocks
        above the noise ceiling, bridging gaps up to `_BRIDGE` blocks, at most one second.
        """
        lo = max(self._history.base, first_window - self.sample_rate)
        lo += (first_window - lo) % BLOCK
        ceiling = self._ceiling((lo, first_window))
        levels = smoothed_levels(self._history.high(lo, first_window + WINDOW))
        loud = levels >= ceiling
        anchor = (first_window - lo) // BLOCK
        ahead = np.nonzero(loud[anchor:])[0]
        if not ahead.size:
            return first_window
        first = anchor + int(ahead[0])
        gap = 0
        for i in range(first - 1, -1, -1):
            if loud[i]:
                first, gap = i, 0
            else:
                gap += 1
                if gap > _BRIDGE:
                    break
        return lo + first * BLOCK

    def _refine_end(self, voiced_end: int) -> int:
        """One past the last sample of voice, searched around the last voiced window.

        Silero's probability lags the voice by up to two windows, and misses a final plosive
        release, so the search runs from three windows before the end of the last voiced one
        to `_END_SEARCH` past it. The noise ceiling comes from the pre-roll and from the
        `_END_NOISE` that follow; until those have come in, the answer is provisional.
        """
        lo = max(self._history.base, self._utt_start, voiced_end - 3 * WINDOW)
        lo += (voiced_end - lo) % BLOCK
        hi = voiced_end + _END_SEARCH
        ceiling = self._ceiling((self._utt_start - self._pre_roll, self._utt_start - 2 * BLOCK), (hi, hi + _END_NOISE))
        loud = np.nonzero(smoothed_levels(self._history.high(lo, hi)) >= ceiling)[0]
        if not loud.size:
            return max(self._utt_start + 1, voiced_end - WINDOW)
        return lo + (int(loud[-1]) + 1) * BLOCK

    def _utterance(self, now_index: int) -> Utterance:
        first = self._utt_start - self._pre_roll
        last = min(self._speech_end + self._tail, self._history.end)
        return Utterance(
            pcm=self._history.get(first, last),
            sample_rate=self.sample_rate,
            start_time=self._history.time_of(self._utt_start),
            speech_end_time=self._history.time_of(self._speech_end - 1),
            ended_time=self._history.time_of(now_index),
        )

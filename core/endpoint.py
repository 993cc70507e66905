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

import bisect
import functools
import logging
import math
from collections import deque
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

import numpy as np
from scipy.signal import butter, sosfilt

from core.config import EndpointSettings
from core.errors import BackendError
from core.interfaces import AudioFrame

log = logging.getLogger(__name__)

WINDOW = 512
"""Samples per VAD window at 16 kHz (32 ms), what Silero VAD wants."""
_CONTEXT = 64
"""Samples of the previous window Silero VAD sees in front of each window."""
_BLOCK = 64
"""Samples per energy block (4 ms) used to place start and end precisely."""
_FLOOR_DBFS = -96.0
_END_SEARCH = 3 * WINDOW
"""How far past the last voiced window the end of voice is looked for."""
_END_NOISE = 2 * WINDOW
"""Audio after the searched span that also tells how loud the noise is."""
_HIGH_PASS_HZ = 250
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


@functools.cache
def _vad_session(path: str):
    import onnxruntime

    opts = onnxruntime.SessionOptions()
    opts.inter_op_num_threads = 1
    opts.intra_op_num_threads = 1
    opts.log_severity_level = 4
    return onnxruntime.InferenceSession(path, sess_options=opts, providers=["CPUExecutionProvider"])


def default_vad_model() -> Path:
    """The Silero VAD model carried by faster-whisper."""
    from faster_whisper.utils import get_assets_path

    return Path(get_assets_path()) / "silero_vad_v6.onnx"


class _SileroVad:
    """Streaming Silero VAD (v6): one speech probability per 512-sample window."""

    def __init__(self, model_path: Path):
        if not model_path.is_file():
            raise BackendError(
                f"The voice activity model {model_path} is missing: reinstall faster-whisper "
                "(`.venv/bin/pip install --force-reinstall faster-whisper==1.2.1`)."
            )
        self._session = _vad_session(str(model_path))
        self.reset()

    def reset(self) -> None:
        self._h = np.zeros((1, 1, 128), dtype=np.float32)
        self._c = np.zeros((1, 1, 128), dtype=np.float32)
        self._context = np.zeros(_CONTEXT, dtype=np.float32)

    def __call__(self, window: np.ndarray) -> float:
        x = window.astype(np.float32) / 32768.0
        inputs = np.concatenate([self._context, x])[None, :]
        prob, self._h, self._c = self._session.run(None, {"input": inputs, "h": self._h, "c": self._c})
        self._context = x[-_CONTEXT:]
        return float(np.ravel(prob)[0])


def _dbfs(pcm: np.ndarray) -> float:
    """Level (dBFS) of a window."""
    x = pcm.astype(np.float64)
    power = float(np.mean(x * x)) if x.size else 0.0
    return max(_FLOOR_DBFS, 10 * math.log10(power / 32768.0**2 + 1e-12))


def _smoothed_levels(pcm: np.ndarray) -> np.ndarray:
    """Level (dBFS) of each whole 4 ms block, averaged in power with its two neighbours.

    The 12 ms average steadies noise (a 4 ms block of fan noise swings by several dB) while
    moving an edge by at most one block.
    """
    n = len(pcm) // _BLOCK
    if n == 0:
        return np.zeros(0)
    x = pcm[: n * _BLOCK].astype(np.float64).reshape(n, _BLOCK)
    power = np.convolve(np.mean(x * x, axis=1), np.ones(3) / 3, mode="same")
    return np.maximum(_FLOOR_DBFS, 10 * np.log10(power / 32768.0**2 + 1e-12))


class _History:
    """Recent samples by absolute index (counted from `reset`), and when each was captured.

    Keeps a high-passed twin of the samples (250 Hz, 2nd order) that all levels are measured
    on: hum, fans and pink noise live low, while the ends of words (s, t, breathy vowels)
    live high, so the filter gains 10-30 dB of signal-to-noise where the edges are.
    """

    def __init__(self, capacity: int, sample_rate: int):
        self._buf = np.zeros(capacity, dtype=np.int16)
        self._high = np.zeros(capacity, dtype=np.float32)
        self._sos = butter(2, _HIGH_PASS_HZ, btype="highpass", fs=sample_rate, output="sos")
        self._zi = np.zeros((self._sos.shape[0], 2))
        self._rate = sample_rate
        self.base = 0
        """Absolute index of `_buf[0]`."""
        self.end = 0
        """Absolute index one past the newest sample."""
        self._anchors: deque[tuple[int, float]] = deque()
        """(absolute index, play-clock time) of the first sample of each frame."""

    def append(self, pcm: np.ndarray, time: float) -> None:
        n = len(pcm)
        if self.end - self.base + n > len(self._buf):
            self._grow(self.end - self.base + n)
        start = self.end - self.base
        self._buf[start : start + n] = pcm
        self._high[start : start + n], self._zi = sosfilt(self._sos, pcm.astype(np.float64), zi=self._zi)
        self._anchors.append((self.end, time))
        self.end += n

    def _grow(self, needed: int) -> None:
        size = max(needed, 2 * len(self._buf))
        kept = self.end - self.base
        self._buf = np.concatenate([self._buf[:kept], np.zeros(size - kept, dtype=np.int16)])
        self._high = np.concatenate([self._high[:kept], np.zeros(size - kept, dtype=np.float32)])

    def forget_before(self, index: int) -> None:
        """Drop samples older than absolute `index` (keeps the buffer from growing)."""
        index = min(max(index, self.base), self.end)
        keep = self.end - index
        self._buf[:keep] = self._buf[index - self.base : self.end - self.base]
        self._high[:keep] = self._high[index - self.base : self.end - self.base]
        self.base = index
        while len(self._anchors) > 1 and self._anchors[1][0] <= index:
            self._anchors.popleft()

    def get(self, start: int, stop: int) -> np.ndarray:
        """The int16 samples from absolute `start` to `stop` (clipped to what is kept)."""
        start = max(start, self.base)
        stop = min(stop, self.end)
        return self._buf[start - self.base : max(start, stop) - self.base].copy()

    def high(self, start: int, stop: int) -> np.ndarray:
        """The high-passed twin of `get` (float)."""
        start = max(start, self.base)
        stop = min(stop, self.end)
        return self._high[start - self.base : max(start, stop) - self.base]

    def time_of(self, index: int) -> float:
        """Play-clock time of absolute sample `index` (extrapolated past the ends)."""
        if not self._anchors:
            return index / self._rate
        pos = bisect.bisect_right(self._anchors, index, key=lambda a: a[0]) - 1
        anchor_index, anchor_time = self._anchors[max(pos, 0)]
        return anchor_time + (index - anchor_index) / self._rate


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
    ):
        """`resume_window_ms`: speech this soon after `SpeechEnded` continues the utterance
        (default: long enough for `settings.pause_tolerance_ms`, at least one second).

        `pause_ms`: silence before `SpeechPaused`; `tail_ms`: audio kept after the last speech
        sample; `vad_threshold`: Silero speech probability (0-1) for a voiced window;
        `snr_margin_db`: how far above the noise floor a voiced window must be.
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
        self._vad = _SileroVad(vad_model or default_vad_model())
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
        self._history = _History(self._capacity, self.sample_rate)
        self._next_window = 0
        """Absolute index of the first sample of the next VAD window."""
        self._phase = _Phase.IDLE
        self._floor_db: float | None = None
        self._peak_db = _FLOOR_DBFS
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
        level = _dbfs(self._history.high(start, start + WINDOW))
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
                    self._peak_db = _FLOOR_DBFS
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
        levels = [_smoothed_levels(self._history.high(lo, hi)) for lo, hi in regions if hi - lo >= 4 * _BLOCK]
        levels = [x for x in levels if x.size]
        ceiling = _FLOOR_DBFS
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
        lo += (first_window - lo) % _BLOCK
        ceiling = self._ceiling((lo, first_window))
        levels = _smoothed_levels(self._history.high(lo, first_window + WINDOW))
        loud = levels >= ceiling
        anchor = (first_window - lo) // _BLOCK
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
        return lo + first * _BLOCK

    def _refine_end(self, voiced_end: int) -> int:
        """One past the last sample of voice, searched around the last voiced window.

        Silero's probability lags the voice by up to two windows, and misses a final plosive
        release, so the search runs from three windows before the end of the last voiced one
        to `_END_SEARCH` past it. The noise ceiling comes from the pre-roll and from the
        `_END_NOISE` that follow; until those have come in, the answer is provisional.
        """
        lo = max(self._history.base, self._utt_start, voiced_end - 3 * WINDOW)
        lo += (voiced_end - lo) % _BLOCK
        hi = voiced_end + _END_SEARCH
        ceiling = self._ceiling((self._utt_start - self._pre_roll, self._utt_start - 2 * _BLOCK), (hi, hi + _END_NOISE))
        loud = np.nonzero(_smoothed_levels(self._history.high(lo, hi)) >= ceiling)[0]
        if not loud.size:
            return max(self._utt_start + 1, voiced_end - WINDOW)
        return lo + (int(loud[-1]) + 1) * _BLOCK

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

"""Billy's body: mouth in time with what is heard, head and tail choreography, songs.

The speaker tells us, on its audio thread, each block it plays and the play-clock time at
which it will be heard. We only measure the block's envelope there and hand it over; the
motion thread turns envelopes into mouth commands and sleeps until each command's time,
so a flap happens when its syllable is heard, whatever the output latency. Every motor
command goes through that one thread (a time-ordered queue), and `stop()` empties the
queue and brakes at once from any thread.
"""

from __future__ import annotations

import asyncio
import atexit
import heapq
import itertools
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from core.audio.wav import read_wav
from core.body.choreography import HEAD_OUT, TalkTail, flick, song_plan
from core.body.lipsync import MouthShaper, envelope
from core.body.motors import MotionListener, Motors, resolve_pins
from core.body.songs import Song
from core.config import MotionSettings
from core.interfaces import PlayedBlock, Speaker
from core.state import State, StateChange

log = logging.getLogger(__name__)

AUDIO_GAP_S = 0.3
"""A pause in played audio longer than this shuts a mouth the envelope left open."""


def button_pin(settings: MotionSettings) -> int:
    """GPIO number of the push button for this layout (`BILLY_PIN_BUTTON` overrides it)."""
    pin = resolve_pins(settings)["button"]
    assert pin is not None
    return pin


@dataclass(order=True)
class _Cue:
    time: float
    seq: int
    motor: str = field(compare=False)
    value: float = field(compare=False)
    epoch: int = field(compare=False)
    head_epoch: int | None = field(compare=False, default=None)
    """Set on the head's return after speech: speaking again, or a newer end time, cancels it."""


class Body:
    """The fish's motors, driven by played audio, state changes and songs.

    `timing="played"` (the design) flaps each syllable at the time it is heard;
    `timing="queued"` is the naïve design kept for the lip-sync benchmark: it flaps when the
    block reaches the speaker's buffer, a whole output latency early.
    """

    def __init__(
        self,
        settings: MotionSettings,
        pin_factory=None,
        clock: Callable[[], float] = time.monotonic,
        *,
        timing: str = "played",
        head_back_delay: float = 0.4,
        mouth_lead_ms: float = 0.0,
    ):
        if timing not in ("played", "queued"):
            raise ValueError(f"timing={timing!r}: use 'played' or 'queued'")
        self._motors = Motors(settings, pin_factory, clock)
        self._clock = clock
        self._timing = timing
        self._head_back_delay = head_back_delay
        self._lead = mouth_lead_ms / 1000.0
        self._articulation = settings.mouth_articulation
        self._shaper = MouthShaper(settings.mouth_articulation)
        self._tail = TalkTail()
        self._cv = threading.Condition()
        self._heap: list[_Cue] = []
        self._inbox: deque[tuple[float, float, float, np.ndarray]] = deque()
        self._seq = itertools.count()
        self._epoch = 0
        self._head_epoch = 0
        self._head_back_pending = False
        self._heard_end = -math.inf
        self._singing = False
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="billy-motion", daemon=True)
        self._thread.start()
        atexit.register(self.close)

    @property
    def pins(self) -> dict[str, int | None]:
        """GPIO number of each pin name (`button` too), after layout and overrides."""
        return dict(self._motors.pins)

    def attach(self, speaker: Speaker) -> None:
        """Follow what `speaker` plays with the mouth."""
        speaker.add_listener(self._on_played)

    def add_listener(self, cb: MotionListener) -> None:
        """`cb(play-clock seconds, motor, value)` on every motor change, on the motion thread."""
        self._motors.add_listener(cb)

    def on_state(self, change: StateChange) -> None:
        """Head out when Billy starts speaking; back when he stops, if speech_finished did not say when."""
        with self._cv:
            if self._closed:
                return
            if change.current is State.SPEAKING:
                self._head_epoch += 1
                self._head_back_pending = False
                self._tail.reset()
                self._push(self._clock(), "head", HEAD_OUT)
            elif change.previous is State.SPEAKING and not self._head_back_pending:
                self._head_back(max(self._clock(), self._heard_end))
            self._cv.notify()

    def speech_finished(self, heard_until: float) -> None:
        """The last sample of the answer is heard at play-clock `heard_until`: mouth shut then, head back soon after."""
        with self._cv:
            if self._closed:
                return
            self._push(heard_until, "mouth", 0.0)
            self._head_back(heard_until)
            self._cv.notify()

    async def perform(self, song: Song, speaker: Speaker) -> None:
        """Play `song` on `speaker` and dance to it; cancelling stops the sound and the motors at once."""
        try:
            full, rate, plan = await asyncio.to_thread(self._prepare, song)
        except (OSError, ValueError) as exc:
            log.warning("song %s cannot be played: %s", song.folder, exc)
            return
        duration = len(full) / rate
        with self._cv:
            self._singing = True
            self._cancel_locked()
        try:
            speaker.play(full, rate)
            start = speaker.heard_until - duration
            with self._cv:
                for t, motor, value in plan:
                    self._push(start + t, motor, value)
                self._cv.notify()
            log.info("singing %r (%.1f s)", song.title, duration)
            while self._clock() < start + duration and speaker.is_playing:
                await asyncio.sleep(0.05)
        except asyncio.CancelledError:
            speaker.clear()
            raise
        finally:
            with self._cv:
                self._singing = False
            self.stop()

    def play_moves(self, moves: list[tuple[float, str, float]]) -> float:
        """Schedule `(seconds from now, motor, value)` moves (the page's motor test); returns the last one's time.

        They run on the motion thread like every other cue; `stop()` cancels what is left.
        """
        with self._cv:
            if self._closed:
                return 0.0
            now = self._clock()
            for t, motor, value in moves:
                self._push(now + t, motor, value)
            self._cv.notify()
        return max((t for t, _, _ in moves), default=0.0)

    def stop(self) -> None:
        """All motors off now and everything scheduled forgotten; idempotent, any thread."""
        with self._cv:
            if self._closed:
                return
            self._cancel_locked()
            self._cv.notify()

    def close(self) -> None:
        """Stop, end the motion thread and release the pins; idempotent; safe from signal handlers and atexit."""
        with self._cv:
            if self._closed:
                return
            self._cancel_locked()
            self._closed = True
            self._cv.notify()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout=1.0)
        self._motors.close()
        atexit.unregister(self.close)

    # --- inside -----------------------------------------------------------------------------

    def _prepare(self, song: Song) -> tuple[np.ndarray, int, list]:
        full, rate = read_wav(song.full_path)
        vocals, vocals_rate = read_wav(song.vocals_path)
        drums, drums_rate = read_wav(song.drums_path)
        return full, rate, song_plan(song, vocals, vocals_rate, drums, drums_rate, self._articulation)

    def _on_played(self, block: PlayedBlock) -> None:
        """Audio thread: measure the block and hand it over; nothing else."""
        if self._closed or self._singing:
            return
        levels, window_s = envelope(block.pcm, block.sample_rate)
        arrived = self._clock()
        with self._cv:
            self._inbox.append((block.time, arrived, window_s, levels))
            self._cv.notify()

    def _cancel_locked(self) -> None:
        self._epoch += 1
        self._heap.clear()
        self._inbox.clear()
        self._shaper.reset()
        self._tail.reset()
        self._head_back_pending = False
        self._motors.stop()

    def _push(self, t: float, motor: str, value: float, head: bool = False) -> None:
        cue = _Cue(t, next(self._seq), motor, value, self._epoch, self._head_epoch if head else None)
        heapq.heappush(self._heap, cue)

    def _head_back(self, heard_until: float) -> None:
        self._head_epoch += 1
        self._head_back_pending = True
        self._push(heard_until + self._head_back_delay, "head", 0.0, head=True)

    def _drain_locked(self) -> None:
        """Turn received envelopes into mouth cues (and, in long answers, tail flicks)."""
        while self._inbox:
            heard, arrived, window_s, levels = self._inbox.popleft()
            start = (heard if self._timing == "played" else arrived) - self._lead
            if self._shaper.is_open and start > self._heard_end + AUDIO_GAP_S:
                for t, value in self._shaper.close_at(self._heard_end):
                    self._push(t, "mouth", value)
            for t, value in self._shaper.feed(start, window_s, levels):
                self._push(t, "mouth", value)
                if value > 0 and (flick_at := self._tail.voiced(t)) is not None:
                    for ft, motor, fv in flick(flick_at):
                        self._push(ft, motor, fv)
            self._heard_end = max(self._heard_end, start + len(levels) * window_s)

    def _run(self) -> None:
        """The motion thread: play cues at their time; brake what the watchdog says."""
        with self._cv:
            while not self._closed:
                self._drain_locked()
                now = self._clock()
                while self._heap and self._heap[0].time <= now:
                    cue = heapq.heappop(self._heap)
                    if cue.epoch != self._epoch:
                        continue
                    if cue.head_epoch is not None and cue.head_epoch != self._head_epoch:
                        continue
                    if cue.head_epoch is not None:
                        self._head_back_pending = False
                    self._motors.set(cue.motor, cue.value)
                self._motors.check_watchdog()
                if self._inbox:
                    continue
                deadlines = [
                    d
                    for d in (self._heap[0].time if self._heap else None, self._motors.watchdog_deadline())
                    if d is not None
                ]
                timeout = max(0.0, min(deadlines) - self._clock()) if deadlines else None
                self._cv.wait(timeout)

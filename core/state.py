"""Billy's lifecycle: one Enum, one owner, one transition function.

Only the session (on the asyncio loop) calls `StateOwner.set`; MQTT, the web UI, LEDs and
the motion controller observe it through `subscribe`.
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)


class State(enum.Enum):
    IDLE = "idle"
    LISTENING = "listening"
    THINKING = "thinking"
    SPEAKING = "speaking"
    PLAYING_SONG = "playing_song"
    ERROR = "error"


@dataclass(frozen=True)
class StateChange:
    """Emitted after every transition; `time` is `time.monotonic()` seconds."""

    previous: State
    current: State
    reason: str
    time: float


Observer = Callable[[StateChange], None]


class StateOwner:
    """Holds the current state and tells observers about each change, in order."""

    def __init__(self) -> None:
        self._state = State.IDLE
        self._observers: list[Observer] = []

    @property
    def state(self) -> State:
        return self._state

    def subscribe(self, observer: Observer) -> None:
        """Call `observer` after each change; it must not block (hand work over instead)."""
        self._observers.append(observer)

    def set(self, new: State, reason: str = "") -> None:
        if new is self._state:
            return
        change = StateChange(self._state, new, reason, time.monotonic())
        self._state = new
        log.info("state %s -> %s%s", change.previous.value, new.value, f" ({reason})" if reason else "")
        for observer in list(self._observers):
            try:
                observer(change)
            except Exception:
                log.exception("state observer %r failed; Billy goes on without it", observer)

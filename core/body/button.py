"""The fish's button, as a gpiozero device, and the keyboard stand-in used in simulation.

In simulation the button is the same gpiozero `Button` on a mock pin: pressing it (from
the keyboard, the simulator or a test) drives the mock pin low, so the code path is the
one a real press takes.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
from collections.abc import Callable

from gpiozero import Button

from core.body.pins import pin_error

log = logging.getLogger(__name__)


class FishButton:
    """Hands each press to the asyncio loop; gpiozero calls `when_pressed` on its own thread."""

    def __init__(self, pin: int, loop: asyncio.AbstractEventLoop, on_press: Callable[[], None], pin_factory=None):
        self.pin = pin
        self._loop = loop
        self._on_press = on_press
        self._factory = pin_factory
        try:
            self._button = Button(pin, pull_up=True, bounce_time=None, pin_factory=pin_factory)
        except Exception as exc:
            raise pin_error("button", pin, exc) from exc
        self._button.when_pressed = self._pressed

    def _pressed(self) -> None:
        if not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._on_press)

    def simulate_press(self) -> None:
        """Drive the mock pin low then high: a real press, as far as gpiozero can tell."""
        if self._factory is None:
            raise RuntimeError("simulate_press needs the mock pin factory")
        pin = self._factory.pin(self.pin)
        pin.drive_low()
        pin.drive_high()

    def close(self) -> None:
        self._button.close()


def read_keyboard(press: Callable[[], None], stop: threading.Event) -> threading.Thread | None:
    """Each Enter on a terminal presses the button; returns None when stdin is not a terminal."""
    if not sys.stdin or not sys.stdin.isatty():
        return None

    def run() -> None:
        for _line in sys.stdin:
            if stop.is_set():
                return
            press()

    thread = threading.Thread(target=run, name="keyboard", daemon=True)
    thread.start()
    return thread

"""`python main.py motor-test`: move each motor in turn, so a maker can check the wiring.

One line per step names the motor, the move and the pins, so a motor that does nothing (or
the wrong thing) points straight at the wire to check.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from core.body.motors import Motors
from core.config import MotionSettings
from core.errors import BillyError

log = logging.getLogger(__name__)

STEPS = (
    ("mouth", "open", 1.0, 0.4),
    ("mouth", "close", 0.0, 0.4),
    ("head", "turn out", 1.0, 0.8),
    ("head", "turn back", 0.0, 0.5),
    ("tail", "flick", 1.0, 0.3),
    ("tail", "back", 0.0, 0.4),
)
"""(motor, move, value, seconds held)."""


def motor_test_moves(pace: float = 1.0) -> list[tuple[float, str, float]]:
    """`STEPS` as `(seconds from the start, motor, value)` moves, ending with every motor off.

    The page's motor test plays these through the running Billy's own body
    (`Body.play_moves`), so nobody has to stop him to free the pins.
    """
    moves, t = [], 0.0
    for motor, _, value, seconds in STEPS:
        moves.append((t, motor, value))
        t += seconds * pace
    return [*moves, (t, "mouth", 0.0), (t, "head", 0.0), (t, "tail", 0.0)]


def _pins(motors: Motors, motor: str) -> str:
    pins = motors.pins
    if motors.model == "modern" and motor in ("head", "tail"):
        return f"GPIO{pins['head']}/GPIO{pins['tail']} (one motor; {motor} drives GPIO{pins[motor]})"
    mate = pins[f"{motor}_b"]
    return f"GPIO{pins[motor]}" + (f" (other input GPIO{mate})" if mate is not None else "")


def run_motor_test(
    settings: MotionSettings, pin_factory=None, out: Callable[[str], None] = print, pace: float = 1.0
) -> int:
    """Move mouth, head and tail one after the other; returns the exit code (0 ok, 1 pins unusable).

    `pace` scales the pauses (tests use a small one); every motor is off when it returns.
    """
    try:
        motors = Motors(settings, pin_factory=pin_factory)
    except BillyError as exc:
        out(f"motor test: {exc}")
        return 1
    out(f"motor test: {settings.billy_model} Billy, {settings.pin_layout} pin layout")
    try:
        for motor, move, value, seconds in STEPS:
            out(f"  {motor:<5} {move:<9} on {_pins(motors, motor)}")
            motors.set(motor, value)
            time.sleep(seconds * pace)
    except KeyboardInterrupt:
        out("motor test: interrupted; all motors off")
        return 130
    finally:
        motors.close()
    out("motor test: done; all motors off. A part that did not move: check its wires and BILLY_PINS/BILLY_PIN_*.")
    return 0

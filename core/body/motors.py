"""Billy's mouth, head and tail motors as gpiozero devices, on whichever pins the fish is wired to.

The rest of Billy speaks of three logical motors, `mouth`, `head` and `tail`, each driven with a
value 0…1 (1 = mouth wide open, head fully out, tail fully flicked). How that reaches the
H-bridge depends on the fish:

- `classic` Billy has three motors, one bridge channel each.
- `modern` Billy has one motor for head and tail: `head` drives it one way and `tail` the
  other, so a tail flick briefly takes precedence over a head that is out.

Pin names (``BILLY_PIN_<NAME>`` overrides one; GPIO numbers, BCM):

- ``mouth``, ``head``, ``tail``: the bridge input that is driven with PWM.
- ``mouth_b``, ``head_b``, ``tail_b``: the channel's other bridge input, held low while the
  motor runs and low for braking. Leave unset when it is tied to ground on the board.
  A `modern` Billy has no ``head_b``/``tail_b``: its ``head`` and ``tail`` pins *are* the two
  inputs of the one shared channel.
- ``button``: the push button (read by the button code, reported here so all pins are in one place).

Layouts: ``new`` puts mouth on GPIO17, head on GPIO22, tail on GPIO27, button on GPIO24, the
other bridge inputs tied low. ``legacy`` is the wiring of Billy builds from before October
2025: mouth GPIO12 (other input GPIO5), head GPIO13, button GPIO27; a modern Billy's tail is
GPIO6 (the head's other input), a classic Billy's tail channel sits on a second driver at
GPIO19 (other input GPIO26), and its head's other input is GPIO6.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from gpiozero import Motor, PWMOutputDevice

from core.body.pins import find_pin_error
from core.config import MotionSettings
from core.errors import BadSetting

log = logging.getLogger(__name__)

MOTORS = ("mouth", "head", "tail")
PIN_NAMES = ("mouth", "mouth_b", "head", "head_b", "tail", "tail_b", "button")

_LAYOUTS: dict[tuple[str, str], dict[str, int]] = {
    ("new", "modern"): {"mouth": 17, "head": 22, "tail": 27, "button": 24},
    ("new", "classic"): {"mouth": 17, "head": 22, "tail": 27, "button": 24},
    ("legacy", "modern"): {"mouth": 12, "mouth_b": 5, "head": 13, "tail": 6, "button": 27},
    ("legacy", "classic"): {
        "mouth": 12,
        "mouth_b": 5,
        "head": 13,
        "head_b": 6,
        "tail": 19,
        "tail_b": 26,
        "button": 27,
    },
}

MotionListener = Callable[[float, str, float], None]
"""Called with (play-clock time in seconds, motor name, value -1…1) on every change."""


def resolve_pins(settings: MotionSettings) -> dict[str, int | None]:
    """The GPIO number of every pin name for this fish, after `BILLY_PIN_*` overrides.

    Raises BadSetting for an unknown pin name, a model or layout we do not know, or two
    names on one GPIO.
    """
    key = (settings.pin_layout, settings.billy_model)
    if key not in _LAYOUTS:
        raise BadSetting(
            f"BILLY_PINS={settings.pin_layout!r} with BILLY_MODEL={settings.billy_model!r} is not allowed: "
            "use BILLY_PINS new or legacy and BILLY_MODEL modern or classic."
        )
    pins: dict[str, int | None] = dict.fromkeys(PIN_NAMES)
    pins.update(_LAYOUTS[key])
    for name, gpio in settings.pin_overrides.items():
        if name not in PIN_NAMES:
            raise BadSetting(
                f"BILLY_PIN_{name.upper()}={gpio} is not allowed: pin names are "
                f"{', '.join('BILLY_PIN_' + n.upper() for n in PIN_NAMES)}."
            )
        if settings.billy_model == "modern" and name in ("head_b", "tail_b"):
            log.warning(
                "BILLY_PIN_%s is ignored: a modern Billy drives head and tail through one motor, "
                "on BILLY_PIN_HEAD and BILLY_PIN_TAIL.",
                name.upper(),
            )
            continue
        pins[name] = int(gpio)
    used: dict[int, str] = {}
    for name, gpio in pins.items():
        if gpio is None:
            continue
        if gpio in used:
            raise BadSetting(
                f"BILLY_PIN_{name.upper()}={gpio} is not allowed: GPIO{gpio} is already the {used[gpio]} pin; "
                "give each pin its own GPIO."
            )
        used[gpio] = name
    return pins


class _Channel:
    """One H-bridge channel: a PWM input and, where wired, its mate (held low, braked low)."""

    def __init__(self, forward: int, backward: int | None, pin_factory, frequency: float):
        if backward is None:
            self.device: Motor | PWMOutputDevice = PWMOutputDevice(
                forward, initial_value=0, frequency=frequency, pin_factory=pin_factory
            )
            self._parts = [self.device]
        else:
            self.device = Motor(forward, backward, pwm=True, pin_factory=pin_factory)
            self._parts = [self.device.forward_device, self.device.backward_device]
            for part in self._parts:
                part.frequency = frequency
        self.reversible = backward is not None

    def drive(self, value: float) -> None:
        """Signed speed -1…1; a one-pin channel cannot reverse, so negative means off."""
        value = max(-1.0, min(1.0, value))
        if isinstance(self.device, Motor):
            self.device.value = value
        else:
            self.device.value = max(0.0, value)

    def brake(self) -> None:
        """Both inputs low: the motor stops and its spring pulls the part home."""
        for part in self._parts:
            part.off()

    def close(self) -> None:
        self.device.close()


class Motors:
    """The fish's motors: set logical values, brake, watchdog, tell listeners about each change.

    Thread-safe: the motion thread drives it while stop()/close() may come from any thread
    or a signal handler.
    """

    def __init__(
        self,
        settings: MotionSettings,
        pin_factory=None,
        clock: Callable[[], float] = time.monotonic,
        pwm_frequency: float = 1000.0,
    ):
        self.pins = resolve_pins(settings)
        self.model = settings.billy_model
        self.watchdog_seconds = settings.watchdog_seconds
        self._clock = clock
        self._lock = threading.RLock()
        self._listeners: list[MotionListener] = []
        self._wanted = dict.fromkeys(MOTORS, 0.0)
        self._actual = dict.fromkeys(MOTORS, 0.0)
        self._channels: dict[str, _Channel] = {}
        self._driven_since: dict[str, float | None] = {}
        self._closed = False
        p = self.pins
        try:
            self._channels["mouth"] = _Channel(p["mouth"], p["mouth_b"], pin_factory, pwm_frequency)
            if self.model == "modern":
                self._channels["body"] = _Channel(p["head"], p["tail"], pin_factory, pwm_frequency)
            else:
                self._channels["head"] = _Channel(p["head"], p["head_b"], pin_factory, pwm_frequency)
                self._channels["tail"] = _Channel(p["tail"], p["tail_b"], pin_factory, pwm_frequency)
        except Exception as exc:
            for channel in self._channels.values():
                channel.close()
            motor_pins = {name: gpio for name, gpio in p.items() if name != "button"}
            raise find_pin_error(motor_pins, pin_factory, exc) from exc
        self._driven_since = dict.fromkeys(self._channels)
        log.info(
            "motors ready: %s Billy, %s layout, pins %s",
            self.model,
            settings.pin_layout,
            ", ".join(f"{n}=GPIO{g}" for n, g in p.items() if g is not None),
        )

    def add_listener(self, listener: MotionListener) -> None:
        self._listeners.append(listener)

    def value(self, motor: str) -> float:
        """What the motor is really doing now (a tail flick zeroes a modern Billy's head)."""
        return self._actual[motor]

    def set(self, motor: str, value: float) -> None:
        """Ask `motor` for `value` (0…1); applied at once."""
        with self._lock:
            if self._closed:
                return
            self._wanted[motor] = max(0.0, min(1.0, value))
            self._apply()

    def stop(self) -> None:
        """Brake every motor now; idempotent."""
        with self._lock:
            if self._closed:
                return
            self._wanted = dict.fromkeys(MOTORS, 0.0)
            for channel in self._channels.values():
                channel.brake()
            self._apply()

    def close(self) -> None:
        """Brake, then release the pins; idempotent."""
        with self._lock:
            if self._closed:
                return
            self.stop()
            self._closed = True
            for channel in self._channels.values():
                try:
                    channel.close()
                except Exception:
                    log.exception("could not release a motor pin")

    def watchdog_deadline(self) -> float | None:
        """Play-clock time at which the watchdog must next look, or None when nothing runs."""
        with self._lock:
            times = [t for t in self._driven_since.values() if t is not None]
            return min(times) + self.watchdog_seconds if times else None

    def check_watchdog(self) -> None:
        """Brake any channel driven continuously for longer than the watchdog limit."""
        with self._lock:
            now = self._clock()
            for name, since in self._driven_since.items():
                if since is None or now - since < self.watchdog_seconds:
                    continue
                motors = ("head", "tail") if name == "body" else (name,)
                log.warning(
                    "watchdog: %s motor driven for %.1f s without a break; braked it to protect it",
                    "/".join(motors),
                    now - since,
                )
                for motor in motors:
                    self._wanted[motor] = 0.0
                self._channels[name].brake()
                self._apply()

    def _apply(self) -> None:
        wanted = self._wanted
        if self.model == "modern":
            tail = wanted["tail"]
            head = 0.0 if tail > 0 else wanted["head"]
            actual = {"mouth": wanted["mouth"], "head": head, "tail": tail}
            self._channels["mouth"].drive(actual["mouth"])
            self._channels["body"].drive(head if head > 0 else -tail)
        else:
            actual = dict(wanted)
            for motor in MOTORS:
                self._channels[motor].drive(actual[motor])
        now = self._clock()
        for name in self._channels:
            parts = ("head", "tail") if name == "body" else (name,)
            running = any(actual[m] != 0 for m in parts)
            if not running:
                self._driven_since[name] = None
            elif self._driven_since[name] is None:
                self._driven_since[name] = now
        for motor in MOTORS:
            if actual[motor] != self._actual[motor]:
                self._actual[motor] = actual[motor]
                for listener in list(self._listeners):
                    try:
                        listener(now, motor, actual[motor])
                    except Exception:
                        log.exception("motion listener %r failed", listener)

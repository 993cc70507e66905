"""Where the body's pins come from: the Pi's GPIO when there is one, else gpiozero's mock pins.

Everything that can go wrong with the pins ends in one line that names the pin and the fix:
no GPIO at all (a laptop: the body is simulated), a Raspberry Pi whose pin library does not
load (lgpio missing, no permission, an unwritable working folder), or a pin that another
program holds ("GPIO busy").
"""

from __future__ import annotations

import errno
import getpass
import logging
import os
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from gpiozero import Device
from gpiozero.exc import GPIOPinInUse, PinFactoryFallback, PinInvalidPin, PinPWMUnsupported
from gpiozero.pins import Factory
from gpiozero.pins.mock import MockFactory, MockPWMPin

from core.errors import DeviceError

log = logging.getLogger(__name__)

BOARD_MODEL_FILES = (Path("/proc/device-tree/model"), Path("/sys/firmware/devicetree/base/model"))
INSTALL_HINT = "run `bash setup/install.sh` again (on a Pi it installs lgpio into .venv)"


def board_model(files: tuple[Path, ...] = BOARD_MODEL_FILES) -> str | None:
    """ "Raspberry Pi 5 Model B Rev 1.0" and the like, or None when this is not a Raspberry Pi."""
    for path in files:
        try:
            model = path.read_bytes().decode("utf-8", "replace").strip("\0 \n")
        except OSError:
            continue
        if "raspberry pi" in model.lower():
            return model
    return None


@dataclass(frozen=True)
class FactoryChoice:
    """The pin factory Billy uses and the one line to say about it."""

    factory: Factory
    simulated: bool
    board: str | None
    """The Raspberry Pi's model, or None on other machines."""
    line: str = ""
    """What to tell the person (empty when the Pi's own pins loaded cleanly)."""
    level: int = logging.INFO
    """How loud `line` is: a warning when something on a Pi needs fixing."""


def choose_pin_factory(simulate: bool, model_files: tuple[Path, ...] = BOARD_MODEL_FILES) -> FactoryChoice:
    """The real GPIO unless `simulate` or there is none, with the one line that says so.

    gpiozero warns once per pin library it cannot load; those warnings are the search, not news,
    so they are caught, and the one that matters (lgpio's, on a Raspberry Pi) becomes the line.
    `model_files`: where the board model is read (the device tree).
    """
    if simulate:
        return FactoryChoice(MockFactory(pin_class=MockPWMPin), True, None)
    board = board_model(model_files)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", PinFactoryFallback)
        try:
            Device.ensure_pin_factory()
        except Exception as exc:  # gpiozero raises several kinds when no GPIO chip exists
            failure: Exception | None = exc
        else:
            failure = None
    reasons = _fallback_reasons(caught)
    if failure is None and not isinstance(Device.pin_factory, MockFactory):
        factory = Device.pin_factory
        if board and "lgpio" in reasons:
            line = (
                f"{board}: gpiozero uses its {type(factory).__name__} pins because lgpio did not load "
                f"({reasons['lgpio']}); the motors may not move: {explain_lgpio_failure(reasons['lgpio'])}."
            )
            return FactoryChoice(factory, False, board, line, logging.WARNING)
        return FactoryChoice(factory, False, board)
    if failure is None:  # GPIOZERO_PIN_FACTORY=mock
        line = "GPIOZERO_PIN_FACTORY picks gpiozero's mock pins: Billy's motors and button are simulated."
        return FactoryChoice(Device.pin_factory, True, board, line)
    mock = MockFactory(pin_class=MockPWMPin)
    if board:
        reason = reasons.get("lgpio", str(failure))
        line = (
            f"{board}, but its GPIO cannot be used ({reason}): {explain_lgpio_failure(reason)}. "
            "Until then Billy's motors and button are simulated."
        )
        return FactoryChoice(mock, True, board, line, logging.WARNING)
    return FactoryChoice(mock, True, None, "No GPIO on this machine: Billy's motors and button are simulated.")


def pin_factory(simulate: bool, model_files: tuple[Path, ...] = BOARD_MODEL_FILES) -> tuple[Factory, bool]:
    """(factory, simulated), having said the one line about it (see `choose_pin_factory`)."""
    choice = choose_pin_factory(simulate, model_files)
    if choice.line:
        log.log(choice.level, "%s", choice.line)
    return choice.factory, choice.simulated


def _fallback_reasons(caught: list[warnings.WarningMessage]) -> dict[str, str]:
    """{"lgpio": "No module named 'lgpio'", ...} from gpiozero's "Falling back from X: why" warnings."""
    reasons = {}
    for item in caught:
        if issubclass(item.category, PinFactoryFallback):
            name, _, why = str(item.message).removeprefix("Falling back from ").partition(": ")
            reasons[name.strip()] = why.strip()
    return reasons


def explain_lgpio_failure(reason: str) -> str:
    """What to do when gpiozero's lgpio pins do not load on a Raspberry Pi, from lgpio's own words."""
    text = reason.lower()
    if "no module named" in text:
        return f"lgpio is not installed in this Python: {INSTALL_HINT}"
    if ".lgd-nfy" in text:
        return (
            f"lgpio cannot make its notification pipe in the working folder {os.getcwd()}: start Billy "
            "from a folder you can write to, or set LG_WD to one (the systemd unit sets LG_WD=/run/billy)"
        )
    if "permission" in text or "can not open gpiochip" in text or "cannot open gpiochip" in text:
        chips = sorted(str(p) for p in Path("/dev").glob("gpiochip*"))
        if not chips:
            return "there is no /dev/gpiochip*: use Raspberry Pi OS (Bookworm) or a kernel with GPIO character devices"
        return (
            f"{getpass.getuser()} may not open {chips[0]}: add the user to the gpio group "
            "(`sudo usermod -aG gpio $USER`), then log in again (the service picks it up when it restarts)"
        )
    return f"check that lgpio works (`python -c 'import lgpio'`), or {INSTALL_HINT}"


def pin_error(name: str, gpio: int, exc: BaseException) -> DeviceError:
    """One line for a pin that would not open: which pin, why, and what to do."""
    setting = f"BILLY_PIN_{name.upper()}"
    pin = f"GPIO{gpio} ({name})"
    text = str(exc).lower()
    code = getattr(exc, "errno", None)
    if "busy" in text or code == errno.EBUSY:
        return DeviceError(
            f"{pin} is busy: another program holds it (Billy's own service? `sudo systemctl stop billy`; "
            f"`gpioinfo` names the holder); stop that program, or wire {name} to a free GPIO and set {setting}."
        )
    if isinstance(exc, GPIOPinInUse):
        return DeviceError(f"{pin} is already in use inside Billy ({exc}); give {setting} a GPIO of its own.")
    if isinstance(exc, PermissionError) or code in (errno.EACCES, errno.EPERM) or "permission" in text:
        return DeviceError(
            f"{pin} cannot be opened: permission denied; add {getpass.getuser()} to the gpio group "
            "(`sudo usermod -aG gpio $USER`) and log in again."
        )
    if isinstance(exc, PinPWMUnsupported):
        return DeviceError(f"{pin} cannot do PWM with these pins ({exc}): {INSTALL_HINT}.")
    if isinstance(exc, PinInvalidPin):
        return DeviceError(f"{pin} does not exist on this board: set {setting} to a GPIO of the header (2-27).")
    return DeviceError(
        f"{pin} cannot be opened ({type(exc).__name__}: {exc}); check the wiring and that no other program "
        f"uses it, or set {setting} to another GPIO."
    )


def find_pin_error(pins: Mapping[str, int | None], factory: Factory | None, exc: BaseException) -> DeviceError:
    """After opening a group of pins failed with `exc`: open each alone to name the one at fault.

    Call it once the group's own pins are released. Falls back to a line about `exc` itself.
    """
    factory = factory if factory is not None else Device.pin_factory
    if factory is not None:
        for name, gpio in pins.items():
            if gpio is None:
                continue
            try:
                factory.pin(gpio)
            except Exception as probe:
                return pin_error(name, gpio, probe)
    named = [(n, g) for n, g in pins.items() if g is not None and re.search(rf"\bGPIO{g}\b", str(exc), re.I)]
    if len(named) == 1:
        return pin_error(*named[0], exc)
    where = ", ".join(f"{n}=GPIO{g}" for n, g in pins.items() if g is not None)
    return DeviceError(
        f"The pins {where} cannot be opened ({type(exc).__name__}: {exc}); check that no other program holds them "
        f"(`sudo systemctl stop billy`), or run in simulation."
    )


BOOT_CONFIG_FILES = (Path("/boot/firmware/config.txt"), Path("/boot/config.txt"))
"""The Pi's firmware settings (Bookworm's place first), where pins can be set low from power-on."""


def pins_low_at_boot(config_text: str) -> set[int]:
    """GPIOs that the firmware makes outputs driving low at power-on (`gpio=5,6,12-13=op,dl` lines)."""
    held: set[int] = set()
    for raw in config_text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line.lower().startswith("gpio="):
            continue
        numbers, _, options = line[len("gpio=") :].partition("=")
        if not {"op", "dl"} <= {o.strip().lower() for o in options.split(",")}:
            continue
        for part in numbers.split(","):
            first, _, last = part.strip().partition("-")
            try:
                low, high = int(first), int(last or first)
            except ValueError:
                continue
            held.update(range(low, high + 1))
    return held

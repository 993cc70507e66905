"""Where the pins come from, and the one line Billy says when a pin or the GPIO library fails.

There is no GPIO here: a Raspberry Pi is a device-tree model file written by the test, and a
pin another program holds is gpiozero's mock factory raising what lgpio raises ("GPIO busy").
"""

from __future__ import annotations

import asyncio
import logging
import warnings
from pathlib import Path

import pytest
from gpiozero import Button
from gpiozero.pins.mock import MockFactory, MockPWMPin

from core.body.button import FishButton
from core.body.motors import Motors
from core.body.pins import board_model, explain_lgpio_failure, pin_factory
from core.config import MotionSettings
from core.errors import DeviceError


class LgpioError(Exception):
    """Stands in for `lgpio.error`, which carries lgpio's text and nothing else."""


class RefusingFactory(MockFactory):
    """Mock pins, except that the listed GPIOs raise what a real Pi would raise for them."""

    def __init__(self, refuse: dict[int, BaseException]):
        super().__init__(pin_class=MockPWMPin)
        self.refuse = refuse

    def pin(self, name, pin_class=None, **kwargs):
        number = int(str(name).removeprefix("GPIO"))
        if number in self.refuse:
            raise self.refuse[number]
        return super().pin(name, pin_class, **kwargs)


def _no_fallback_warnings(caught: list[warnings.WarningMessage]) -> None:
    assert [str(w.message) for w in caught] == []


def test_without_gpio_one_line_says_the_body_is_simulated(tmp_path: Path, caplog: pytest.LogCaptureFixture):
    with warnings.catch_warnings(record=True) as caught, caplog.at_level(logging.INFO, logger="core.body.pins"):
        warnings.simplefilter("always")
        factory, simulated = pin_factory(simulate=False, model_files=(tmp_path / "none",))
    _no_fallback_warnings(caught)
    assert simulated and isinstance(factory, MockFactory)
    assert [r.getMessage() for r in caplog.records] == [
        "No GPIO on this machine: Billy's motors and button are simulated."
    ]


def test_a_pi_without_lgpio_says_what_to_install(tmp_path: Path, caplog: pytest.LogCaptureFixture):
    model = tmp_path / "model"
    model.write_bytes(b"Raspberry Pi 5 Model B Rev 1.0\x00")
    assert board_model((model,)) == "Raspberry Pi 5 Model B Rev 1.0"
    with warnings.catch_warnings(record=True) as caught, caplog.at_level(logging.INFO, logger="core.body.pins"):
        warnings.simplefilter("always")
        _, simulated = pin_factory(simulate=False, model_files=(model,))
    _no_fallback_warnings(caught)
    assert simulated
    (record,) = caplog.records
    assert record.levelno == logging.WARNING
    line = record.getMessage()
    assert line.startswith("Raspberry Pi 5 Model B Rev 1.0, but its GPIO cannot be used (No module named 'lgpio')")
    assert "setup/install.sh" in line and "simulated" in line


def test_simulate_needs_no_look_at_the_board():
    factory, simulated = pin_factory(simulate=True)
    assert simulated and isinstance(factory, MockFactory)


@pytest.mark.parametrize(
    ("reason", "advice"),
    [
        ("No module named 'lgpio'", "lgpio is not installed"),
        ("[Errno 2] No such file or directory: '.lgd-nfy-3'", "set LG_WD"),
        ("[Errno 13] Permission denied: '.lgd-nfy-3'", "set LG_WD"),
        ("'can not open gpiochip'", "gpiochip"),
        ("something new", "import lgpio"),
    ],
)
def test_lgpio_failures_each_get_their_fix(reason: str, advice: str):
    assert advice in explain_lgpio_failure(reason)


def test_a_busy_motor_pin_is_named_with_its_setting():
    factory = RefusingFactory({22: LgpioError("GPIO busy")})
    with pytest.raises(DeviceError) as caught:
        Motors(MotionSettings(), pin_factory=factory)
    message = str(caught.value)
    assert message.startswith("GPIO22 (head) is busy: another program holds it")
    assert "BILLY_PIN_HEAD" in message and "systemctl stop billy" in message
    assert "\n" not in message


def test_a_busy_second_bridge_input_is_named():
    settings = MotionSettings(billy_model="classic", pin_layout="legacy")
    factory = RefusingFactory({26: LgpioError("GPIO busy")})
    with pytest.raises(DeviceError, match=r"^GPIO26 \(tail_b\) is busy: .*BILLY_PIN_TAIL_B"):
        Motors(settings, pin_factory=factory)


def test_no_permission_says_gpio_group():
    factory = RefusingFactory({17: PermissionError(13, "Permission denied", "/dev/gpiochip0")})
    with pytest.raises(DeviceError, match=r"^GPIO17 \(mouth\) cannot be opened: permission denied; .*gpio group"):
        Motors(MotionSettings(), pin_factory=factory)


def test_a_pin_taken_inside_billy_is_named():
    factory = MockFactory(pin_class=MockPWMPin)
    squatter = Button(27, pin_factory=factory)
    try:
        with pytest.raises(DeviceError, match=r"^GPIO27 \(tail\) is already in use inside Billy"):
            Motors(MotionSettings(), pin_factory=factory)
    finally:
        squatter.close()


def test_a_busy_button_is_named():
    factory = RefusingFactory({24: LgpioError("GPIO busy")})
    loop = asyncio.new_event_loop()
    try:
        with pytest.raises(DeviceError, match=r"^GPIO24 \(button\) is busy: .*BILLY_PIN_BUTTON"):
            FishButton(24, loop, lambda: None, factory)
    finally:
        loop.close()

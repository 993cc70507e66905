"""`motor-test` moves each motor in turn on the right pins and leaves them all off."""

from __future__ import annotations

import pytest
from gpiozero.pins.mock import MockFactory, MockPWMPin

from core.config import MotionSettings
from core.dev.motortest import run_motor_test


@pytest.fixture
def factory():
    f = MockFactory(pin_class=MockPWMPin)
    yield f
    f.reset()


def _driven(factory, gpio: int) -> list[float]:
    return [float(v) for _, v in factory.pin(gpio).states if v]


@pytest.mark.parametrize(
    ("model", "layout", "pins"),
    [("modern", "new", (17, 22, 27)), ("classic", "legacy", (12, 13, 19))],
)
def test_each_motor_moves_in_turn_and_ends_off(factory, model, layout, pins):
    lines: list[str] = []
    code = run_motor_test(MotionSettings(billy_model=model, pin_layout=layout), factory, lines.append, pace=0.05)
    assert code == 0
    for gpio in pins:
        assert _driven(factory, gpio) == [1.0], gpio
        assert factory.pin(gpio).state == 0
    text = "\n".join(lines)
    for word in ("mouth", "head", "tail", f"GPIO{pins[0]}", f"GPIO{pins[2]}"):
        assert word in text
    assert text.index("mouth") < text.index("head") < text.index("tail")


def test_the_motors_move_one_after_the_other(factory):
    run_motor_test(MotionSettings(billy_model="classic"), factory, lambda _: None, pace=0.05)
    starts = {}
    for gpio in (17, 22, 27):
        # a pin's history starts when it is opened, all three within a millisecond
        stamps = [stamp for stamp, _ in factory.pin(gpio).states]
        first_on = next(i for i, (_, v) in enumerate(factory.pin(gpio).states) if v)
        starts[gpio] = sum(stamps[1 : first_on + 1])
    assert starts[17] + 0.03 < starts[22] < starts[27] - 0.03


def test_bad_pins_give_one_line_and_exit_code_1(factory):
    lines: list[str] = []
    code = run_motor_test(MotionSettings(pin_overrides={"mouth": 22}), factory, lines.append, pace=0.05)
    assert code == 1
    assert len(lines) == 1 and "GPIO22" in lines[0]

"""Where the body's pins come from: the Pi's GPIO when there is one, else gpiozero's mock pins."""

from __future__ import annotations

import logging
import warnings

from gpiozero import Device
from gpiozero.exc import PinFactoryFallback
from gpiozero.pins import Factory
from gpiozero.pins.mock import MockFactory, MockPWMPin

log = logging.getLogger(__name__)


def pin_factory(simulate: bool) -> tuple[Factory, bool]:
    """(factory, simulated): the real GPIO unless `simulate` or there is none, said in one line.

    gpiozero warns once per driver it cannot load; those warnings are the search, not news,
    so they are silenced and the outcome is logged instead.
    """
    if not simulate:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PinFactoryFallback)
            try:
                Device.ensure_pin_factory()
            except Exception as exc:  # gpiozero raises several kinds when no GPIO chip exists
                log.info("No GPIO on this machine (%s): Billy's motors and button are simulated.", exc)
            else:
                return Device.pin_factory, False
    return MockFactory(pin_class=MockPWMPin), True

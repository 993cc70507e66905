"""The doctor's look at the devices: the mic and speaker opened for real, the GPIO pins claimed and given back."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from core.config import Settings
from core.dev.check import Line, no, off, ok
from core.errors import BillyError

MIC_LISTEN_S = 1.0
"""How long (seconds) the mic has to deliver its first sound."""
SPEAKER_PLAY_S = 0.3
"""How long (seconds) the speaker plays silence."""


def check_microphone(settings: Settings) -> Line:
    """Open the mic the way Billy does and wait for its first sound."""
    import numpy as np

    from core.audio.portaudio import SoundDeviceMicrophone

    hint = "until then Billy uses the simulated mic"
    try:
        mic = SoundDeviceMicrophone(settings.audio.mic_preference, settings.audio.mic_sample_rate)
        arrived = threading.Event()
        peak = [0]

        def on_frame(frame: Any) -> None:
            peak[0] = max(peak[0], int(np.abs(frame.pcm.astype(np.int32)).max(initial=0)))
            arrived.set()

        mic.start(on_frame)
        try:
            heard = arrived.wait(MIC_LISTEN_S)
        finally:
            mic.stop()
    except BillyError as exc:
        return no("mic", f"{str(exc).rstrip('.')} ({hint})")
    d = mic.device
    if not heard:
        return no(
            "mic",
            f"{d.name} opened but sent no sound within {MIC_LISTEN_S:g} s: check it is plugged in and "
            "not used by another program, or set MIC_PREFERENCE to another device",
        )
    level = 20 * np.log10(peak[0] / 32768) if peak[0] else None
    loudness = f"peak {level:.0f} dBFS" if level is not None else "silent so far"
    return ok("mic", f"{d.name} opens and records ({d.sample_rate} Hz, {d.channels} ch, {loudness})")


def check_speaker(settings: Settings) -> Line:
    """Open the speaker the way Billy does and play a moment of silence."""
    from core.audio.portaudio import SoundDeviceSpeaker

    try:
        speaker = SoundDeviceSpeaker(settings.audio.speaker_preference)
        speaker.start()
        try:
            time.sleep(SPEAKER_PLAY_S)
        finally:
            speaker.stop()
    except BillyError as exc:
        return no("speaker", f"{str(exc).rstrip('.')} (until then Billy uses the simulated speaker)")
    d = speaker.device
    return ok("speaker", f"{d.name} opens and plays ({d.sample_rate} Hz, latency {speaker.latency_s * 1000:.0f} ms)")


def check_gpio(settings: Settings, model_files: tuple[Path, ...] | None = None) -> Iterator[Line]:
    """The pin library, then every pin of this fish opened (and given back), then the pins at boot."""
    from core.body.motors import Motors, resolve_pins
    from core.body.pins import BOARD_MODEL_FILES, BOOT_CONFIG_FILES, choose_pin_factory, pin_error, pins_low_at_boot

    try:
        pins = resolve_pins(settings.motion)
    except BillyError as exc:
        yield no("pins", str(exc))
        return
    where = ", ".join(f"{name} GPIO{gpio}" for name, gpio in pins.items() if gpio is not None)
    choice = choose_pin_factory(simulate=False, model_files=model_files or BOARD_MODEL_FILES)
    if choice.simulated and not choice.board:
        yield off("gpio", f"no GPIO on this machine: the motors and button would be simulated ({where})")
        return
    if choice.simulated or choice.line:
        yield no("gpio", choice.line)
        if choice.simulated:
            return
    factory = choice.factory
    try:
        motors = Motors(settings.motion, pin_factory=factory)
        motors.close()
        button = pins["button"]
        if button is not None:
            from gpiozero import Button

            try:
                Button(button, pull_up=True, pin_factory=factory).close()
            except Exception as exc:
                raise pin_error("button", button, exc) from exc
    except BillyError as exc:
        yield no("pins", str(exc))
        return
    yield ok("gpio", f"{type(factory).__name__} on {choice.board or 'this board'}")
    yield ok("pins", f"{where} open")
    if choice.board:
        yield _boot_pins(pins, BOOT_CONFIG_FILES, pins_low_at_boot)


def _boot_pins(pins: dict[str, int | None], files: tuple[Path, ...], parse: Callable[[str], set[int]]) -> Line:
    motor_pins = sorted(g for n, g in pins.items() if g is not None and n != "button")
    for path in files:
        try:
            text = path.read_text(errors="replace")
        except OSError:
            continue
        loose = [g for g in motor_pins if g not in parse(text)]
        if not loose:
            return ok("boot pins", f"{path} holds the motor pins low from power-on")
        listed = ",".join(str(g) for g in loose)
        return off(
            "boot pins",
            f"GPIO {listed} float until Billy starts, so the motors may twitch at boot: add "
            f"`gpio={listed}=op,dl` to {path} and reboot",
        )
    return off("boot pins", "no /boot/firmware/config.txt to hold the motor pins low at boot")

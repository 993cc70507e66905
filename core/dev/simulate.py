"""`python main.py simulate`: the real firmware on simulated pins, mic and speaker.

Each input WAV is one user turn of one session: the virtual button is pressed (through the
gpiozero mock pin), the WAV plays into the virtual mic in real time, and the run moves on
once Billy has answered and is listening again. Outputs, all on the play clock (seconds
from the start of the run): speaker.wav, turns.jsonl (each turn tagged with the index of the
input it answered), events.jsonl and motion.jsonl.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import threading
import time
from pathlib import Path
from typing import Any, TextIO

from core.app import Billy, make_devices
from core.audio.wav import read_wav
from core.config import Settings
from core.interfaces import TurnRecord
from core.state import StateChange

log = logging.getLogger(__name__)

STEP_TIMEOUT_SECONDS = 180.0
"""Longest a single input may take to be answered before the run is declared stuck."""


class JsonLines:
    """Appends one JSON object per line; safe to call from any thread."""

    def __init__(self, path: Path):
        self._file: TextIO = path.open("w", encoding="utf-8")
        self._lock = threading.Lock()

    def write(self, obj: dict[str, Any]) -> None:
        line = json.dumps(obj, ensure_ascii=False, default=str)
        with self._lock:
            if not self._file.closed:
                self._file.write(line + "\n")
                self._file.flush()

    def close(self) -> None:
        with self._lock:
            self._file.close()


def turn_to_json(record: TurnRecord) -> dict[str, Any]:
    return dataclasses.asdict(record)


async def simulate(
    settings: Settings, inputs: list[Path], out_dir: Path, naive_motion: bool = False, wake: bool = False
) -> int:
    """Run the simulation; returns the process exit code.

    `wake`: press no button; each input starts with the wake word, which must wake Billy.

    `naive_motion` also records, in motion_naive.jsonl, the mouth a design that flaps when
    audio is queued (not when it is heard) would make, for the lip-sync benchmark.
    """
    if wake and not settings.wake_word.enabled:
        log.error("simulate --wake needs the wake word: set WAKE_WORD_ENABLED=true")
        return 2
    audio = []
    for path in inputs:
        try:
            audio.append(read_wav(path))
        except (OSError, ValueError) as exc:
            log.error("cannot use --input %s: %s", path, exc)
            return 2
    out_dir.mkdir(parents=True, exist_ok=True)
    devices = make_devices(settings, simulate=True)
    billy = Billy(settings, devices)
    t0 = time.monotonic()
    events = JsonLines(out_dir / "events.jsonl")
    turns = JsonLines(out_dir / "turns.jsonl")
    motion = JsonLines(out_dir / "motion.jsonl")
    naive = JsonLines(out_dir / "motion_naive.jsonl") if naive_motion else None
    shadow = None

    def on_state(change: StateChange) -> None:
        events.write(
            {
                "time": round(change.time - t0, 4),
                "state": change.current.value,
                "previous": change.previous.value,
                "reason": change.reason,
            }
        )

    billy.on_state(on_state)
    code = 0
    try:
        await billy.start()
        assert billy.session is not None
        current = {"input": None}
        billy.session.hooks.on_turn.append(lambda record: turns.write({**turn_to_json(record), **current}))
        billy.body.add_listener(_motion_writer(motion, t0))
        if naive is not None:
            from gpiozero.pins.mock import MockFactory, MockPWMPin

            from core.body.motion import Body

            shadow = Body(settings.motion, pin_factory=MockFactory(pin_class=MockPWMPin), timing="queued")
            shadow.attach(devices.speaker)
            shadow.add_listener(_motion_writer(naive, t0))
        if audio:
            for index, (path, (pcm, rate)) in enumerate(zip(inputs, audio, strict=True)):
                log.info("simulate: playing %s into the mic", path.name)
                current["input"] = index
                await asyncio.wait_for(_one_input(billy, pcm, rate, press=not wake), STEP_TIMEOUT_SECONDS)
        else:
            await billy.run()
    except TimeoutError:
        log.error("simulate: Billy did not finish answering within %.0f s; see events.jsonl", STEP_TIMEOUT_SECONDS)
        code = 1
    except Exception as exc:
        log.error("simulate failed: %s", exc, exc_info=not hasattr(exc, "args") or log.isEnabledFor(logging.DEBUG))
        code = 1
    finally:
        await billy.close()
        if shadow is not None:
            shadow.close()
        devices.speaker.write_wav(out_dir / "speaker.wav", t0)
        for f in (events, turns, motion, naive):
            if f is not None:
                f.close()
    log.info("simulate: wrote %s", out_dir)
    return code


def _motion_writer(lines: JsonLines, t0: float) -> Any:
    def write(t: float, motor: str, value: float) -> None:
        lines.write({"time": round(t - t0, 4), "motor": motor, "value": round(value, 3)})

    return write


async def _one_input(billy: Billy, pcm: Any, rate: int, press: bool = True) -> None:
    session = billy.session
    assert session is not None
    if press and not session.busy:
        billy.press()
        await _until(lambda: session.awaiting_speech)
    handle = billy.devices.mic.feed(pcm, rate)  # type: ignore[attr-defined]
    await asyncio.get_running_loop().run_in_executor(None, handle.done.wait, STEP_TIMEOUT_SECONDS)
    settle = billy.settings.endpoint.end_silence_ms / 1000 + 0.5
    await _until(lambda: session.awaiting_speech or not session.busy, hold=settle)


async def _until(condition: Any, hold: float = 0.0, poll: float = 0.02) -> None:
    """Wait until `condition()` has been true continuously for `hold` seconds."""
    since = None
    while True:
        if condition():
            since = since or time.monotonic()
            if time.monotonic() - since >= hold:
                return
        else:
            since = None
        await asyncio.sleep(poll)

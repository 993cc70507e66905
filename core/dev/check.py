"""`python main.py check`: Billy's doctor. Every line is found by trying the part, never by reading a setting back.

    ok  part            what answered, and how
    NO  part            what is wrong, and what to do about it
    --  part            not set up (optional) or not on this machine, and how to have it

The exit status is 1 when any line says NO. The network parts (`check_network`) are tried at
once, each within a few seconds; the devices (`check_devices`) are opened for real; the models
load the way Billy loads them, so a slow machine shows here too.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.config import Settings
from core.errors import BillyError

PROBE_PROMPT = "You are Billy, a talking fish."


@dataclass(frozen=True)
class Line:
    """One finding: `mark` is "ok", "NO" (a problem; `detail` says what to do) or "--" (not set up / not here)."""

    mark: str
    part: str
    detail: str

    @property
    def problem(self) -> bool:
        return self.mark == "NO"

    def __str__(self) -> str:
        return f"{self.mark:<3} {self.part:<15} {self.detail}"


def ok(part: str, detail: str) -> Line:
    return Line("ok", part, detail)


def no(part: str, detail: str) -> Line:
    return Line("NO", part, detail)


def off(part: str, detail: str) -> Line:
    return Line("--", part, detail)


async def check(settings: Settings, out: Callable[[str], None] = print) -> int:
    """Print one line per part as it is found; 1 if any says NO, else 0."""
    problems = 0
    core_log = logging.getLogger("core")
    quiet = core_log.getEffectiveLevel() > logging.DEBUG
    previous = core_log.level
    if quiet:  # the lines below say it all; the parts' own log lines would say it twice
        core_log.setLevel(logging.ERROR)
    try:
        async for line in run_checks(settings):
            problems += line.problem
            out(str(line))
    finally:
        core_log.setLevel(previous)
    out("all good" if problems == 0 else f"{problems} problem{'s' if problems > 1 else ''} found: see the NO lines")
    return 0 if problems == 0 else 1


async def run_checks(settings: Settings) -> AsyncIterator[Line]:
    """Every finding, in a fixed order; the network parts are tried meanwhile."""
    from core.dev import check_devices as devices
    from core.dev import check_network as network

    loop = asyncio.get_running_loop()
    pending = [
        asyncio.ensure_future(_guard("ollama", network.check_ollama(settings))),
        asyncio.ensure_future(_guard("cloud", network.check_cloud(settings))),
        asyncio.ensure_future(_guard("mqtt", loop.run_in_executor(None, network.check_mqtt, settings))),
        asyncio.ensure_future(_guard("home assistant", network.check_home_assistant(settings))),
    ]
    try:
        yield ok("settings", ".env and the environment parse, every value allowed")
        for line in check_services():
            yield line
        yield _safely("persona", check_persona, settings)
        for line in check_songs(settings):
            yield line
        yield await _guard("mic", loop.run_in_executor(None, devices.check_microphone, settings))
        yield await _guard("speaker", loop.run_in_executor(None, devices.check_speaker, settings))
        for line in await loop.run_in_executor(None, lambda: list(devices.check_gpio(settings))):
            yield line
        yield await _guard("speech to text", loop.run_in_executor(None, check_speech_to_text, settings))
        yield await _guard("voice", loop.run_in_executor(None, check_voice, settings))
        yield await _guard("wake word", loop.run_in_executor(None, check_wake_word, settings))
        yield await _guard("embedded brain", check_embedded_brain(settings))
        for task in pending:
            yield await task
    finally:
        for task in pending:
            task.cancel()


def _unexpected(part: str, exc: BaseException) -> Line:
    if isinstance(exc, BillyError):
        return no(part, str(exc))
    return no(part, f"failed unexpectedly ({type(exc).__name__}: {exc}); run `python main.py -v check` for detail")


def _safely(part: str, probe: Callable[[Settings], Line], settings: Settings) -> Line:
    try:
        return probe(settings)
    except Exception as exc:
        return _unexpected(part, exc)


async def _guard(part: str, pending: Any) -> Line:
    try:
        return await pending
    except Exception as exc:
        return _unexpected(part, exc)


# --- the fish's own files ---------------------------------------------------------------


def check_services() -> Iterator[Line]:
    """Whether systemd runs Billy (his units hold the mic and pins while they run)."""
    from core.systemd import VOICE_UNIT, WEB_UNIT, systemd_running, unit_state

    if not systemd_running():
        yield off("service", "systemd is not running here: nothing starts Billy at boot")
        return
    for unit in (VOICE_UNIT, WEB_UNIT):
        state = unit_state(unit)
        name = unit.removesuffix(".service")
        if state is None:
            yield off(name, f"{unit} is not installed: `sudo bash setup/install-service.sh` runs Billy at boot")
        elif state == "failed":
            yield no(name, f"{unit} failed: `journalctl -u {name} -n 50` shows why")
        elif state in ("active", "activating", "reloading"):
            held = "; it holds the mic, speaker and pins: `sudo systemctl stop billy` to test them here"
            yield ok(name, f"{unit} is {state}" + (held if unit == VOICE_UNIT else ""))
        else:
            yield off(name, f"{unit} is {state}: `sudo systemctl start {name}` starts it")


def check_persona(settings: Settings) -> Line:
    from core.persona.store import PersonaStore

    store = PersonaStore(settings.persona)
    persona = store.current()
    return ok("persona", f"{persona.name} parses ({store.path}): {persona.display_name}, {len(persona.traits)} traits")


def check_songs(settings: Settings) -> Iterator[Line]:
    """One line for the songs that load, one NO per folder that does not."""
    from core.body.songs import BadSong, load_song

    folder = settings.sounds_dir / "songs"
    if not folder.is_dir():
        yield off("songs", f"no song folder ({folder}): Billy cannot sing; see README 'Songs'")
        return
    titles = []
    for song_dir in sorted(folder.iterdir()):
        if not song_dir.is_dir() or song_dir.name.startswith((".", "_")):
            continue
        try:
            titles.append(load_song(song_dir).title)
        except BadSong as exc:
            yield no("song", f"{song_dir.name}: {exc}; fix the folder or remove it")
        except Exception as exc:
            yield no("song", f"{song_dir.name} cannot be read ({exc}); fix the folder or remove it")
    if titles:
        yield ok("songs", f"{len(titles)} parse: {', '.join(titles)}")
    else:
        yield off("songs", f"no song in {folder}: Billy cannot sing; see README 'Songs'")


# --- models -----------------------------------------------------------------------------


def check_speech_to_text(settings: Settings) -> Line:
    from core.listen.stt import WhisperTranscriber, resolve_whisper_model

    started = time.monotonic()
    model = resolve_whisper_model(settings.models.local_stt_model)
    WhisperTranscriber(model, short_window=settings.models.stt_short_window).warm()
    name = settings.models.local_stt_model or "tiny.en (bundled)"
    return ok("speech to text", f"Whisper {name} loads and runs ({time.monotonic() - started:.1f} s)")


def check_voice(settings: Settings) -> Line:
    from core.voice.tts import PiperSynthesizer

    started = time.monotonic()
    voice = PiperSynthesizer(settings.models.local_tts_voice)
    voice.warm()
    return ok("voice", f"piper {voice.voice_path.name} loads and speaks ({time.monotonic() - started:.1f} s)")


def check_wake_word(settings: Settings) -> Line:
    if not settings.wake_word.enabled:
        return off("wake word", "WAKE_WORD_ENABLED is off: the button wakes Billy")
    from core.listen.wakeword import WakeWordDetector

    started = time.monotonic()
    detector = WakeWordDetector(settings.wake_word)
    return ok("wake word", f"{detector.model_name} loads ({time.monotonic() - started:.1f} s)")


async def check_embedded_brain(settings: Settings) -> Line:
    from core.brains.embedded import EmbeddedBrain

    started = time.monotonic()
    m = settings.models
    brain = EmbeddedBrain(m.embedded_llm_model, m.embedded_llm_threads)
    try:
        await brain.warm(PROBE_PROMPT, [])
    finally:
        brain.close()
    return ok("embedded brain", f"{Path(brain.model_path).name} loads ({time.monotonic() - started:.1f} s)")

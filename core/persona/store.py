"""The persona in use, read from `personas/<name>/persona.ini` or `personas/<name>.ini`.

The file is the truth and people edit it by hand while Billy runs, so `PersonaStore.current()`
re-reads it whenever it changes on disk, and tells its subscribers when the persona changed.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path

from core.config import PersonaSettings
from core.errors import PersonaError
from core.files import write_atomic
from core.persona.ini import IniText, Persona, load_persona
from core.persona.traits import TRAITS, canonical_trait, coerce_trait_value

log = logging.getLogger(__name__)


def list_personas(directory: Path) -> list[str]:
    """Names of the personas in `directory`: folders with a persona.ini and loose `.ini` files."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    names = {p.parent.name for p in directory.glob("*/persona.ini")}
    names |= {p.stem for p in directory.glob("*.ini") if not p.name.startswith(".")}
    return sorted(names)


def persona_path(directory: Path, name: str) -> Path:
    """The file of persona `name`; raises PersonaError listing the ones there are."""
    directory = Path(directory)
    for candidate in (directory / name / "persona.ini", directory / f"{name}.ini"):
        if candidate.is_file():
            return candidate
    available = ", ".join(list_personas(directory)) or "none"
    raise PersonaError(f"PERSONA={name!r} is not allowed: no persona file in {directory}; available: {available}.")


class PersonaStore:
    """The persona in use: re-read when its file changes, updated by the model's tool calls.

    Thread-safe. `current()` costs one `stat` when nothing changed. With
    `allow_update_ini` off, changes live in memory until the file itself changes.
    """

    def __init__(self, settings: PersonaSettings):
        self._settings = settings
        self._directory = Path(settings.directory)
        self.path = persona_path(self._directory, settings.name)
        self._lock = threading.Lock()
        self._persona = load_persona(self.path)
        self._signature = self._stat()
        self._bad_signature: tuple[int, int] | None = None
        self._missing_logged = False
        self.unsaved = False
        """True while the persona in use has changes its file lacks (the last save failed)."""
        self._observers: list[Callable[[Persona], None]] = []

    def subscribe(self, observer: Callable[[Persona], None]) -> None:
        """Call `observer(persona)` after each change (a reloaded file or an update), from the changing thread.

        It must not block: hand the news to the loop (the app re-primes the brain's prompt cache).
        """
        self._observers.append(observer)

    def _changed(self, persona: Persona) -> None:
        for observer in list(self._observers):
            try:
                observer(persona)
            except Exception:
                log.exception("persona observer %r failed; Billy goes on without it", observer)

    def _stat(self) -> tuple[int, int] | None:
        try:
            st = self.path.stat()
        except OSError:
            return None
        return st.st_mtime_ns, st.st_size

    @property
    def allow_update_ini(self) -> bool:
        """Whether trait changes are written back to the file (ALLOW_UPDATE_PERSONALITY_INI)."""
        return self._settings.allow_update_ini

    def current(self) -> Persona:
        """The persona to use for this turn, re-read if the file changed since the last look."""
        with self._lock:
            signature = self._stat()
            if signature is None:
                if not self._missing_logged:
                    log.warning("Persona file %s is gone; keeping the persona loaded before", self.path)
                    self._missing_logged = True
                return self._persona
            self._missing_logged = False
            if signature in (self._signature, self._bad_signature):
                return self._persona
            try:
                persona = load_persona(self.path)
            except PersonaError as exc:
                log.warning("%s Keeping the persona loaded before.", exc)
                self._bad_signature = signature
                return self._persona
            self._signature = signature
            self._bad_signature = None
            if persona == self._persona:
                return persona
            log.info("Persona file %s changed; reloaded", self.path)
            self._persona = persona
            self.unsaved = False
        self._changed(persona)
        return persona

    def update_traits(self, changes: Mapping[str, int | str]) -> dict[str, int]:
        """Apply trait changes (numbers, level names or relative words); returns the new values.

        Raises PersonaError naming the first unknown trait or bad value, changing nothing.
        """
        self.current()
        with self._lock:
            old = self._persona
            new_values: dict[str, int] = {}
            for key, value in changes.items():
                trait = canonical_trait(key)
                if trait is None:
                    raise PersonaError(f"{key!r} is not a trait; use one of {', '.join(TRAITS)}.")
                try:
                    new_values[trait] = coerce_trait_value(value, old.traits[trait])
                except ValueError as exc:
                    raise PersonaError(f"{trait}: {exc}.") from exc
            if not new_values:
                return {}
            persona = replace(old, traits={**old.traits, **new_values})
            if self._settings.allow_update_ini:
                self._write_traits(new_values)
            self._persona = persona
            log.info("Personality updated: %s", ", ".join(f"{k}={v}" for k, v in new_values.items()))
        if persona != old:
            self._changed(persona)
        return new_values

    def _write_traits(self, values: Mapping[str, int]) -> None:
        """Rewrite only the changed trait lines; a failed write keeps the change in memory and says why."""
        try:
            ini = IniText(self.path.read_text(encoding="utf-8-sig"))
            spelled = {canonical_trait(k): k for k in ini.keys("PERSONALITY")}
            for trait, value in values.items():
                ini.set("PERSONALITY", spelled.get(trait) or trait, str(value))
            write_atomic(self.path, ini.text())
        except (OSError, UnicodeDecodeError) as exc:
            log.warning("Cannot write persona file %s (%s); the change lasts until Billy restarts", self.path, exc)
            self.unsaved = True
            return
        self.unsaved = False
        self._signature = self._stat()
        self._bad_signature = None

    def list_personas(self) -> list[str]:
        return list_personas(self._directory)

    @property
    def name(self) -> str:
        """The id of the persona in use (its folder or file name)."""
        with self._lock:
            return self._persona.name

    def use(self, name: str) -> Persona:
        """Switch to persona `name` of the persona folder; observers hear of it.

        Raises PersonaError for a name that is not a persona there (or not a name at all,
        like `../x`) or a file that cannot be read, and then nothing changes.
        """
        from core.persona.library import check_name

        path = persona_path(self._directory, check_name(name))
        persona = load_persona(path)
        with self._lock:
            self.path = path
            self._persona = persona
            self._signature = self._stat()
            self._bad_signature = None
            self._missing_logged = False
        log.info("Persona is now %s (%s)", persona.name, path)
        self._changed(persona)
        return persona

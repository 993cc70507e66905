"""All persona files, for the page: read, edit, create from another, rename, delete.

Names are checked before any path is made, so no name reaches outside the persona folder.
Every write is atomic (a temp file and a rename); a deleted persona is moved to
`<persona folder>/.trash/`, never destroyed. The persona in use is changed through
`PersonaStore.use`; an edit of its file is seen by the store at the next turn.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from core.errors import PersonaError
from core.files import write_atomic
from core.persona.ini import Persona, load_persona, save_persona
from core.persona.store import list_personas, persona_path
from core.persona.traits import TRAITS

log = logging.getLogger(__name__)

_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,39}")
_FACT_KEY = re.compile(r"[a-z0-9][a-z0-9 _.'-]{0,39}")
MAX_FACTS = 30
MAX_FACT_CHARS = 300
MAX_INSTRUCTIONS_CHARS = 3000
MAX_WAKEUP = 12
MAX_WAKEUP_CHARS = 200
MAX_DISPLAY_NAME_CHARS = 40


def check_name(name: object) -> str:
    """`name` if it can be a persona's folder name, else PersonaError saying what is allowed."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        shown = repr(name)[:50] if isinstance(name, str) else type(name).__name__
        raise PersonaError(
            f"{shown} is not a persona name: use 1 to 40 lowercase letters, digits, - and _, like my_billy."
        )
    return name


def _line(value: object, what: str, limit: int) -> str:
    if not isinstance(value, str):
        raise PersonaError(f"{what} must be text.")
    if any(ord(c) < 32 and c not in "\t\n\r" for c in value):
        raise PersonaError(f"{what} holds a control character; use plain text.")
    text = " ".join(value.split())
    if len(text) > limit:
        raise PersonaError(f"{what} is {len(text)} characters long; keep it under {limit}.")
    return text


@dataclass(frozen=True)
class PersonaEdit:
    """What the page may change in a persona file; the rest of the file stays as written."""

    traits: dict[str, int]
    """All ten traits, 0–100."""
    backstory: dict[str, str]
    display_name: str
    instructions: str
    wakeup: list[str]


def parse_edit(data: Mapping[str, Any]) -> PersonaEdit:
    """Validate an edit from the page; PersonaError names the first thing wrong."""
    traits_in = data.get("traits")
    if not isinstance(traits_in, Mapping) or set(traits_in) != set(TRAITS):
        raise PersonaError(f"traits must give all of {', '.join(TRAITS)}.")
    traits = {}
    for trait in TRAITS:
        value = traits_in[trait]
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 100:
            raise PersonaError(f"{trait} must be a whole number from 0 to 100.")
        traits[trait] = value
    facts = data.get("backstory", {})
    if not isinstance(facts, Mapping) or len(facts) > MAX_FACTS:
        raise PersonaError(f"backstory must be up to {MAX_FACTS} facts.")
    backstory = {}
    for key, value in facts.items():
        clean = " ".join(str(key).split()).lower()
        if not _FACT_KEY.fullmatch(clean):
            raise PersonaError(
                f"backstory fact {str(key)[:40]!r}: name it with letters, digits, spaces, - and _ (up to 40)."
            )
        text = _line(value, f"backstory fact {clean!r}", MAX_FACT_CHARS)
        if text:
            backstory[clean] = text
    wakeup_in = data.get("wakeup", [])
    if not isinstance(wakeup_in, list) or len(wakeup_in) > MAX_WAKEUP:
        raise PersonaError(f"wake-up phrases must be a list of up to {MAX_WAKEUP}.")
    wakeup = [p for p in (_line(v, "a wake-up phrase", MAX_WAKEUP_CHARS) for v in wakeup_in) if p]
    return PersonaEdit(
        traits=traits,
        backstory=backstory,
        display_name=_line(data.get("display_name", ""), "the name", MAX_DISPLAY_NAME_CHARS) or "Billy",
        instructions=_line(data.get("instructions", ""), "the instructions", MAX_INSTRUCTIONS_CHARS),
        wakeup=wakeup,
    )


def persona_json(persona: Persona) -> dict[str, Any]:
    """What the page shows of a persona."""
    return {
        "name": persona.name,
        "display_name": persona.display_name,
        "description": persona.description,
        "traits": dict(persona.traits),
        "backstory": dict(persona.backstory),
        "instructions": persona.instructions,
        "wakeup": list(persona.wakeup),
    }


class PersonaLibrary:
    """The persona files in one folder, by name."""

    def __init__(self, directory: Path):
        self.directory = Path(directory)

    def names(self) -> list[str]:
        return list_personas(self.directory)

    def path(self, name: object) -> Path:
        """The file of an existing persona; PersonaError for a bad or unknown name."""
        path = persona_path(self.directory, check_name(name))
        if self.directory.resolve() not in path.resolve().parents:
            raise PersonaError(f"persona {name!r} is a link out of {self.directory}; it cannot be used here.")
        return path

    def read(self, name: object) -> Persona:
        return load_persona(self.path(name))

    def save(self, name: object, edit: PersonaEdit) -> Persona:
        """Write `edit` into persona `name`'s file (atomically, keeping comments); returns it as saved."""
        persona = self.read(name)
        updated = replace(
            persona,
            traits=dict(edit.traits),
            backstory=dict(edit.backstory),
            display_name=edit.display_name,
            instructions=edit.instructions,
            wakeup=list(edit.wakeup),
        )
        save_persona(updated)
        log.info("persona %s saved", persona.name)
        return load_persona(self.path(name))

    def _free(self, name: object) -> str:
        name = check_name(name)
        if name in self.names() or (self.directory / name).exists() or (self.directory / f"{name}.ini").exists():
            raise PersonaError(f"a persona named {name!r} already exists; pick another name.")
        return name

    def create(self, name: object, source: object) -> Path:
        """A new persona `name`, copied from persona `source` (comments and all)."""
        text = self.path(source).read_text(encoding="utf-8-sig")
        target = self.directory / self._free(name) / "persona.ini"
        try:
            write_atomic(target, text)
        except OSError as exc:
            raise PersonaError(f"cannot write {target} ({exc}); check the folder's permissions.") from exc
        log.info("persona %s created from %s", name, source)
        return target

    def rename(self, name: object, new_name: object) -> Path:
        """Rename persona `name` (its folder or its file) to `new_name`."""
        path = self.path(name)
        new_name = self._free(new_name)
        folder = path.name == "persona.ini"
        source = path.parent if folder else path
        target = self.directory / (new_name if folder else f"{new_name}.ini")
        try:
            os.rename(source, target)
        except OSError as exc:
            raise PersonaError(f"cannot rename {source} ({exc}); check the folder's permissions.") from exc
        log.info("persona %s renamed to %s", name, new_name)
        return target / "persona.ini" if folder else target

    def delete(self, name: object) -> Path:
        """Move persona `name` to `.trash/` in the persona folder; returns where it went."""
        path = self.path(name)
        source = path.parent if path.name == "persona.ini" else path
        trash = self.directory / ".trash"
        target = trash / f"{time.strftime('%Y%m%d-%H%M%S')}-{source.name}"
        try:
            trash.mkdir(exist_ok=True)
            os.rename(source, target)
        except OSError as exc:
            raise PersonaError(f"cannot move {source} to {trash} ({exc}); check the folder's permissions.") from exc
        log.info("persona %s deleted (moved to %s)", name, target)
        return target

"""Persona files: parsed into a `Persona`, and edited in place so comments and unknown keys survive.

Files from the original Billy B-Assistant load as they are. Billy rewrites only the lines he
changes, and every write is atomic (temp file + rename): a crash never leaves half a file.
"""

from __future__ import annotations

import configparser
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

from core.errors import PersonaError
from core.files import write_atomic
from core.persona.traits import DEFAULT_TRAIT, TRAITS, canonical_trait, coerce_trait_value, level

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Persona:
    """One persona as read from its file. Treat the dicts as read-only."""

    name: str
    """The persona's id: its folder or file name (`billy`)."""
    traits: dict[str, int]
    """All ten traits, 0–100."""
    backstory: dict[str, str] = field(default_factory=dict)
    display_name: str = "Billy"
    """`[META] name`: what Billy calls himself."""
    instructions: str = ""
    voice: str = ""
    """`[META] voice`: a voice hint; the TTS backend decides what it means."""
    mouth_articulation: int | None = None
    """`[META] mouth_articulation` 0–10, overriding MOUTH_ARTICULATION; None: use the setting."""
    description: str = ""
    wakeup: list[str] = field(default_factory=list)
    """`[WAKEUP]` phrases, in key order."""
    responses: dict[str, list[str]] = field(default_factory=dict)
    """`[RESPONSES]`: lines that replace Billy's stock ones (intents/<language>/responses.yaml),
    variants separated by `|`, e.g. `goodbye = Fair winds, matey! | Arr, be off with ye!`."""
    source: Path | None = None

    def level(self, trait: str) -> str:
        return level(self.traits[trait])


def _parser() -> configparser.ConfigParser:
    # No interpolation: instructions often contain "%"; not strict: a duplicated key is a hand-edit, not fatal.
    return configparser.ConfigParser(interpolation=None, strict=False, comment_prefixes=("#", ";"))


def _sort_key(key: str) -> tuple[int, str]:
    return (int(key), "") if key.isdigit() else (1 << 30, key)


def parse_persona(text: str, name: str, source: Path | None = None) -> Persona:
    """Read persona text. Raises PersonaError for a file that is not INI at all or has bad values."""
    where = str(source) if source else name
    parser = _parser()
    try:
        parser.read_string(text, source=where)
    except configparser.Error as exc:
        first = str(exc).splitlines()[0]
        raise PersonaError(
            f"{where} is not a valid persona file ({first}); fix it or copy personas/billy/persona.ini."
        ) from exc
    sections = {s.upper(): s for s in parser.sections()}
    if not sections:
        raise PersonaError(f"{where} has no sections; a persona needs at least [PERSONALITY] or [META].")

    traits = dict.fromkeys(TRAITS, DEFAULT_TRAIT)
    if "PERSONALITY" in sections:
        for key, raw in parser.items(sections["PERSONALITY"]):
            trait = canonical_trait(key)
            if trait is None:
                log.debug("%s: [PERSONALITY] %s is not one of Billy's traits; kept in the file, not used", where, key)
                continue
            try:
                value = float(raw.strip().rstrip("%"))
            except ValueError:
                try:
                    traits[trait] = coerce_trait_value(raw)
                except ValueError:
                    log.warning("%s: [PERSONALITY] %s = %r is not a number; using %d", where, key, raw, DEFAULT_TRAIT)
                continue
            clamped = max(0, min(100, round(value)))
            if clamped != value:
                log.warning("%s: [PERSONALITY] %s = %s is outside 0–100; using %d", where, key, raw.strip(), clamped)
            traits[trait] = clamped

    def section(title: str) -> dict[str, str]:
        return dict(parser.items(sections[title])) if title in sections else {}

    meta = section("META")
    mouth = None
    if meta.get("mouth_articulation", "").strip():
        raw = meta["mouth_articulation"].strip()
        try:
            mouth = max(0, min(10, round(float(raw))))
            if mouth != float(raw):
                log.warning("%s: [META] mouth_articulation = %s is outside 0–10; using %d", where, raw, mouth)
        except ValueError:
            log.warning("%s: [META] mouth_articulation = %r is not a number from 0 to 10; ignored", where, raw)
    wakeup_items = section("WAKEUP")
    wakeup = [wakeup_items[k].strip() for k in sorted(wakeup_items, key=_sort_key) if wakeup_items[k].strip()]
    return Persona(
        name=name,
        traits=traits,
        backstory={k: v.strip() for k, v in section("BACKSTORY").items() if v.strip()},
        display_name=meta.get("name", "").strip() or "Billy",
        instructions=" ".join(meta.get("instructions", "").split()),
        voice=meta.get("voice", "").strip(),
        mouth_articulation=mouth,
        description=meta.get("description", "").strip(),
        wakeup=wakeup,
        responses={
            key: variants
            for key, raw in section("RESPONSES").items()
            if (variants := [v.strip() for v in raw.split("|") if v.strip()])
        },
        source=source,
    )


def load_persona(path: Path) -> Persona:
    """Read a persona file; its id is the folder name for `persona.ini`, else the file's stem."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError as exc:
        raise PersonaError(f"Persona file {path} does not exist; create it or pick another PERSONA.") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise PersonaError(
            f"Persona file {path} cannot be read ({exc}); check its permissions and encoding (UTF-8)."
        ) from exc
    name = path.parent.name if path.name == "persona.ini" else path.stem
    return parse_persona(text, name, path)


# --- writing: edit lines in place so comments and unknown sections survive --------------


_SECTION_RE = re.compile(r"^\s*\[([^\]]+)\]\s*$")


_KEY_RE = re.compile(r"^([^\s=:#;\[][^=:]*?)\s*[=:]")


class IniText:
    """The lines of an INI file, edited key by key so everything else stays as written."""

    def __init__(self, text: str = ""):
        self.lines = text.splitlines()

    def _section_span(self, section: str) -> tuple[int, int] | None:
        start = None
        for i, line in enumerate(self.lines):
            match = _SECTION_RE.match(line)
            if not match:
                continue
            if start is not None:
                return start, i
            if match.group(1).strip().upper() == section.upper():
                start = i
        return (start, len(self.lines)) if start is not None else None

    def _key_span(self, section: str, key: str) -> tuple[int, int] | None:
        span = self._section_span(section)
        if span is None:
            return None
        i = span[0] + 1
        while i < span[1]:
            match = _KEY_RE.match(self.lines[i])
            if match and match.group(1).strip().lower() == key.lower():
                end = i + 1
                while end < span[1] and self.lines[end][:1] in (" ", "\t") and self.lines[end].strip():
                    end += 1  # continuation lines of a multi-line value
                return i, end
            i += 1
        return None

    def keys(self, section: str) -> list[str]:
        span = self._section_span(section)
        if span is None:
            return []
        found = []
        for line in self.lines[span[0] + 1 : span[1]]:
            match = _KEY_RE.match(line)
            if match and line[:1] not in (" ", "\t"):
                found.append(match.group(1).strip())
        return found

    def set(self, section: str, key: str, value: str) -> None:
        value_lines = str(value).replace("\r", "").split("\n")
        new = [f"{key} = {value_lines[0]}".rstrip()] + [f"    {v}" if v.strip() else "    ." for v in value_lines[1:]]
        existing = self._key_span(section, key)
        if existing:
            self.lines[existing[0] : existing[1]] = new
            return
        span = self._section_span(section)
        if span is None:
            if self.lines and self.lines[-1].strip():
                self.lines.append("")
            self.lines += [f"[{section}]", *new]
            return
        insert = span[1]
        while insert > span[0] + 1 and not self.lines[insert - 1].strip():
            insert -= 1  # keep the blank line(s) before the next section
        self.lines[insert:insert] = new

    def remove(self, section: str, key: str) -> None:
        existing = self._key_span(section, key)
        if existing:
            del self.lines[existing[0] : existing[1]]

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def render_persona(persona: Persona, original: str = "") -> str:
    """The file text for `persona`, changing only what differs from `original`."""
    ini = IniText(original)
    current = parse_persona(original, persona.name) if original.strip() else None
    existing_traits = {canonical_trait(k): k for k in ini.keys("PERSONALITY")}
    for trait in TRAITS:
        if current is None or current.traits[trait] != persona.traits[trait] or trait not in existing_traits:
            ini.set("PERSONALITY", existing_traits.get(trait) or trait, str(persona.traits[trait]))
    for key in ini.keys("BACKSTORY"):
        if key.lower() not in persona.backstory:
            ini.remove("BACKSTORY", key)
    for key, value in persona.backstory.items():
        if current is None or current.backstory.get(key) != value:
            ini.set("BACKSTORY", key, value)
    meta = {
        "name": persona.display_name,
        "description": persona.description,
        "instructions": persona.instructions,
        "voice": persona.voice,
        "mouth_articulation": "" if persona.mouth_articulation is None else str(persona.mouth_articulation),
    }
    old_meta = {} if current is None else {
        "name": current.display_name, "description": current.description, "instructions": current.instructions,
        "voice": current.voice,
        "mouth_articulation": "" if current.mouth_articulation is None else str(current.mouth_articulation),
    }  # fmt: skip
    for key, value in meta.items():
        if old_meta.get(key) != value and (value or key in [k.lower() for k in ini.keys("META")]):
            ini.set("META", key, value)
    if current is None or current.wakeup != persona.wakeup:
        for key in ini.keys("WAKEUP"):
            ini.remove("WAKEUP", key)
        for number, phrase in enumerate(persona.wakeup, start=1):
            ini.set("WAKEUP", str(number), phrase)
    return ini.text()


def save_persona(persona: Persona, path: Path | None = None) -> Path:
    """Write `persona` to `path` (default: its source) atomically, keeping comments and unknown keys."""
    target = Path(path or persona.source or "")
    if not str(target):
        raise PersonaError(f"Persona {persona.name!r} has no file to save to; give a path.")
    original = target.read_text(encoding="utf-8-sig") if target.exists() else ""
    try:
        write_atomic(target, render_persona(persona, original))
    except OSError as exc:
        raise PersonaError(f"Cannot write persona file {target} ({exc}); check the folder's permissions.") from exc
    return target


# --- the running persona ------------------------------------------------------------------

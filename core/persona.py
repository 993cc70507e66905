"""Personas: who Billy is, read from `personas/<name>/persona.ini` or `personas/<name>.ini`.

The file is the truth and people edit it by hand while Billy runs, so `PersonaStore.current()`
re-reads it whenever it changes on disk. Files from the original Billy B-Assistant load as
they are. Billy rewrites only the lines he changes, so comments, unknown sections and key
order survive, and every write is atomic (temp file + rename): a crash never leaves half a file.
"""

from __future__ import annotations

import configparser
import logging
import os
import re
import tempfile
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from core.config import PersonaSettings
from core.errors import PersonaError

log = logging.getLogger(__name__)

TRAITS: tuple[str, ...] = (
    "humor",
    "sarcasm",
    "honesty",
    "respectfulness",
    "optimism",
    "confidence",
    "warmth",
    "curiosity",
    "verbosity",
    "formality",
)
"""The ten traits, in the order they appear in files and in the system prompt."""

DEFAULT_TRAIT = 50
"""Value of a trait a file leaves out (older Billy files lack respectfulness and optimism)."""

LEVELS: tuple[str, ...] = ("min", "low", "med", "high", "max")
LEVEL_VALUES: Mapping[str, int] = {"min": 5, "low": 25, "med": 50, "high": 75, "max": 95}
"""The value a level name stands for: the middle of the level's range."""

_LEVEL_SYNONYMS: Mapping[str, str] = {
    "minimum": "min", "none": "min", "zero": "min", "off": "min", "very low": "min", "lowest": "min",
    "low": "low", "little": "low", "a little": "low", "slightly": "low",
    "med": "med", "medium": "med", "mid": "med", "middle": "med", "moderate": "med", "normal": "med",
    "average": "med", "balanced": "med",
    "high": "high", "lots": "high", "a lot": "high", "very": "high",
    "max": "max", "maximum": "max", "very high": "max", "highest": "max", "full": "max", "extreme": "max",
    "min": "min",
}  # fmt: skip

_TRAIT_SYNONYMS: Mapping[str, str] = {
    "humour": "humor", "funny": "humor", "funniness": "humor", "jokes": "humor", "joking": "humor",
    "humorous": "humor", "humourous": "humor", "comedy": "humor", "wit": "humor", "witty": "humor",
    "sarcastic": "sarcasm", "sarcasticness": "sarcasm", "snark": "sarcasm", "snarky": "sarcasm",
    "snarkiness": "sarcasm", "irony": "sarcasm", "ironic": "sarcasm",
    "honest": "honesty", "truthfulness": "honesty", "truthful": "honesty", "truth": "honesty",
    "respect": "respectfulness", "respectful": "respectfulness", "politeness": "respectfulness",
    "polite": "respectfulness", "manners": "respectfulness", "courtesy": "respectfulness",
    "optimistic": "optimism", "positivity": "optimism", "positive": "optimism", "cheerfulness": "optimism",
    "cheerful": "optimism",
    "confident": "confidence", "self confidence": "confidence", "assertiveness": "confidence",
    "assertive": "confidence", "cockiness": "confidence", "cocky": "confidence",
    "warm": "warmth", "kindness": "warmth", "kind": "warmth", "friendliness": "warmth",
    "friendly": "warmth", "empathy": "warmth", "empathetic": "warmth",
    "curious": "curiosity", "inquisitiveness": "curiosity", "inquisitive": "curiosity",
    "verbose": "verbosity", "talkative": "verbosity", "talkativeness": "verbosity", "chattiness": "verbosity",
    "chatty": "verbosity", "wordiness": "verbosity", "wordy": "verbosity", "length": "verbosity",
    "formal": "formality", "formalness": "formality", "posh": "formality", "poshness": "formality",
}  # fmt: skip

_NUMBER_WORDS: Mapping[str, int] = {
    "zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
    "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15,
    "sixteen": 16, "seventeen": 17, "eighteen": 18, "nineteen": 19, "twenty": 20, "thirty": 30,
    "forty": 40, "fourty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80, "ninety": 90,
    "hundred": 100, "half": 50,
}  # fmt: skip

_RELATIVE_STEP = 20
"""How far "more" / "less" move a trait."""


def level(value: int) -> str:
    """The level name of a trait value: min <15, low <35, med <65, high <85, else max."""
    if value < 15:
        return "min"
    if value < 35:
        return "low"
    if value < 65:
        return "med"
    if value < 85:
        return "high"
    return "max"


def canonical_trait(name: str) -> str | None:
    """The trait a name means ("Humour", "sarcastic", "talkativeness" ...), or None."""
    key = re.sub(r"[\s_\-]+", " ", str(name)).strip().lower()
    if key in TRAITS:
        return key
    return _TRAIT_SYNONYMS.get(key) or _TRAIT_SYNONYMS.get(key.replace(" ", ""))


def _words_to_number(text: str) -> int | None:
    words = [w for w in re.split(r"[\s\-]+", text) if w and w != "and" and w != "a"]
    if not words or any(w not in _NUMBER_WORDS for w in words):
        return None
    total = 0
    for word in words:
        value = _NUMBER_WORDS[word]
        if value == 100:
            total = (total or 1) * 100
        else:
            total += value
    return total


def coerce_trait_value(value: object, current: int | None = None) -> int:
    """Turn what a model or a person wrote into 0–100, clamped.

    Accepts numbers, "90", "90%", "ninety percent", level names ("high", "maximum"), and,
    when `current` is given, relative changes ("+20", "more", "less"). Raises ValueError
    with a sentence saying what is allowed.
    """
    if isinstance(value, bool):
        raise ValueError("use a number from 0 to 100 or a level name (min, low, med, high, max), not true/false")
    if isinstance(value, int | float):
        return max(0, min(100, round(value)))
    if isinstance(value, Mapping):
        for key in ("value", "level", "amount", "new_value", "setting"):
            if key in value:
                return coerce_trait_value(value[key], current)
        raise ValueError("use a number from 0 to 100 or a level name (min, low, med, high, max)")
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not a trait value: use a number from 0 to 100 or min, low, med, high, max")
    text = value.strip().lower()
    text = re.sub(r"\s*(%|percent|per cent|pct)\.?$", "", text).strip()
    relative = re.fullmatch(r"([+-])\s*(\d+(?:\.\d+)?)", text)
    if relative and current is not None:
        step = float(relative.group(2))
        return max(0, min(100, round(current + step if relative.group(1) == "+" else current - step)))
    try:
        return max(0, min(100, round(float(text))))
    except ValueError:
        pass
    words = _words_to_number(text)
    if words is not None:
        return max(0, min(100, words))
    if text in _LEVEL_SYNONYMS:
        return LEVEL_VALUES[_LEVEL_SYNONYMS[text]]
    if current is not None:
        if text in ("more", "higher", "increase", "up", "raise", "increased", "more please"):
            return min(100, current + _RELATIVE_STEP)
        if text in ("less", "lower", "decrease", "down", "reduce", "decreased", "reduced"):
            return max(0, current - _RELATIVE_STEP)
    raise ValueError(f"{value!r} is not a trait value: use a number from 0 to 100 or min, low, med, high, max")


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


def write_atomic(path: Path, text: str) -> None:
    """Write via a temp file in the same folder and `os.replace`, so readers see old or new, never half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        if path.exists():
            os.chmod(tmp, path.stat().st_mode & 0o777)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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
        self.revision = 0
        """Goes up by one each time the persona changes (reload or update), so callers can rebuild prompts."""

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
            if persona != self._persona:
                log.info("Persona file %s changed; reloaded", self.path)
                self._persona = persona
                self.revision += 1
            return self._persona

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
            if persona != old:
                self._persona = persona
                self.revision += 1
            log.info("Personality updated: %s", ", ".join(f"{k}={v}" for k, v in new_values.items()))
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
            return
        self._signature = self._stat()
        self._bad_signature = None

    def list_personas(self) -> list[str]:
        return list_personas(self._directory)

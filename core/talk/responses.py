"""What Billy says when he carries out a command himself: stock lines kept as data, in his persona's voice.

The lines live in `intents/<language>/responses.yaml`, a few variants each; a persona's
`[RESPONSES]` section replaces any of them. Slots in braces (`{title}`) are filled in.
"""

from __future__ import annotations

import random
import string
from collections.abc import Mapping
from pathlib import Path

import yaml

from core.errors import BillyError
from core.persona.ini import Persona
from core.talk.intents import INTENTS_DIR


class Responses:
    """Billy's stock lines for one language."""

    def __init__(self, language: str = "en", folder: Path = INTENTS_DIR, rng: random.Random | None = None):
        path = Path(folder) / language / "responses.yaml"
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise BillyError(f"Billy's lines in {path} cannot be read ({exc}); fix or restore the file.") from exc
        self._lines: dict[str, list[str]] = {k: list(v) for k, v in (data.get("responses") or {}).items() if v}
        self._rng = rng or random.Random()

    def line(self, key: str, persona: Persona | None = None, **slots: object) -> str:
        """One variant of line `key` (the persona's own when it has one), its slots filled in."""
        variants = (persona.responses.get(key) if persona else None) or self._lines.get(key)
        if not variants:
            raise KeyError(f"no line {key!r} in responses.yaml")
        return _fill(self._rng.choice(variants), slots)

    def keys(self) -> list[str]:
        return sorted(self._lines)


def _fill(template: str, slots: Mapping[str, object]) -> str:
    """`str.format` that leaves unknown slots out instead of raising (a persona's line may name one we lack)."""
    names = {name for _, name, _, _ in string.Formatter().parse(template) if name}
    return template.format(**{name: slots.get(name, "") for name in names})

"""Has the speaker finished? Decided by meaning as well as by silence.

A transcript that ends on a word that leaves the phrase open ("next to the", "and", "set
the") or trails off ("...") is unfinished: Billy waits out the whole pause tolerance in case
more is coming. A finished sentence, or any command the templates recognise, may be
answered as soon as the end silence has passed. The word lists are data, per language.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from core.errors import BillyError
from core.talk.intents import INTENTS_DIR

FILE = "turn_endings.yaml"  # one of intents.NOT_TEMPLATES


class TurnEndings:
    """Tells a finished request from one cut off mid-phrase, from its words alone (microseconds)."""

    def __init__(self, language: str = "en", folder: Path = INTENTS_DIR):
        path = Path(folder) / language / FILE
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise BillyError(f"The turn endings in {path} cannot be read ({exc}); fix or restore the file.") from exc
        self._always = _words(data.get("always_open"))
        self._unless_asked = _words(data.get("open_unless_asked"))
        self._pairs = {str(p).lower() for p in data.get("open_pairs") or []}
        self._marks = tuple(str(m) for m in data.get("trailing_marks") or ())

    def finished(self, text: str) -> bool:
        """True when `text` reads as a whole request or question, not a phrase cut off mid-way."""
        stripped = text.strip()
        if not stripped or stripped.endswith(self._marks):
            return False
        words = re.findall(r"[a-z0-9']+", stripped.lower())
        if not words or words[-1] in self._always or " ".join(words[-2:]) in self._pairs:
            return False
        return stripped.endswith("?") or words[-1] not in self._unless_asked


def _words(groups: object) -> set[str]:
    """The words of a YAML mapping of word lists (quoted, since YAML reads a bare `no` as false)."""
    if not isinstance(groups, dict):
        return set()
    return {str(word).lower() for group in groups.values() for word in group or []}

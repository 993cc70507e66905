"""Billy's own commands, recognised from sentence templates before any model is asked.

What people say is data: `intents/<language>/*.yaml` in hassil's template syntax (Home
Assistant's own matcher: alternatives, optional words, lists, spoken numbers). This module
loads them, matches a transcript, and turns the match into the tool call it stands for,
with absolute trait values ("a bit more sarcastic" is sarcasm + 10 from where it is now).
A request for several traits ("funnier and less sarcastic") is matched clause by clause.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from hassil import Intents, recognize_all
from hassil.models import MatchEntity
from hassil.util import merge_dict

from core.config import ROOT
from core.errors import BillyError
from core.interfaces import SongBook
from core.persona.traits import LEVEL_VALUES, TRAITS

log = logging.getLogger(__name__)

INTENTS_DIR = ROOT / "intents"
NOT_TEMPLATES = frozenset({"responses.yaml", "turn_endings.yaml"})
"""Files beside the templates that hold other language data: Billy's lines and the open-ended words."""
STEPS: Mapping[str, int] = {"small": 10, "normal": 20, "large": 35}
"""How far "a bit more", "more" and "a lot more" move a trait."""
WAY: Mapping[str, int] = {"max": 100, "min": 0}
"""Where "all the way up" and "all the way down" put a trait."""
ADVICE = "BillyAdvice"
"""A question about whether to do something (or another plain question): only the brain answers it."""
HOME = "BillyHomeCommand"
"""Looks like a smart-home command: said so when Home Assistant cannot be asked."""
_CLAUSE_PREFIX = "BillyTraitClause"
_PRIORITY = ("BillyTrait", "BillyPlayAnySong", "BillyPlaySong", "BillyGoodbye", ADVICE, HOME)
"""Which intent wins when a sentence matches several: Billy's own commands first."""
_FILLER = re.compile(r"\W*(?:please|thanks|thank you|billy|ok|okay|now)?\W*", re.IGNORECASE)
"""A part of a request that adds nothing ("..., please.")."""
_SPLIT = re.compile(r"\s*(?:,|;|\band then\b|\band also\b|\band\b|\bbut\b|\bplus\b)\s*", re.IGNORECASE)


@dataclass(frozen=True)
class Recognized:
    """A template match: the intent, and the tool call it stands for (None: not a tool)."""

    intent: str
    tool: str | None = None
    arguments: dict[str, Any] = field(default_factory=dict)


class SentenceTemplates:
    """Billy's sentence templates for one language; `recognize` takes about a millisecond."""

    def __init__(self, language: str = "en", folder: Path = INTENTS_DIR):
        self.language = language
        self.folder = Path(folder) / language
        merged: dict[str, Any] = {}
        files = sorted(p for p in self.folder.glob("*.yaml") if p.name not in NOT_TEMPLATES)
        if not files:
            raise BillyError(f"No sentence templates in {self.folder}: restore intents/ from the repository.")
        for path in files:
            try:
                merge_dict(merged, yaml.safe_load(path.read_text(encoding="utf-8")) or {})
            except (OSError, yaml.YAMLError) as exc:
                raise BillyError(f"The sentence templates {path} cannot be read ({exc}); fix or restore it.") from exc
        clauses = {k: v for k, v in merged.get("intents", {}).items() if k.startswith(_CLAUSE_PREFIX)}
        whole = {k: v for k, v in merged.get("intents", {}).items() if not k.startswith(_CLAUSE_PREFIX)}
        try:
            self._intents = Intents.from_dict({**merged, "intents": whole})
            self._clauses = Intents.from_dict({**merged, "intents": {**whole, **clauses}})
        except Exception as exc:  # hassil raises several kinds for a bad template
            raise BillyError(f"The sentence templates in {self.folder} are invalid ({exc}); fix them.") from exc
        # hassil builds its matchers on first use (about 100 ms): pay that now, not on the first turn.
        self.recognize("be funnier and set your sarcasm to fifty percent, thanks", dict.fromkeys(TRAITS, 50))

    def recognize(self, text: str, traits: Mapping[str, int], songs: SongBook | None = None) -> Recognized | None:
        """The command `text` stands for, with `traits` the persona's current values; None when none."""
        text = " ".join(text.split())
        if not text:
            return None
        found = self._best(text, self._intents, traits, songs)
        if found is not None and found.tool is not None and found.tool != "update_personality":
            return found
        found = self._several_traits(text, traits) or found
        if found is None or found.tool is None:
            found = self._first_clause(text, traits, songs) or found
        return found

    def _best(
        self, text: str, intents: Intents, traits: Mapping[str, int], songs: SongBook | None
    ) -> Recognized | None:
        matches = list(recognize_all(text, intents))
        for prefix in _PRIORITY:
            for match in matches:
                name = match.intent.name
                if not name.startswith(prefix) and not (prefix == "BillyTrait" and name.startswith(_CLAUSE_PREFIX)):
                    continue
                found = self._command(name, match.entities, traits, songs)
                if found is not None:
                    return found
        return None

    def _command(
        self, name: str, entities: Mapping[str, MatchEntity], traits: Mapping[str, int], songs: SongBook | None
    ) -> Recognized | None:
        values = {key: entity.value for key, entity in entities.items()}
        if name.startswith("BillyTrait"):
            change = _trait_change(name, values, traits)
            return None if change is None else Recognized(name, "update_personality", change)
        if name == "BillyPlaySong":
            song = songs.find(str(values.get("song", ""))) if songs is not None else None
            return None if song is None else Recognized(name, "play_song", {"song": song.title})
        if name == "BillyPlayAnySong":
            return Recognized(name, "play_song", {"song": ""})
        if name == "BillyGoodbye":
            return Recognized(name, "end_conversation")
        return Recognized(name)

    def _first_clause(self, text: str, traits: Mapping[str, int], songs: SongBook | None) -> Recognized | None:
        """ "Be less gloomy, it's a lovely day": a command, then a comment after a comma."""
        first, comma, rest = text.partition(",")
        if not comma or not rest.strip() or "?" in rest:
            return None  # "be honest, do I look good?" asks something: it is not a command
        found = self._best(first, self._intents, traits, songs)
        return found if found is not None and found.tool is not None else None

    def _several_traits(self, text: str, traits: Mapping[str, int]) -> Recognized | None:
        """ "set humor to ninety and sarcasm to twenty": every clause must be a trait change."""
        parts = [p for p in _SPLIT.split(text) if p and not _FILLER.fullmatch(p)]
        if len(parts) < 2:
            return None
        first = self._best(parts[0], self._intents, traits, None)
        if first is None or first.tool != "update_personality":
            return None
        changes = dict(first.arguments)
        for part in parts[1:]:
            found = self._best(part, self._clauses, {**traits, **changes}, None)
            if found is None or found.tool != "update_personality":
                return None
            changes.update(found.arguments)
        return Recognized(first.intent, "update_personality", changes)


def _trait_change(name: str, values: Mapping[str, Any], traits: Mapping[str, int]) -> dict[str, int] | None:
    """{trait: new value} for one trait intent's slots, or None when the slots make no sense."""
    trait, pull = _trait_and_pull(values)
    if trait is None or trait not in traits:
        return None
    if "value" in values:
        return {trait: _clamp(values["value"])}
    if "level" in values:
        return {trait: LEVEL_VALUES[str(values["level"])]}
    if "way" in values:
        way = str(values["way"])
        if pull < 0:  # "as serious as possible" is humor all the way down
            way = "min" if way == "max" else "max"
        return {trait: WAY[way]}
    step = STEPS.get(str(values.get("step", "normal")), STEPS["normal"])
    sign = -1 if "Less" in name else 1
    return {trait: _clamp(traits[trait] + sign * pull * step)}


def _trait_and_pull(values: Mapping[str, Any]) -> tuple[str | None, int]:
    """The trait a match names, and +1 or -1 for the way its adjective or adverb pulls (nouns pull up)."""
    if "trait" in values:
        return str(values["trait"]), 1
    word = str(values.get("adj") or values.get("cmp") or values.get("adv") or "")
    trait, _, sign = word.partition(":")
    return (trait or None), (-1 if sign == "-" else 1)


def _clamp(value: Any) -> int:
    return max(0, min(100, round(float(value))))

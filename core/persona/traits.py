"""The ten traits, their levels, and what people and models write for them ("sarcastic", "ninety percent", "more")."""

from __future__ import annotations

import re
from collections.abc import Mapping

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

"""Every reply must sound like Billy talking: no prompt, tool or meta text, no scripts, lists or markup, no rerun.

Small models leak: they recite their instructions ("Answer in one or two short sentences"),
write dialogue scripts ("A: ... B: ..."), talk about "the user" or being an AI, or repeat the
previous answer word for word. The guard judges each sentence before it is spoken, so a bad
reply is caught before any of it is heard (the turn then samples once more, then says a line
of Billy's own), and a reply that goes bad halfway is cut where it went bad.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterable

NGRAM = 6
"""Words in a row shared with an instruction text that make a sentence a leak."""
SAME_AS_BEFORE = 0.85
"""Similarity (0-1) to a sentence of the previous answer, or to the question, that makes a rerun or an echo."""

_META = re.compile(
    r"|".join(
        (
            r"\bas an? (?:[\w-]+ ){0,3}(?:ai|a\.i\.|artificial intelligence|language model|llm|chat ?bot|"
            r"(?:virtual |digital |ai )?assistant)\b",
            r"\b(?:i am|i'm) (?:just )?an? (?:ai|a\.i\.|artificial intelligence|language model|chat ?bot)\b",
            r"\blanguage model\b|\bsystem prompt\b|\bmy (?:instructions|programming|prompt|training data)\b",
            r"\bstay(?:s|ing)? in character\b|\bpersona card\b|\bpersonality traits?\b|\btrait rules?\b",
            r"\bthe (?:user|assistant)\b|\busers? who\b|\bprimary function\b",
            r"\b(?:tool|function) (?:calls?|results?|outputs?)\b|\bcall(?:ing)? (?:the|a) (?:tool|function)\b",
            r"\b(?:smart_home_command|update_personality|play_song|end_conversation)\b|\bjson\b",
            r"\bhome assistant'?s (?:response|answer|reply)\b|\bresult of (?:the )?\w+\b",
            r"\b(?:the )?conversation (?:ends|is over|has ended|will end)\b|\bstops? listening\b",
            r"\b(?:your|my|the) (?:answer|reply|response) (?:must|should)\b|\bmust contain\b",
            r"\bin one or two (?:short )?sentences\b|\bword count\b",
            r"<\|?im_(?:start|end)\|?>|<\|[^|]*\|>|\[/?INST\]",
        )
    ),
    re.IGNORECASE,
)
_SCRIPT = re.compile(
    r"(?:^|\n|[.!?]\s+)\s*(?:[AB]|Q|User|Assistant|Human|AI|Bot|Billy|System|Speaker \d|Person \d|Customer|"
    r"Response|Answer|Reply|Output|Note|Example|Instruction)\s*:",
    re.IGNORECASE,
)
_MARKUP = re.compile(r"(?:^|\n)\s*(?:[-*•#>]|\d+[.)])\s|\*\*|__|```|`|#{1,6}\s|\[[^\]]*\]\([^)]*\)|https?://|www\.")


class ReplyGuard:
    """Judges sentences of a reply. `instructions` returns the texts no reply may recite."""

    def __init__(self, instructions: Callable[[], Iterable[str]]):
        self._instructions = instructions

    def check(self, sentence: str, spoken: str = "", previous: str = "", question: str = "") -> str | None:
        """Why `sentence` must not be spoken (None: it may).

        `spoken`: what this reply has said so far; `previous`: the answer before this one;
        `question`: what the person asked (a reply that only echoes it says nothing).
        """
        text = sentence.strip()
        if not re.search(r"[^\W\d_]", text):
            return "no words"
        if match := _META.search(text):
            return f"meta text ({match.group(0)!r})"
        if _SCRIPT.search(text):
            return "a dialogue script"
        if _MARKUP.search(text):
            return "a list or markup"
        if leak := self._leak(text):
            return f"recites its instructions ({leak!r})"
        if not spoken:
            words = _words(text)
            if len(words) >= 4 and any(_similar(words, _words(s)) for s in _sentences(previous)):
                return "repeats the previous answer"
            if len(words) >= 3 and _similar(words, _words(question)):
                return "echoes the question"
        return None

    def _leak(self, text: str) -> str:
        words = _words(text)
        if len(words) < NGRAM:
            return ""
        grams = {tuple(words[i : i + NGRAM]) for i in range(len(words) - NGRAM + 1)}
        for source in self._instructions():
            source_words = _words(source)
            for i in range(len(source_words) - NGRAM + 1):
                gram = tuple(source_words[i : i + NGRAM])
                if gram in grams:
                    return " ".join(gram)
        return ""


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9']+", text.lower())


def _sentences(text: str) -> list[str]:
    return [s for s in re.split(r"(?<=[.!?…])\s+", text) if s.strip()]


def _similar(a: list[str], b: list[str]) -> bool:
    return bool(a and b) and difflib.SequenceMatcher(None, a, b).ratio() >= SAME_AS_BEFORE

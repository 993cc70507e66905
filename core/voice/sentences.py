"""Cuts a streamed reply into pieces the voice can start on, as soon as each is complete.

Text-to-speech starts on the first complete sentence, so the cut must come early but never
inside "Mr. Bass", "3.14", "e.g. this" or a numbered list item. To cut the wait for the first
sound further, the first piece of a reply may end at a clause boundary (comma, semicolon,
colon, dash) once it holds a few words, and a first sentence that runs on with no boundary is
cut before a joining word ("that", "because", "and") or, failing one, after a dozen words;
later pieces are whole sentences.

Pure: the same text gives the same pieces however it is split into deltas.
"""

from __future__ import annotations

import re

TERMINALS = ".!?…"
CLOSERS = "\"'”’)]}»*_"
"""Characters that may follow a sentence's final punctuation and still belong to it."""
CLAUSE_MARKS = ",;:"
DASHES = "—–"

NEVER_FINAL = frozenset(
    {"mr", "mrs", "ms", "dr", "prof", "st", "mt", "capt", "col", "gen", "lt", "sgt", "rev", "hon", "fr"}
    | {"e.g", "i.e", "vs", "cf", "approx", "no", "nos", "fig", "vol", "ch", "pp", "ca", "est", "dept", "univ"}
)
"""Abbreviations after which a full stop never ends a sentence (the next word belongs to them)."""
JOINERS = frozenset(
    {"that", "which", "who", "whose", "when", "where", "while", "because", "since", "although", "though"}
    | {"and", "but", "or", "so", "if", "unless", "until", "before", "after", "than", "whereas"}
)
"""Words a long first piece may be cut before: the voice pauses there naturally."""
MAYBE_FINAL = frozenset({"etc", "a.m", "p.m", "inc", "ltd", "co", "corp", "jr", "sr", "u.s", "u.k", "al"})
"""Abbreviations that end a sentence only when a capital letter follows."""


class SentenceSplitter:
    """Feed it text deltas of one reply; it hands back complete pieces in order.

    Make one per reply (or call `reset`): only the first piece may end at a clause.
    """

    def __init__(self, first_clause_words: int = 4, max_chars: int = 300, first_max_words: int = 12):
        """`first_clause_words`: words the first piece needs before a clause boundary may end it
        (0 turns clause cuts off); `max_chars`: a piece with no boundary is cut at a space by then;
        `first_max_words`: the first piece is cut by then even without a boundary."""
        self.first_clause_words = first_clause_words
        self.max_chars = max_chars
        self.first_max_words = first_max_words
        self.reset()

    def reset(self) -> None:
        self._buf = ""
        self._emitted = 0

    def feed(self, delta: str) -> list[str]:
        """Add streamed text; returns the pieces it completed (possibly none)."""
        self._buf += delta
        return self._take()

    def flush(self) -> list[str]:
        """The reply is over: return what is left as the last piece(s)."""
        pieces = self._take()
        rest, self._buf = self._buf, ""
        return pieces + self._keep(rest)

    # --- cutting --------------------------------------------------------------------------

    def _take(self) -> list[str]:
        pieces: list[str] = []
        while True:
            cut = self._next_cut()
            if cut is None:
                return pieces
            piece, self._buf = self._buf[:cut], self._buf[cut:]
            pieces.extend(self._keep(piece))

    def _keep(self, piece: str) -> list[str]:
        """A piece worth saying: stripped, and holding at least one letter or digit."""
        piece = " ".join(piece.split())
        if not any(ch.isalnum() for ch in piece):
            return []
        self._emitted += 1
        return [piece]

    def _next_cut(self) -> int | None:
        """Index just past the first complete piece in the buffer, or None to wait for more text."""
        buf, n = self._buf, len(self._buf)
        first = self._emitted == 0 and self.first_clause_words > 0
        words = 0
        i = 0
        while i < n:
            ch = buf[i]
            if ch == "\n":
                return i + 1
            if first and ch.isspace() and i > 0 and not buf[i - 1].isspace():
                words += 1
                if words == self.first_max_words:
                    return self._joiner_cut(buf[:i]) or i + 1
            if ch in TERMINALS:
                end = i
                while end < n and buf[end] in TERMINALS:
                    end += 1
                after = end
                while after < n and buf[after] in CLOSERS:
                    after += 1
                if after >= n:
                    return None
                if buf[after].isspace():
                    final = self._is_final(buf, i, end, after)
                    if final is None:
                        return None
                    if final:
                        return after
                i = after
                continue
            if first and (ch in CLAUSE_MARKS or ch in DASHES or (ch == "-" and buf[i - 1 : i] == " ")):
                if i + 1 >= n:
                    return None
                if (buf[i + 1].isspace() or ch in DASHES) and len(buf[:i].split()) >= self.first_clause_words:
                    return i + 1
            if i >= self.max_chars:
                space = buf.rfind(" ", 0, i)
                return space + 1 if space > 0 else i
            i += 1
        return None

    def _joiner_cut(self, head: str) -> int | None:
        """Index of the last joining word in `head` that has `first_clause_words` words before it."""
        spans = [(m.start(), m.group().lower().strip("\"'“‘(")) for m in re.finditer(r"\S+", head)]
        for start, word in reversed(spans[self.first_clause_words :]):
            if word in JOINERS:
                return start
        return None

    @staticmethod
    def _is_final(buf: str, start: int, end: int, after: int) -> bool | None:
        """Does the punctuation `buf[start:end]`, followed by whitespace at `after`, end a sentence?

        None when it depends on the next word, which has not arrived yet.
        """
        marks = buf[start:end]
        if "!" in marks or "?" in marks:
            return True
        following = buf[after:].lstrip()

        def capital_follows() -> bool | None:
            if not following:
                return None
            return following[0].isupper() or following[0] in "\"'“‘(["

        if marks != ".":
            return capital_follows()  # an ellipsis ends a sentence only before a new one
        word_start = max(buf.rfind(" ", 0, start), buf.rfind("\n", 0, start), buf.rfind("(", 0, start)) + 1
        word = buf[word_start:start].lower().strip("\"'“‘")
        line = buf[buf.rfind("\n", 0, start) + 1 : start].strip()
        if line.isdigit() and len(line) <= 3:
            return False  # "2. Eggs": a numbered list item
        if word in NEVER_FINAL or (len(word) == 1 and word.isalpha() and buf[start - 1].isupper() and word != "i"):
            return False  # "Dr. Who", "J. R. R. Tolkien"
        if word in MAYBE_FINAL:
            return capital_follows()
        return True

"""Conversation history for one session, bounded by an estimate of tokens.

The system prompt is not kept here: it is rebuilt each step so persona edits apply on the
next turn. When the history grows past its budget the oldest exchanges go first, and a
tool result never survives without the assistant message that asked for it.
"""

from __future__ import annotations

import json
from typing import Any

from core.interfaces import Message

CHARS_PER_TOKEN = 4
"""A rough, model-independent estimate; good enough to keep a small context from overflowing."""


def estimate_tokens(message: Message) -> int:
    text = str(message.get("content") or "")
    if message.get("tool_calls"):
        text += json.dumps(message["tool_calls"], default=str)
    return len(text) // CHARS_PER_TOKEN + 4


class History:
    def __init__(self, max_tokens: int):
        self.max_tokens = max_tokens
        self._messages: list[Message] = []

    def add(self, message: dict[str, Any]) -> None:
        self._messages.append(message)
        self._trim()

    def clear(self) -> None:
        self._messages.clear()

    def snapshot(self) -> list[Message]:
        """The messages as they are now, for `restore` when a turn is taken back."""
        return list(self._messages)

    def restore(self, snapshot: list[Message]) -> None:
        self._messages = list(snapshot)

    def messages(self) -> list[Message]:
        return list(self._messages)

    def tokens(self) -> int:
        return sum(estimate_tokens(m) for m in self._messages)

    def _trim(self) -> None:
        # Keep at least the newest message; drop from the front, then any orphaned tool results.
        while len(self._messages) > 1 and self.tokens() > self.max_tokens:
            self._messages.pop(0)
            while len(self._messages) > 1 and self._messages[0].get("role") in ("tool", "assistant"):
                self._messages.pop(0)

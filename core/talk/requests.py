"""What others ask of Billy (say, song, command), and the one bounded queue announcements wait in.

MQTT and the web page turn their messages into these requests; the app acts on commands at
once and lets announcements and songs wait here, one at a time, while Billy is busy.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from dataclasses import dataclass

log = logging.getLogger(__name__)

COMMANDS = ("shutdown", "restart", "listen", "stop")
_PREVIEW_CHARS = 60


@dataclass(frozen=True)
class SayRequest:
    """Something to say: `text` as is, or (prompt=True) a prompt Billy answers in character."""

    text: str
    prompt: bool = False
    interactive: bool = False
    """Listen for an answer after speaking (opens a conversation)."""


@dataclass(frozen=True)
class CommandRequest:
    command: str
    """One of `COMMANDS`."""


@dataclass(frozen=True)
class SongRequest:
    song: str
    """A song name as given; the song library resolves it."""


Request = SayRequest | CommandRequest | SongRequest


# --- payload parsing: pure functions, each rejection a PayloadError with the reason ---------


def preview(text: str) -> str:
    """A short, printable quote of untrusted text for a log line."""
    if len(text) > _PREVIEW_CHARS:
        text = text[:_PREVIEW_CHARS] + "…"
    return repr(text)


def describe(item: Request) -> str:
    """A short name for a request in a log line."""
    if isinstance(item, SayRequest):
        kind = "prompt" if item.prompt else "say"
        return f"{kind} {preview(item.text)}"
    if isinstance(item, CommandRequest):
        return f"command {item.command!r}"
    return f"song {preview(item.song)}"


# --- the queue the voice loop consumes ----------------------------------------------------


class RequestQueue:
    """Bounded FIFO of inbound requests, used on the asyncio loop only.

    When full, the OLDEST waiting request is dropped with a warning naming it: a burst of
    announcements keeps the newest ones, and nothing disappears without a log line.
    """

    def __init__(self, maxsize: int = 20):
        if maxsize < 1:
            raise ValueError("RequestQueue maxsize must be at least 1")
        self.maxsize = maxsize
        self.dropped = 0
        """How many requests were dropped because the queue was full."""
        self._items: deque[Request] = deque()
        self._ready = asyncio.Event()

    def qsize(self) -> int:
        return len(self._items)

    def put_nowait(self, item: Request) -> None:
        if len(self._items) >= self.maxsize:
            oldest = self._items.popleft()
            self.dropped += 1
            log.warning("announcement queue full (%d waiting): dropped the oldest, %s", self.maxsize, describe(oldest))
        self._items.append(item)
        self._ready.set()

    async def get(self) -> Request:
        while not self._items:
            self._ready.clear()
            await self._ready.wait()
        return self._items.popleft()


# --- the bridge -----------------------------------------------------------------------------

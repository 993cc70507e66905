"""The page's picture of Billy, kept up to date from the channel, and the browsers that follow it.

The channel's thread hands every event to `Hub.on_event`; the hub keeps what a browser
needs when it opens the page (state, last turn, persona, songs, recent log lines) and
passes each event on to every browser's bounded queue. A browser that falls behind is
dropped; its EventSource reconnects by itself and starts again from a fresh snapshot.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections import deque
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from core.web.processes import VOICE_LOCK, VOICE_LOG, ProcessLock
from core.web.taps import LOG_LINES

BROWSER_QUEUE = 1000
"""Events waiting for one browser before it is dropped."""
_KEPT = ("state", "ready", "pid", "last_turn", "persona", "personas", "songs", "simulated_audio", "simulated_pins")


class Follower:
    """One browser's queue of events; `None` in it means "you were dropped"."""

    def __init__(self, audio: bool):
        self.audio = audio
        self.queue: queue.Queue[dict[str, Any] | None] = queue.Queue(BROWSER_QUEUE)
        self.dropped = False


class Hub:
    """What the page knows of Billy, and the browsers following him."""

    def __init__(self, runtime_dir: Path, secrets: Iterable[str] = ()):
        self.runtime_dir = Path(runtime_dir)
        self._secrets = sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True)
        self._lock = threading.Lock()
        self._billy: dict[str, Any] = {}
        self._running = False
        self._logs: deque[dict[str, Any]] = deque(maxlen=LOG_LINES)
        self._followers: set[Follower] = set()

    # --- from the channel -----------------------------------------------------------------

    def on_event(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        with self._lock:
            if kind == "hello":
                self._running = True
                self._billy = {key: message.get(key) for key in _KEPT}
                self._logs = deque(message.get("logs") or [], maxlen=LOG_LINES)
                message = self._snapshot_locked()
            elif kind == "gone":
                self._running = False
                self._billy = {**self._billy, "state": "offline", "ready": False}
                message = self._snapshot_locked()
            elif kind == "state":
                self._billy["state"] = message.get("state")
            elif kind == "turn":
                self._billy["last_turn"] = {k: v for k, v in message.items() if k not in ("type", "now")}
            elif kind == "persona":
                self._billy["persona"] = message.get("persona")
                self._billy["personas"] = message.get("personas")
            elif kind == "log":
                self._logs.append(message)
            followers = list(self._followers)
        for follower in followers:
            if kind == "audio" and not follower.audio:
                continue
            try:
                follower.queue.put_nowait(message)
            except queue.Full:
                self._drop(follower)

    # --- for the views --------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._running

    def status(self) -> dict[str, Any]:
        """Is Billy there: running (connected), starting (his process is up, not ready yet), or down."""
        with self._lock:
            ready = bool(self._running and self._billy.get("ready"))
            voice = ProcessLock(self.runtime_dir, VOICE_LOCK)
            starting = not ready and (self._running or voice.held_elsewhere())
            return {
                "running": ready,
                "starting": starting,
                "state": self._billy.get("state") if ready else ("starting" if starting else "offline"),
                "pid": self._billy.get("pid") if self._running else voice.holder(),
            }

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return self._snapshot_locked()

    def _snapshot_locked(self) -> dict[str, Any]:
        snapshot = {"type": "snapshot", "connected": self._running, **self._billy, "logs": list(self._logs)}
        if not self._running:
            snapshot["last_words"] = self.last_words()
        return snapshot

    def last_words(self, lines: int = 30) -> list[str]:
        """The end of the output of a Billy the page started (why he stopped), secrets blanked out."""
        path = self.runtime_dir / VOICE_LOG
        try:
            with open(path, "rb") as file:
                file.seek(0, 2)
                file.seek(max(0, file.tell() - 8192))
                tail = file.read().decode("utf-8", "replace").splitlines()[-lines:]
        except OSError:
            return []
        return [self.redact(line) for line in tail]

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "•••")
        return text

    def follow(self, audio: bool = False) -> Follower:
        follower = Follower(audio)
        follower.queue.put_nowait(self.snapshot())
        with self._lock:
            self._followers.add(follower)
        return follower

    def unfollow(self, follower: Follower) -> None:
        with self._lock:
            self._followers.discard(follower)

    @property
    def followers(self) -> int:
        with self._lock:
            return len(self._followers)

    def _drop(self, follower: Follower) -> None:
        self.unfollow(follower)
        follower.dropped = True
        with contextlib.suppress(queue.Empty):
            while True:
                follower.queue.get_nowait()
        follower.queue.put_nowait(None)

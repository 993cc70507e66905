"""The two processes and who keeps whom running.

The voice process (`main.py run`) and the page (`main.py web`) each hold a lock file in the
runtime folder for as long as they live, so neither is ever started twice and each can
tell whether the other is there. Billy watches his page and starts it again, in its own
session, within a few seconds of its death; the page can start Billy when he is down. No
command is built from anything a user typed: both are this Python, `main.py` and fixed
words, plus the settings file the running process was itself started with.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from core.config import ROOT
from core.errors import BillyError

log = logging.getLogger(__name__)

VOICE_LOCK = "voice.lock"
PAGE_LOCK = "web.lock"
PAGE_LOG = "web.log"
VOICE_LOG = "billy.log"
CHECK_SECONDS = 1.0
"""How often Billy looks for his page."""
QUICK_DEATH_SECONDS = 10.0
EXIT_PAGE_OFF = 3
"""`main.py web` exits with this when WEB_ENABLED=false: Billy then stops starting it."""
MAX_LOG_BYTES = 1_000_000


class ProcessLock:
    """An exclusive lock on `<folder>/<name>`, held for the life of the process (released when it dies)."""

    def __init__(self, folder: Path, name: str):
        self.path = Path(folder) / name
        self._fd: int | None = None

    def acquire(self) -> bool:
        """Take the lock; False when another process holds it. Writes our pid into the file."""
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def held_elsewhere(self) -> bool:
        """True while another process holds the lock."""
        if self._fd is not None:
            return False
        if not self.path.exists():
            return False
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except OSError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)
        return False

    def holder(self) -> int | None:
        """The pid written by the process holding the lock, if one does."""
        if not self.held_elsewhere():
            return None
        with contextlib.suppress(OSError, ValueError):
            return int(self.path.read_text().split()[0])
        return None


_held: list[ProcessLock] = []


def hold_voice_lock(runtime_dir: Path) -> None:
    """Mark this process as the running Billy until it ends (or execs); BillyError if one already runs.

    Two Billys would fight over the pins, the speaker and the page's channel.
    """
    lock = ProcessLock(runtime_dir, VOICE_LOCK)
    if not lock.acquire():
        raise BillyError(
            f"Billy is already running (pid {lock.holder()}): stop him first, or use his page or `billy/command`."
        )
    _held.append(lock)


def _command(env_file: Path, *words: str) -> list[str]:
    return [sys.executable, str(ROOT / "main.py"), "--env", str(env_file), *words]


def _log_file(path: Path):
    """Append to `path`, starting it afresh once it has grown past MAX_LOG_BYTES."""
    with contextlib.suppress(OSError):
        if path.stat().st_size > MAX_LOG_BYTES:
            path.replace(path.with_suffix(path.suffix + ".1"))
    return open(path, "ab")


def _last_line(path: Path) -> str:
    """The last line a process wrote to its log (why it stopped), shortened."""
    try:
        with open(path, "rb") as file:
            file.seek(0, 2)
            file.seek(max(0, file.tell() - 2048))
            lines = file.read().decode("utf-8", "replace").strip().splitlines()
    except OSError:
        return ""
    return lines[-1][:200] if lines else ""


_SYSTEMD_ONLY = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "INVOCATION_ID")
"""systemd's variables for this process's unit: a process started from here is not that unit."""


def spawn(command: list[str], log_path: Path) -> subprocess.Popen[bytes]:
    """Start `command` in its own session (it outlives us), stdin closed, output to `log_path`."""
    log_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with _log_file(log_path) as out:
        return subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=Path.cwd(),
            env={**{k: v for k, v in os.environ.items() if k not in _SYSTEMD_ONLY}, "PYTHONUNBUFFERED": "1"},
        )


def start_voice(runtime_dir: Path, env_file: Path) -> str:
    """Start Billy from the page; returns a sentence saying how. BillyError if he is already there.

    Where his systemd unit is installed, systemd starts it (so it is supervised as at boot);
    otherwise `main.py run` is started in its own session, its output in `billy.log`.
    """
    from core.systemd import VOICE_UNIT, manage_voice, unit_state

    lock = ProcessLock(runtime_dir, VOICE_LOCK)
    if lock.held_elsewhere():
        raise BillyError(f"Billy is already running (pid {lock.holder()}); he may still be loading his models.")
    if unit_state(VOICE_UNIT) is not None:
        manage_voice("start")
        log.info("asked systemd to start %s", VOICE_UNIT)
        return f"Asked systemd to start {VOICE_UNIT}."
    child = spawn(_command(env_file, "run"), runtime_dir / VOICE_LOG)
    threading.Thread(target=child.wait, name="billy-reaper", daemon=True).start()  # no zombie when he exits
    log.info("started Billy (pid %d); his output goes to %s", child.pid, runtime_dir / VOICE_LOG)
    return f"Started Billy (pid {child.pid})."


def _parent_of(pid: int) -> int | None:
    """The parent pid of process `pid` (Linux /proc), or None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return int(stat.rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


class _Adopted:
    """A page started before `restart` re-executed this process: still our child, known by its pid only."""

    def __init__(self, pid: int):
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            try:
                done, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:
                self.returncode = 0
            else:
                if done:
                    self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def terminate(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGTERM)

    def wait(self, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while self.poll() is None:
            if time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(str(self.pid), timeout)
            time.sleep(0.05)
        return self.returncode  # type: ignore[return-value]


class PageSupervisor:
    """Billy's watch over his page: started if nobody runs it, started again when it dies.

    A page started by someone else (systemd, a terminal) holds the page lock, and then
    Billy only watches. A page that keeps dying right after its start is retried with a
    growing pause (up to 8 s), each death logged once.
    """

    def __init__(self, runtime_dir: Path, env_file: Path, check_seconds: float = CHECK_SECONDS):
        self.runtime_dir = Path(runtime_dir)
        self.env_file = Path(env_file)
        self.check_seconds = check_seconds
        self.child: subprocess.Popen[bytes] | _Adopted | None = None
        self._lock = ProcessLock(self.runtime_dir, PAGE_LOCK)
        self._quick_deaths = 0
        self._started_at = 0.0
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._watch(), name="page supervisor")

    async def stop(self, stop_page: bool = False) -> None:
        """Stop watching; with `stop_page`, also end the page this Billy started."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if stop_page and self.child is not None and self.child.poll() is None:
            self.child.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                await asyncio.to_thread(self.child.wait, 3)

    def check(self) -> bool:
        """One look: reap our dead page, start one if none runs. False: stop watching (the page is off)."""
        if self.child is not None:
            code = self.child.poll()
            if code is None:
                return True
            self.child = None
            if code == EXIT_PAGE_OFF:
                log.info("Billy's page is switched off (WEB_ENABLED=false): not starting it again")
                return False
            quick = time.monotonic() - self._started_at < QUICK_DEATH_SECONDS
            self._quick_deaths = self._quick_deaths + 1 if quick else 0
            if self._quick_deaths <= 3:
                said = _last_line(self.runtime_dir / PAGE_LOG)
                log.warning(
                    "Billy's page stopped (exit code %s%s); starting it again", code, f": {said}" if said else ""
                )
            elif self._quick_deaths == 4:
                log.warning(
                    "Billy's page keeps stopping; trying now and then. Its output: %s", self.runtime_dir / PAGE_LOG
                )
        if self._lock.held_elsewhere():
            holder = self._lock.holder() if self.child is None else None
            if holder is not None and _parent_of(holder) == os.getpid():
                self.child = _Adopted(holder)  # ours, from before a `restart`: reap it, stop it with us
                self._started_at = time.monotonic() - QUICK_DEATH_SECONDS
            return True
        self.child = spawn(_command(self.env_file, "web"), self.runtime_dir / PAGE_LOG)
        self._started_at = time.monotonic()
        log.debug("started Billy's page (pid %d)", self.child.pid)
        return True

    async def _watch(self) -> None:
        while True:
            try:
                if not self.check():
                    return
            except OSError as exc:
                log.warning("cannot start Billy's page (%s); trying again", exc)
            pause = self.check_seconds * (1 + min(self._quick_deaths, 7))
            await asyncio.sleep(pause)

"""Talking to systemd: readiness, status, the watchdog, and the page asking for the voice unit.

The notify protocol (sd_notify(3)) is a few lines, so it is written here rather than pulled in:
one datagram of `KEY=value` lines to the AF_UNIX socket named by `$NOTIFY_SOCKET` (a leading
`@` means Linux's abstract namespace). Billy sends

- `STATUS=...` at start and on every state change (`systemctl status billy` shows it),
- `READY=1` once every model is loaded and warm (`Type=notify`: the unit is "active" only then),
- `WATCHDOG=1` every half `$WATCHDOG_USEC`, from a task on the asyncio loop itself, so a
  hung loop stops the pings and systemd kills and restarts Billy,
- `RELOADING=1` before the `restart` command re-executes the process (same PID, so the unit
  stays up) and `STOPPING=1` before a shutdown.

Without `$NOTIFY_SOCKET` (a terminal, a test, `Type=simple`) every call does nothing. Sending
never blocks and never raises: a full or vanished socket costs a log line, not a turn.

`$NOTIFY_SOCKET`, `$WATCHDOG_USEC` and `$WATCHDOG_PID` are set by systemd for this process,
not by the person configuring Billy, so they are read here and not in `core/config.py`. They
stay in the environment: the `restart` command's `os.execv` keeps the PID and must keep
notifying the same socket.
"""

from __future__ import annotations

import asyncio
import faulthandler
import logging
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Mapping

from core.errors import BillyError
from core.state import StateChange

log = logging.getLogger(__name__)

VOICE_UNIT = "billy.service"
"""Billy's voice process (`main.py run`)."""
WEB_UNIT = "billy-web.service"
"""The page (`main.py web`)."""
VOICE_ACTIONS = ("start", "stop", "restart")
"""What the page may ask systemd to do with the voice unit (the polkit rule allows exactly these)."""
SYSTEMCTL_TIMEOUT_S = 10.0


class Notifier:
    """Sends sd_notify messages to systemd; a no-op when not started by systemd."""

    def __init__(self, socket_path: str | None = None, watchdog_usec: int = 0):
        """`socket_path`: `$NOTIFY_SOCKET`; `watchdog_usec`: `$WATCHDOG_USEC` (microseconds), 0 for none."""
        self.address: str | None = None
        if socket_path:
            self.address = "\0" + socket_path[1:] if socket_path.startswith("@") else socket_path
        self.watchdog_usec = max(0, int(watchdog_usec)) if self.address else 0
        self._socket: socket.socket | None = None
        self._failed = False
        self._watchdog_task: asyncio.Task | None = None

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> Notifier:
        """The notifier systemd asked for, through the variables it set for this process."""
        env = os.environ if environ is None else environ
        path = env.get("NOTIFY_SOCKET") or None
        if path is not None and not path.startswith(("/", "@")):
            log.warning("NOTIFY_SOCKET=%r is not a Unix socket path; systemd will not hear from Billy", path)
            path = None
        watchdog_usec = 0
        pid = env.get("WATCHDOG_PID", "").strip()
        if not pid or pid == str(os.getpid()):
            try:
                watchdog_usec = int(env.get("WATCHDOG_USEC", "0") or 0)
            except ValueError:
                log.warning("WATCHDOG_USEC=%r is not a number; the watchdog stays off", env.get("WATCHDOG_USEC"))
        return cls(path, watchdog_usec)

    @property
    def enabled(self) -> bool:
        return self.address is not None

    @property
    def watchdog_interval(self) -> float | None:
        """Seconds between watchdog pings (half the timeout, as sd_watchdog_enabled(3) advises), or None."""
        return self.watchdog_usec / 2e6 if self.watchdog_usec > 0 else None

    def send(self, *lines: str) -> bool:
        """Send one message of `KEY=value` lines; True when it left. Never blocks, never raises."""
        if self.address is None:
            return False
        data = "\n".join(line.replace("\n", " ") for line in lines).encode("utf-8", "replace")
        try:
            if self._socket is None:
                self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._socket.setblocking(False)
            self._socket.sendto(data, self.address)
        except OSError as exc:
            level = logging.DEBUG if self._failed else logging.WARNING
            log.log(level, "cannot notify systemd at %s (%s); Billy goes on", self.address.lstrip("\0"), exc)
            self._failed = True
            return False
        return True

    def status(self, text: str) -> bool:
        return self.send(f"STATUS={text}")

    def ready(self, status: str = "idle") -> bool:
        """Everything is loaded and warm: the unit becomes active."""
        return self.send("READY=1", f"STATUS={status}")

    def reloading(self, status: str = "restarting") -> bool:
        """The process is about to replace itself (same PID); READY=1 follows when it is warm again."""
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.send("RELOADING=1", f"MONOTONIC_USEC={usec}", f"STATUS={status}")

    def stopping(self, status: str | None = "stopping") -> bool:
        lines = ["STOPPING=1"]
        if status:
            lines.append(f"STATUS={status}")
        return self.send(*lines)

    def on_state(self, change: StateChange) -> None:
        """State observer: the state (and why) as the unit's status line. One non-blocking send."""
        self.status(change.current.value + (f" ({change.reason})" if change.reason else ""))

    async def watchdog(self) -> None:
        """Ping forever from this loop: if the loop hangs, the pings stop and systemd steps in."""
        interval = self.watchdog_interval
        if interval is None:
            return
        while True:
            self.send("WATCHDOG=1")
            await asyncio.sleep(interval)

    def start_watchdog(self) -> asyncio.Task | None:
        """Start pinging on the running loop (None when systemd wants no pings).

        Also turns on `faulthandler`, so the SIGABRT with which systemd kills a hung loop
        leaves every thread's stack in the journal.
        """
        if self.watchdog_interval is None:
            return None
        if not faulthandler.is_enabled():
            faulthandler.enable()
        log.info("systemd watchdog: pinging every %.1f s", self.watchdog_interval)
        self._watchdog_task = asyncio.get_running_loop().create_task(self.watchdog(), name="systemd watchdog")
        return self._watchdog_task

    def close(self) -> None:
        """Stop pinging and close the socket."""
        task, self._watchdog_task = self._watchdog_task, None
        if task is not None:
            task.cancel()
        sock, self._socket = self._socket, None
        if sock is not None:
            sock.close()


# --- the page and the voice unit ----------------------------------------------------------


def systemd_running() -> bool:
    """True when systemd is this machine's init (sd_booted(3)); false in most containers."""
    return os.path.isdir("/run/systemd/system")


def started_by_systemd(environ: Mapping[str, str] | None = None) -> bool:
    """True when this process is a systemd unit's (systemd sets INVOCATION_ID for each run)."""
    return bool((os.environ if environ is None else environ).get("INVOCATION_ID"))


def _systemctl(*args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("systemctl")
    if binary is None:
        raise BillyError("systemctl is not installed: Billy's units need systemd.")
    try:
        return subprocess.run(
            [binary, *args],
            capture_output=True,
            text=True,
            timeout=SYSTEMCTL_TIMEOUT_S,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise BillyError(f"systemctl {' '.join(args)} did not answer within {SYSTEMCTL_TIMEOUT_S:g} s.") from exc


def unit_state(unit: str = VOICE_UNIT) -> str | None:
    """`active`, `activating`, `inactive`, `failed`, ... or None when systemd or the unit is not there."""
    if not systemd_running():
        return None
    try:
        result = _systemctl("show", "--property=LoadState,ActiveState", "--value", unit)
    except BillyError:
        return None
    values = result.stdout.split()
    if result.returncode != 0 or len(values) != 2 or values[0] != "loaded":
        return None
    return values[1]


def manage_voice(action: str) -> None:
    """Ask systemd to start, stop or restart the voice unit, as the page does; returns at once.

    Works without root: setup/install-service.sh installs a polkit rule that lets Billy's
    user do exactly these three things to `billy.service`. Raises BillyError with the fix.
    """
    if action not in VOICE_ACTIONS:
        raise ValueError(f"action must be one of {', '.join(VOICE_ACTIONS)}, not {action!r}")
    result = _systemctl("--no-block", "--no-ask-password", action, VOICE_UNIT)
    if result.returncode != 0:
        why = (result.stderr.strip().splitlines() or [f"exit status {result.returncode}"])[-1]
        raise BillyError(
            f"systemd would not {action} {VOICE_UNIT} ({why}); run `sudo bash setup/install-service.sh`, "
            "which installs the unit and allows Billy's user to start it."
        )

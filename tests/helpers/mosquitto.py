"""A real mosquitto broker on a free 127.0.0.1 port, for tests.

The broker keeps its port across `stop()`/`start()` so a test can take it away and give it
back while a client is connected. Persistence is off: a restarted broker has forgotten every
retained message, as after a power cut, so a client must republish what it owns.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

MOSQUITTO = "/usr/sbin/mosquitto"
MOSQUITTO_PASSWD = "mosquitto_passwd"
START_TIMEOUT_SECONDS = 10.0
_MISSING = "is not installed; run bash setup/install.sh --dev (it installs mosquitto and mosquitto-clients)"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Mosquitto:
    """Debian's mosquitto with a generated config in `directory`: anonymous, or one user."""

    host = "127.0.0.1"

    def __init__(self, directory: Path, username: str = "", password: str = "", port: int | None = None):
        self.binary = shutil.which("mosquitto") or MOSQUITTO
        if not Path(self.binary).is_file():
            raise RuntimeError(f"mosquitto ({MOSQUITTO}) {_MISSING}")
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.username = username
        self.password = password
        self.log_path = self.directory / "mosquitto.log"
        self.config_path = self._write_config()
        self._process: subprocess.Popen[bytes] | None = None

    def _write_config(self) -> Path:
        lines = [
            f"listener {self.port} {self.host}",
            "persistence false",
            f"log_dest file {self.log_path}",
            "log_type all",
            "connection_messages true",
        ]
        if os.geteuid() == 0:
            lines.append("user root")
        if self.username:
            passwd = shutil.which(MOSQUITTO_PASSWD)
            if passwd is None:
                raise RuntimeError(f"{MOSQUITTO_PASSWD} (package mosquitto) {_MISSING}")
            password_file = self.directory / "passwd"
            password_file.unlink(missing_ok=True)
            subprocess.run(
                [passwd, "-c", "-b", str(password_file), self.username, self.password],
                check=True,
                capture_output=True,
                timeout=10,
            )
            password_file.chmod(0o600)
            lines += ["allow_anonymous false", f"password_file {password_file}"]
        else:
            lines.append("allow_anonymous true")
        path = self.directory / "mosquitto.conf"
        path.write_text("\n".join(lines) + "\n")
        return path

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        """Start the broker (again, on the same port) and wait until it accepts connections."""
        if self.running:
            return
        self._process = subprocess.Popen(
            [self.binary, "-c", str(self.config_path)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"mosquitto exited with {self._process.returncode} on start:\n{self.log()[-2000:]}")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"mosquitto did not listen on {self.host}:{self.port} within {START_TIMEOUT_SECONDS} s")

    def stop(self) -> None:
        """Stop the broker (SIGTERM, then SIGKILL if it lingers); clients see the connection drop."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)

    def log(self) -> str:
        """The broker's own log so far (connections, refusals, subscriptions)."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def __enter__(self) -> Mosquitto:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

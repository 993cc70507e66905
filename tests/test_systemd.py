"""systemd's notify protocol against a real AF_UNIX datagram socket, as systemd itself listens.

The listener asks the kernel for each sender's credentials (SO_PASSCRED), as systemd does for
`NotifyAccess=main`, so the slow test sees that the PID that says READY after a `restart` is
still the unit's main PID.
"""

from __future__ import annotations

import asyncio
import getpass
import logging
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from core.config import ROOT
from core.state import State, StateOwner
from core.systemd import VOICE_ACTIONS, Notifier, manage_voice
from tests.helpers.mosquitto import Mosquitto


class NotifyListener:
    """A bound SOCK_DGRAM socket recording (arrival time, sender pid, message fields)."""

    def __init__(self, address: str):
        self.address = address
        self.messages: list[tuple[float, int, dict[str, str]]] = []
        self._lock = threading.Lock()
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self._sock.bind(address)
        self._sock.settimeout(0.05)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        creds_size = struct.calcsize("3i")
        while not self._stop.is_set():
            try:
                data, ancillary, _flags, _addr = self._sock.recvmsg(4096, socket.CMSG_SPACE(creds_size))
            except TimeoutError:
                continue
            except OSError:
                return
            pid = -1
            for level, kind, payload in ancillary:
                if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                    pid = struct.unpack("3i", payload[:creds_size])[0]
            fields = dict(line.split("=", 1) for line in data.decode().splitlines() if "=" in line)
            with self._lock:
                self.messages.append((time.monotonic(), pid, fields))

    def all(self) -> list[tuple[float, int, dict[str, str]]]:
        with self._lock:
            return list(self.messages)

    def with_key(self, key: str, value: str | None = None, prefix: str = "") -> list[tuple[float, int, dict[str, str]]]:
        return [
            m
            for m in self.all()
            if key in m[2] and (value is None or m[2][key] == value) and m[2][key].startswith(prefix)
        ]

    def wait_for(self, key: str, value: str | None = None, timeout: float = 5.0, count: int = 1, prefix: str = ""):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.with_key(key, value, prefix)
            if len(found) >= count:
                return found[count - 1]
            time.sleep(0.02)
        got = [m[2] for m in self.all()]
        raise AssertionError(f"no {count}x {key}={value or prefix + '...'} within {timeout} s; got {got}")

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self._sock.close()


@pytest.fixture
def listener() -> Iterator[NotifyListener]:
    # A short folder: AF_UNIX paths are limited to 107 bytes.
    with tempfile.TemporaryDirectory(prefix="billy-sd-", dir="/tmp") as folder:
        notify = NotifyListener(str(Path(folder) / "notify"))
        try:
            yield notify
        finally:
            notify.close()


def test_without_notify_socket_everything_is_a_no_op():
    notifier = Notifier.from_environment({})
    assert not notifier.enabled
    assert notifier.watchdog_interval is None
    assert notifier.ready() is False and notifier.status("x") is False and notifier.stopping() is False

    async def scenario() -> None:
        assert notifier.start_watchdog() is None

    asyncio.run(scenario())


def test_ready_status_and_watchdog_arrive_on_the_socket(listener: NotifyListener):
    notifier = Notifier.from_environment({"NOTIFY_SOCKET": listener.address, "WATCHDOG_USEC": "200000"})
    assert notifier.watchdog_interval == pytest.approx(0.1)
    state = StateOwner()
    state.subscribe(notifier.on_state)

    async def scenario() -> None:
        task = notifier.start_watchdog()
        assert task is not None
        notifier.status("loading models")
        await asyncio.sleep(0.05)
        notifier.ready("idle (ready)")
        state.set(State.LISTENING, "button")
        state.set(State.THINKING)
        await asyncio.sleep(0.35)
        notifier.stopping()
        task.cancel()

    asyncio.run(scenario())
    listener.wait_for("STOPPING", "1")
    notifier.close()
    messages = [m[2] for m in listener.all()]
    assert {"READY": "1", "STATUS": "idle (ready)"} in messages
    statuses = [m["STATUS"] for m in messages if "STATUS" in m]
    assert statuses[:2] == ["loading models", "idle (ready)"]
    assert "listening (button)" in statuses and "thinking" in statuses
    assert len(listener.with_key("WATCHDOG", "1")) >= 3
    assert all(pid == os.getpid() for _, pid, _ in listener.all())


def test_a_blocked_loop_stops_the_pings(listener: NotifyListener):
    notifier = Notifier.from_environment({"NOTIFY_SOCKET": listener.address, "WATCHDOG_USEC": "100000"})
    marks: dict[str, float] = {}

    async def scenario() -> None:
        task = notifier.start_watchdog()
        await asyncio.sleep(0.4)
        marks["block"] = time.monotonic()
        time.sleep(0.8)  # the loop hangs: nothing on it runs, the pinger included
        marks["unblock"] = time.monotonic()
        await asyncio.sleep(0.4)
        assert task is not None
        task.cancel()

    asyncio.run(scenario())
    notifier.close()
    pings = [t for t, _, fields in listener.with_key("WATCHDOG", "1")]
    before = [t for t in pings if t < marks["block"]]
    during = [t for t in pings if marks["block"] + 0.1 < t < marks["unblock"]]
    after = [t for t in pings if t > marks["unblock"]]
    assert len(before) >= 4, pings
    assert during == [], "a ping arrived while the loop was blocked"
    assert len(after) >= 2, "the pings did not come back once the loop ran again"


def test_abstract_namespace_socket():
    name = f"billy-test-{os.getpid()}-{time.monotonic_ns()}"
    listener = NotifyListener("\0" + name)
    try:
        notifier = Notifier.from_environment({"NOTIFY_SOCKET": "@" + name})
        assert notifier.ready()
        assert listener.wait_for("READY", "1")
        notifier.close()
    finally:
        listener.close()


def test_watchdog_meant_for_another_process_is_not_pinged(listener: NotifyListener):
    other = {"NOTIFY_SOCKET": listener.address, "WATCHDOG_USEC": "100000", "WATCHDOG_PID": str(os.getpid() + 1)}
    assert Notifier.from_environment(other).watchdog_interval is None
    ours = {**other, "WATCHDOG_PID": str(os.getpid())}
    assert Notifier.from_environment(ours).watchdog_interval == pytest.approx(0.05)


def test_a_vanished_socket_costs_one_warning_and_never_raises(tmp_path: Path, caplog: pytest.LogCaptureFixture):
    notifier = Notifier.from_environment({"NOTIFY_SOCKET": str(tmp_path / "gone")})
    with caplog.at_level(logging.DEBUG, logger="core.systemd"):
        assert notifier.ready() is False
        assert notifier.status("still here") is False
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "cannot notify systemd" in warnings[0].getMessage()


def test_manage_voice_runs_systemctl_with_fixed_arguments(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The page's way to start the voice unit: `systemctl --no-block start billy.service`, nothing from input."""
    calls = tmp_path / "calls"
    fake = tmp_path / "systemctl"
    fake.write_text(
        f'#!/bin/sh\necho "$@" >> {calls}\ncase "$*" in *restart*) echo "Access denied" >&2; exit 4;; esac\nexit 0\n'
    )
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    manage_voice("start")
    manage_voice("stop")
    with pytest.raises(Exception, match=r"would not restart billy.service \(Access denied\).*install-service"):
        manage_voice("restart")
    with pytest.raises(ValueError):
        manage_voice("enable")
    assert calls.read_text().splitlines() == [
        f"--no-block --no-ask-password {action} billy.service" for action in VOICE_ACTIONS
    ]


def test_unit_state_reads_systemctl_show(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    import core.systemd as systemd

    fake = tmp_path / "systemctl"
    fake.write_text(
        '#!/bin/sh\ncase "$*" in *billy-web*) printf "not-found\\ninactive\\n";; '
        '*) printf "loaded\\nactivating\\n";; esac\n'
    )
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    monkeypatch.setattr(systemd, "systemd_running", lambda: True)
    assert systemd.unit_state("billy.service") == "activating"
    assert systemd.unit_state("billy-web.service") is None


@pytest.mark.slow
def test_billy_under_a_notify_socket_restarts_in_place_and_shuts_down(tmp_path: Path, listener: NotifyListener):
    """The real `main.py run`: pings while loading, READY once warm, STATUS per state, `restart` keeps the
    PID (RELOADING, then READY again from the same process), `shutdown` says STOPPING and exits 0."""
    with Mosquitto(tmp_path / "broker") as broker:
        env_file = tmp_path / "billy.env"
        env_file.write_text(
            f"MQTT_HOST={broker.host}\nMQTT_PORT={broker.port}\nMIC_TIMEOUT_SECONDS=1\n"
            "LOCAL_LLM_HOST=http://127.0.0.1:9\nREQUEST_TIMEOUT_SECONDS=1\n"
            f"WEB_RUNTIME_DIR={tmp_path / 'runtime'}\nWEB_ENABLED=false\n"  # no page: this is about systemd
        )
        env = {
            **os.environ,
            "NOTIFY_SOCKET": listener.address,
            "WATCHDOG_USEC": "2000000",
            "PYTHONUNBUFFERED": "1",
        }
        log_path = tmp_path / "billy.log"
        with log_path.open("wb") as log_file:
            process = subprocess.Popen(
                [sys.executable, str(ROOT / "main.py"), "--env", str(env_file), "run"],
                cwd=tmp_path,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        try:
            ready_at, pid, _ = listener.wait_for("READY", "1", timeout=240)
            assert pid == process.pid
            assert "Billy is ready" in log_path.read_text()
            pings_before_ready = [t for t, _, _ in listener.with_key("WATCHDOG", "1") if t < ready_at]
            assert pings_before_ready, "no watchdog pings while the models loaded"

            client.connect(broker.host, broker.port)
            client.loop_start()
            client.publish("billy/command", "listen", qos=1).wait_for_publish(5)
            listening_at = listener.wait_for("STATUS", prefix="listening", timeout=10)[0]
            idle_again = [t for t, _, f in listener.with_key("STATUS", prefix="idle") if t > listening_at]
            deadline = time.monotonic() + 20
            while not idle_again and time.monotonic() < deadline:
                time.sleep(0.05)
                idle_again = [t for t, _, f in listener.with_key("STATUS", prefix="idle") if t > listening_at]
            assert idle_again, "Billy did not go back to idle after the silent session"

            client.publish("billy/command", "restart", qos=1).wait_for_publish(5)
            listener.wait_for("RELOADING", "1", timeout=20)
            _, pid_again, _ = listener.wait_for("READY", "1", timeout=240, count=2)
            assert pid_again == process.pid, "the restart must keep the main PID (NotifyAccess=main)"
            assert process.poll() is None

            client.publish("billy/command", "shutdown", qos=1).wait_for_publish(5)
            listener.wait_for("STOPPING", "1", timeout=20)
            assert process.wait(timeout=30) == 0
        finally:
            client.loop_stop()
            client.disconnect()
            if process.poll() is None:
                process.kill()
                process.wait(timeout=10)
        senders = {pid for _, pid, _ in listener.all()}
        assert senders == {process.pid}, log_path.read_text()[-3000:]


# --- the unit files and their installer -----------------------------------------------------

INSTALLER = ROOT / "setup" / "install-service.sh"


def _render(folder: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(INSTALLER), "--render", str(folder)],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, **env},
    )


def test_units_render_with_the_checkout_and_user(tmp_path: Path):
    result = _render(tmp_path, BILLY_USER="root")
    assert result.returncode == 0, result.stderr
    voice = (tmp_path / "billy.service").read_text()
    page = (tmp_path / "billy-web.service").read_text()
    rules = (tmp_path / "50-billy.rules").read_text()
    for text in (voice, page, rules):
        assert "@ROOT@" not in text and "@USER@" not in text
    for line in (
        "Type=notify",
        "NotifyAccess=main",
        "WatchdogSec=30",
        "Restart=on-failure",
        "RestartPreventExitStatus=2",
        "User=root",
        f"ExecStart={ROOT}/.venv/bin/python {ROOT}/main.py run --no-web",
        f"ReadWritePaths={ROOT}",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "PrivateTmp=yes",
        "Environment=XDG_CACHE_HOME=%C/billy PYTHONPYCACHEPREFIX=%C/billy/pycache LG_WD=%t/billy",
    ):
        assert line in voice.splitlines(), line
    for line in ("Restart=always", "RestartSec=2", f"ExecStart={ROOT}/.venv/bin/python {ROOT}/main.py web"):
        assert line in page.splitlines(), line
    assert 'subject.user == "root"' in rules and 'action.lookup("unit") == "billy.service"' in rules
    from main import _parser

    assert _parser().parse_args(["run", "--no-web"]).command == "run"
    assert _parser().parse_args(["web"]).command == "web"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_rendered_units_pass_systemd_analyze_verify(tmp_path: Path):
    assert _render(tmp_path, BILLY_USER=getpass.getuser()).returncode == 0
    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", "billy.service", "billy-web.service"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0 and result.stderr.strip() == "", result.stderr


def test_a_checkout_path_with_a_space_is_refused(tmp_path: Path):
    copy = tmp_path / "my billy"
    (copy / "setup").mkdir(parents=True)
    shutil.copy(INSTALLER, copy / "setup")
    shutil.copytree(ROOT / "services", copy / "services")
    result = subprocess.run(
        ["bash", str(copy / "setup" / "install-service.sh"), "--render", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1 and "move it" in result.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="the installer runs as root")
def test_installing_twice_gives_the_same_result(tmp_path: Path):
    """The whole install against scratch folders, with systemctl and usermod stood in for (they record)."""
    bin_dir, units, polkit, run_dir = (tmp_path / name for name in ("bin", "units", "polkit", "run"))
    for folder in (bin_dir, units, polkit, run_dir):
        folder.mkdir()
    calls = tmp_path / "calls"
    for tool in ("systemctl", "usermod"):
        (bin_dir / tool).write_text(f'#!/bin/sh\necho "{tool} $*" >> {calls}\n')
        (bin_dir / tool).chmod(0o755)
    user = getpass.getuser()
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "BILLY_USER": user,
        "BILLY_UNIT_DIR": str(units),
        "BILLY_POLKIT_DIR": str(polkit),
        "BILLY_SYSTEMD_RUN": str(run_dir),
    }
    checkout = tmp_path / "billy"  # a copy, so the real checkout's folders keep their owner
    (checkout / "setup").mkdir(parents=True)
    shutil.copy(INSTALLER, checkout / "setup")
    shutil.copytree(ROOT / "services", checkout / "services")
    (checkout / ".venv" / "bin").mkdir(parents=True)
    (checkout / ".venv" / "bin" / "python").symlink_to(sys.executable)
    installer = checkout / "setup" / "install-service.sh"
    outputs = []
    for _ in range(2):
        result = subprocess.run(["bash", str(installer)], capture_output=True, text=True, timeout=60, env=env)
        assert result.returncode == 0, result.stderr
        outputs.append(result.stdout)
    assert (checkout / ".cache").is_dir() and (checkout / "sim-out").is_dir()
    rendered = tmp_path / "rendered"
    result = subprocess.run(
        ["bash", str(installer), "--render", str(rendered)], capture_output=True, text=True, timeout=30, env=env
    )
    assert result.returncode == 0, result.stderr
    assert f"ExecStart={checkout}/.venv/bin/python" in (rendered / "billy.service").read_text()
    for unit in ("billy.service", "billy-web.service"):
        assert (units / unit).read_text() == (rendered / unit).read_text()
        assert (units / unit).stat().st_mode & 0o777 == 0o644
    assert (polkit / "50-billy.rules").read_text() == (rendered / "50-billy.rules").read_text()
    lines = calls.read_text().splitlines()
    assert lines.count("systemctl daemon-reload") == 2
    assert lines.count("systemctl enable billy.service billy-web.service") == 2
    assert lines.count("systemctl restart billy.service billy-web.service") == 2
    groups = subprocess.run(["id", "-nG", user], capture_output=True, text=True).stdout.split()
    for group in ("gpio", "audio"):
        exists = subprocess.run(["getent", "group", group], capture_output=True).returncode == 0
        wanted = exists and group not in groups
        assert (f"usermod -aG {group} {user}" in lines) == wanted
    assert "journalctl -u billy -f" in outputs[1]


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is not installed")
def test_install_scripts_pass_shellcheck():
    scripts = [str(ROOT / "setup" / name) for name in ("install-service.sh", "install.sh")]
    result = subprocess.run(["shellcheck", *scripts], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout

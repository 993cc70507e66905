"""`python main.py web` as its own process, with no Billy: it says so, runs once, and restarts itself
when its own settings change (here: a new port)."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from core.config import ROOT
from core.web.processes import PAGE_LOCK, ProcessLock
from tests.helpers.mosquitto import free_port

PASSWORD = "page only 1234"


def wait_for(url: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if requests.get(url, timeout=1).status_code == 200:
                return
        except requests.RequestException:
            pass
        assert time.monotonic() < deadline, f"{url} did not answer within {timeout:.0f} s"
        time.sleep(0.1)


def web(env_file: Path) -> list[str]:
    return [sys.executable, str(ROOT / "main.py"), "--env", str(env_file), "web"]


@pytest.fixture
def page(tmp_path):
    shutil.copytree(ROOT / "personas", tmp_path / "personas")
    port = free_port()
    env_file = tmp_path / ".env"
    env_file.write_text(
        f"FLASK_PORT={port}\nWEB_PASSWORD={PASSWORD}\nWEB_RUNTIME_DIR={tmp_path / 'rt'}\n"
        f"PERSONA_DIR={tmp_path / 'personas'}\n"
    )
    log = open(tmp_path / "web.out", "wb")  # noqa: SIM115 - closed below
    process = subprocess.Popen(
        web(env_file), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
    )
    try:
        wait_for(f"http://127.0.0.1:{port}/login")
        yield env_file, port, tmp_path
    finally:
        for pid in {process.pid, ProcessLock(tmp_path / "rt", PAGE_LOCK).holder()}:
            if pid:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)
        process.wait(10)
        log.close()


def login(port: int) -> tuple[requests.Session, str]:
    session = requests.Session()
    base = f"http://127.0.0.1:{port}"
    token = re.search(r'name="csrf_token" value="([^"]+)"', session.get(f"{base}/login").text).group(1)
    assert session.post(f"{base}/login", data={"password": PASSWORD, "csrf_token": token}).status_code == 200
    token = re.search(r'name="csrf-token" content="([^"]+)"', session.get(f"{base}/").text).group(1)
    return session, token


def test_the_page_alone_says_billy_is_down_runs_once_and_moves_to_a_new_port(page):
    env_file, port, tmp_path = page
    second = subprocess.run(web(env_file), capture_output=True, text=True, timeout=30)
    assert second.returncode == 0 and "already running" in second.stderr
    off = subprocess.run(
        web(env_file), capture_output=True, text=True, timeout=30, env={**os.environ, "WEB_ENABLED": "false"}
    )
    assert off.returncode == 3 and "WEB_ENABLED=false" in off.stderr

    session, token = login(port)
    base = f"http://127.0.0.1:{port}"
    assert session.get(f"{base}/api/status").json() == {
        "running": False,
        "starting": False,
        "state": "offline",
        "pid": None,
    }
    answer = session.post(f"{base}/api/say", json={"text": "anyone?"}, headers={"X-CSRFToken": token})
    assert answer.status_code == 503 and answer.json() == {"error": "Billy is not running."}

    pid = ProcessLock(tmp_path / "rt", PAGE_LOCK).holder()
    new_port = free_port()
    answer = session.post(
        f"{base}/api/settings", json={"values": {"FLASK_PORT": str(new_port)}}, headers={"X-CSRFToken": token}
    )
    assert answer.status_code == 200 and answer.json()["page_restarts"] is True
    wait_for(f"http://127.0.0.1:{new_port}/login")
    assert ProcessLock(tmp_path / "rt", PAGE_LOCK).holder() == pid  # the same process, started again in place
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{base}/login", timeout=2)
    session.get(f"http://127.0.0.1:{new_port}/api/status").raise_for_status()  # the session survived the restart

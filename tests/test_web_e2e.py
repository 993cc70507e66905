"""Billy's page for real: `main.py run` in simulation (it starts the page), a headless Chromium.

The voice process answers through an Ollama-API server (`FakeOllama`) and loads the real
Whisper and piper; the page is its own process, started and watched by Billy; Chromium is
driven by Selenium as a user would drive it. The tests run in order and share the fish:
edit and talk, settings, then the page killed, then Billy killed and started from the page.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from core.config import ROOT
from core.web.channel import ChannelClient
from core.web.processes import PAGE_LOCK, VOICE_LOCK, ProcessLock
from tests.helpers.mosquitto import free_port
from tests.helpers.ollama_server import DEFAULT_REPLY, FakeOllama

pytestmark = pytest.mark.slow

MODEL = "qwen2.5:1.5b"
PASSWORD = "shiny scales 42"
SECRETS = {
    "OPENAI_API_KEY": "sk-e2e-secret-7f3a9c1b2d",
    "MQTT_PASSWORD": "mqtt-e2e-secret-pw",
    "HA_TOKEN": "ha-e2e-token-5e6f7a8b",
    "WEB_PASSWORD": PASSWORD,
}
START_SECONDS = 120.0
"""Longest wait for Billy to load his models and say he is ready."""


def wait_until(check: Callable[[], object], what: str, timeout: float, poll: float = 0.1) -> object:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out after {timeout:.0f} s waiting for {what}"
        time.sleep(poll)


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def kill(pid: int | None) -> None:
    """End one process we started (the voice or the page), by its id."""
    if not pid:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
        for _ in range(50):
            os.kill(pid, 0)
            time.sleep(0.1)
        os.kill(pid, signal.SIGKILL)


@dataclass
class Fish:
    base: str
    env_file: Path
    runtime: Path
    personas: Path
    ollama: FakeOllama
    voice: subprocess.Popen

    def pid(self, lock: str) -> int | None:
        return ProcessLock(self.runtime, lock).holder()


@pytest.fixture(scope="module")
def fish(tmp_path_factory) -> Iterator[Fish]:
    tmp = tmp_path_factory.mktemp("web")
    personas = tmp / "personas"
    shutil.copytree(ROOT / "personas", personas)
    (tmp / "none.gguf").write_bytes(b"")  # no embedded brain: the fake Ollama answers, and start-up is quicker
    port = free_port()
    with FakeOllama(models=[MODEL]) as ollama:
        env_file = tmp / ".env"
        env_file.write_text(
            "\n".join(
                [
                    f"LOCAL_LLM_HOST={ollama.url}",
                    f"LOCAL_LLM_MODEL={MODEL}",
                    f"EMBEDDED_LLM_MODEL={tmp / 'none.gguf'}",
                    "OPENAI_BASE_URL=http://127.0.0.1:9/v1",
                    "MIC_TIMEOUT_SECONDS=2",
                    "REQUEST_TIMEOUT_SECONDS=5",
                    f"PERSONA_DIR={personas}",
                    f"WEB_RUNTIME_DIR={tmp / 'rt'}",
                    f"FLASK_PORT={port}",
                    *(f"{name}={value}" for name, value in SECRETS.items()),
                ]
            )
            + "\n"
        )
        env_file.chmod(0o600)
        log = open(tmp / "voice.log", "wb")  # noqa: SIM115 - closed below
        environ = {k: v for k, v in os.environ.items() if not k.startswith(("WEB_", "FLASK_", "PERSONA"))}
        voice = subprocess.Popen(
            [sys.executable, str(ROOT / "main.py"), "--env", str(env_file), "run"],
            cwd=tmp,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=environ,
        )
        fish = Fish(f"http://127.0.0.1:{port}", env_file, tmp / "rt", personas, ollama, voice)
        try:
            wait_until(lambda: answers(f"{fish.base}/login"), "the page", 30)
            wait_until(lambda: ready(fish), "Billy to be ready", START_SECONDS, poll=0.5)
            yield fish
        finally:
            kill(fish.pid(VOICE_LOCK))
            kill(fish.pid(PAGE_LOCK))
            if voice.poll() is None:
                kill(voice.pid)
            voice.wait(10)
            log.close()


def ready(fish: Fish) -> bool:
    """Billy's channel says hello with ready: true."""
    hello = threading.Event()
    client = ChannelClient(
        fish.runtime / "billy.sock", lambda m: m.get("type") == "hello" and m.get("ready") and hello.set()
    )
    client.start()
    try:
        return hello.wait(1.0)
    finally:
        client.close()


@pytest.fixture(scope="module")
def browser(fish, tmp_path_factory):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--no-first-run",
        "--disable-sync",
        "--autoplay-policy=no-user-gesture-required",
        "--window-size=1400,1000",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium')}",
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options, service=Service("/usr/bin/chromedriver"))
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def wait_js(driver, script: str, what: str, timeout: float = 30.0):
    return wait_until(lambda: driver.execute_script(script), what, timeout, poll=0.05)


def text_of(driver, element_id: str) -> str:
    return driver.execute_script(f"return document.getElementById('{element_id}').textContent")


def test_log_in_edit_humor_and_talk(fish, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    browser.get(f"{fish.base}/")
    assert browser.current_url.endswith("/login")
    browser.find_element(By.ID, "password").send_keys(PASSWORD)
    browser.find_element(By.ID, "login").click()
    wait_until(lambda: text_of(browser, "state") == "idle", "the page to show Billy idle", 15)

    # Move the humor slider down to 10 with the keyboard, as a user can, and save.
    slider = browser.find_element(By.ID, "trait-humor")
    slider.send_keys(Keys.HOME)
    for _ in range(10):
        slider.send_keys(Keys.ARROW_RIGHT)
    assert text_of(browser, "trait-humor-level") == "10 min"
    browser.find_element(By.ID, "persona-save").click()
    wait_until(lambda: "Saved billy" in text_of(browser, "persona-status"), "the save", 15)
    ini = (fish.personas / "billy" / "persona.ini").read_text()
    assert "humor = 10" in ini and "sarcasm = 60" in ini and ini.startswith("# Billy, the default persona")

    # A typed turn: thinking, speaking, listening on the page, and the drawn mouth moves.
    states_before = browser.execute_script("return window.billyTrace.states.length")
    mouth_before = browser.execute_script("return window.billyTrace.mouthOpened")
    question = "What is the capital of France?"
    browser.find_element(By.ID, "talk-text").send_keys(question)
    browser.find_element(By.ID, "talk-send").click()
    wait_js(
        browser,
        f"""const s = window.billyTrace.states.slice({states_before});
        const t = s.indexOf('thinking'), p = s.indexOf('speaking', t), l = s.indexOf('listening', p);
        return t >= 0 && p > t && l > p;""",
        "thinking → speaking → listening",
    )
    assert browser.execute_script("return window.billyTrace.mouthOpened") > mouth_before
    assert browser.execute_script("return window.billyTrace.mouthMax") > 0.3
    wait_until(lambda: text_of(browser, "turn-transcript") == question, "the turn on the page", 10)
    assert text_of(browser, "turn-reply") == DEFAULT_REPLY
    assert browser.execute_script("return document.querySelectorAll('#latency .part').length") >= 2

    # The next turn's prompt used the new level.
    chats = [r for r in fish.ollama.requests if r["messages"][-1].get("content") == question]
    assert chats, "the brain never got the typed turn"
    system = chats[-1]["messages"][0]["content"]
    assert "- humor 10 (min): Never joke" in system


def test_settings_refuse_a_bad_value_and_never_show_secrets(fish, browser):
    from selenium.webdriver.common.by import By

    before = fish.env_file.read_bytes()
    browser.find_element(By.CSS_SELECTOR, "#settings-details summary").click()
    field = wait_until(lambda: browser.find_elements(By.ID, "set-END_SILENCE_MS"), "the settings form", 10)[0]
    field.clear()
    field.send_keys("fast")
    browser.find_element(By.ID, "settings-save").click()
    wait_until(lambda: text_of(browser, "err-END_SILENCE_MS"), "the error beside the field", 10)
    assert text_of(browser, "err-END_SILENCE_MS") == (
        "END_SILENCE_MS='fast' is not allowed: use a whole number from 100 to 3000."
    )
    assert "Nothing was saved" in text_of(browser, "settings-status")
    assert fish.env_file.read_bytes() == before
    source = browser.page_source
    assert browser.find_element(By.ID, "set-OPENAI_API_KEY").get_attribute("value") == ""
    for name, secret in SECRETS.items():
        assert secret not in source, name
        assert secret not in (fish.runtime / "web.log").read_text(), name


def test_the_page_killed_billy_keeps_answering_and_the_page_comes_back(fish, browser):
    page = fish.pid(PAGE_LOCK)
    assert page
    os.kill(page, signal.SIGKILL)
    killed = time.monotonic()

    turns: list[dict] = []
    got = threading.Event()

    def on_event(message: dict) -> None:
        if message.get("type") == "turn":
            turns.append(message)
            got.set()

    client = ChannelClient(fish.runtime / "billy.sock", on_event)  # the protocol, as the page speaks it
    client.start()
    try:
        wait_until(lambda: client.connected, "the channel", 5)
        client.request("talk", text="Are you still there?")
        assert got.wait(30), "Billy did not answer while his page was down"
        assert turns[-1]["transcript"] == "Are you still there?" and turns[-1]["reply"]
    finally:
        client.close()

    wait_until(lambda: answers(f"{fish.base}/login"), "the page to come back", 10)
    back = time.monotonic() - killed
    assert back < 10, f"the page came back after {back:.1f} s"
    assert fish.pid(PAGE_LOCK) not in (None, page)
    # The browser's live stream reconnects by itself, with the same session.
    wait_until(lambda: text_of(browser, "state") in ("idle", "listening"), "the page live again", 15)
    print(f"page back after {back:.1f} s")


def test_billy_killed_the_page_says_so_and_starts_him(fish, browser):
    from selenium.webdriver.common.by import By

    voice = fish.pid(VOICE_LOCK)
    assert voice
    os.kill(voice, signal.SIGKILL)
    wait_until(
        lambda: (
            browser.find_element(By.ID, "down").is_displayed()
            and text_of(browser, "down-text") == "Billy is not running."
        ),
        "the page to say Billy is not running",
        10,
    )
    assert text_of(browser, "state") == "offline"
    started = time.monotonic()
    browser.find_element(By.ID, "start-billy").click()
    wait_until(lambda: not browser.find_element(By.ID, "down").is_displayed(), "Billy to be back", START_SECONDS)
    wait_until(lambda: text_of(browser, "state") == "idle", "Billy idle again", 10)
    assert fish.pid(VOICE_LOCK) not in (None, voice)
    print(f"Billy back from the page's button after {time.monotonic() - started:.1f} s")

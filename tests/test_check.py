"""The doctor (`python main.py check`): each line found by trying a real part.

Real parts: mosquitto (anonymous and with a password), a fake Home Assistant and a fake
OpenAI-compatible server speaking HTTP, the fake Ollama through the real `ollama` client,
the real song and persona files, gpiozero's mock pins, and (in the slow test) an ALSA null
device that PortAudio opens like a sound card.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from gpiozero.pins.mock import MockFactory, MockPWMPin

import core.body.pins as pins
from core.config import ROOT, MotionSettings, Settings, load_settings
from core.dev import check as doctor
from core.dev import check_devices as devices
from core.dev import check_network as network
from tests.helpers.home_assistant import FakeHomeAssistant
from tests.helpers.http import base_url, serving
from tests.helpers.mosquitto import Mosquitto, free_port
from tests.helpers.ollama_server import FakeOllama

DEAD_URL = "http://127.0.0.1:{port}"


def settings_with(tmp_path: Path, **values: str) -> Settings:
    return load_settings(tmp_path / "none.env", {"PERSONA_DIR": str(ROOT / "personas"), **values})


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 30))


# --- MQTT against a real broker ---------------------------------------------------------


def test_mqtt_anonymous_broker_accepts(tmp_path: Path):
    with Mosquitto(tmp_path / "broker") as broker:
        line = network.check_mqtt(settings_with(tmp_path, MQTT_HOST=broker.host, MQTT_PORT=str(broker.port)))
    assert line.mark == "ok" and "accepts anonymous clients" in line.detail


def test_mqtt_password_broker_checks_the_credentials(tmp_path: Path):
    with Mosquitto(tmp_path / "broker", username="billy", password="fish-sticks") as broker:
        where = {"MQTT_HOST": broker.host, "MQTT_PORT": str(broker.port)}
        good = network.check_mqtt(settings_with(tmp_path, **where, MQTT_USERNAME="billy", MQTT_PASSWORD="fish-sticks"))
        wrong = network.check_mqtt(settings_with(tmp_path, **where, MQTT_USERNAME="billy", MQTT_PASSWORD="trout"))
        anonymous = network.check_mqtt(settings_with(tmp_path, **where))
    assert good.mark == "ok" and "accepts user 'billy'" in good.detail
    assert wrong.problem and "refused user 'billy'" in wrong.detail
    assert wrong.detail.endswith("check MQTT_USERNAME and MQTT_PASSWORD")
    assert "trout" not in wrong.detail
    assert anonymous.problem and anonymous.detail.endswith("set MQTT_USERNAME and MQTT_PASSWORD")


def test_mqtt_nothing_listening(tmp_path: Path):
    started = time.monotonic()
    line = network.check_mqtt(settings_with(tmp_path, MQTT_HOST="127.0.0.1", MQTT_PORT=str(free_port())))
    assert line.problem and "nothing listens at 127.0.0.1:" in line.detail and "broker runs" in line.detail
    assert time.monotonic() - started < network.NETWORK_TIMEOUT_S


def test_mqtt_not_set_is_not_a_problem(tmp_path: Path):
    line = network.check_mqtt(settings_with(tmp_path))
    assert line.mark == "--" and "MQTT_HOST" in line.detail


# --- Home Assistant over HTTP -----------------------------------------------------------


def test_home_assistant_token_accepted_and_rejected(tmp_path: Path):
    with FakeHomeAssistant(token="good-token") as ha:
        good = run(network.check_home_assistant(settings_with(tmp_path, HA_HOST=ha.url, HA_TOKEN="good-token")))
        bad = run(network.check_home_assistant(settings_with(tmp_path, HA_HOST=ha.url, HA_TOKEN="stale")))
    assert good.mark == "ok" and "accepts the token" in good.detail
    assert bad.problem and "rejected the token (HTTP 401)" in bad.detail and "HA_TOKEN" in bad.detail
    assert "stale" not in bad.detail


def test_home_assistant_unreachable_or_half_set(tmp_path: Path):
    dead = DEAD_URL.format(port=free_port())
    line = run(network.check_home_assistant(settings_with(tmp_path, HA_HOST=dead, HA_TOKEN="t")))
    assert line.problem and "cannot be reached" in line.detail and "HA_HOST" in line.detail
    half = run(network.check_home_assistant(settings_with(tmp_path, HA_HOST=dead)))
    assert half.problem and "HA_TOKEN is empty" in half.detail
    unset = run(network.check_home_assistant(settings_with(tmp_path)))
    assert unset.mark == "--"


# --- the cloud over HTTP ----------------------------------------------------------------


class FakeModels(ThreadingHTTPServer):
    """`GET /v1/models` as OpenAI answers it: 401 without the right key, `status` to force another answer."""

    def __init__(self, key: str = "sk-good", status: int = 200):
        self.key = key
        self.status = status
        super().__init__(("127.0.0.1", 0), _ModelsHandler)


class _ModelsHandler(BaseHTTPRequestHandler):
    server: FakeModels

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        if self.path != "/v1/models":
            status, body = 404, {"error": {"message": "not found"}}
        elif self.headers.get("Authorization") != f"Bearer {self.server.key}":
            status, body = 401, {"error": {"message": "Incorrect API key provided"}}
        elif self.server.status != 200:
            status, body = self.server.status, {"error": {"message": "quota"}}
        else:
            status, body = 200, {"object": "list", "data": [{"id": "gpt-4o-mini", "object": "model"}]}
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


def test_cloud_key_accepted_rejected_and_over_quota(tmp_path: Path):
    with serving(FakeModels()) as server:
        url = base_url(server)
        good = run(network.check_cloud(settings_with(tmp_path, OPENAI_BASE_URL=url, OPENAI_API_KEY="sk-good")))
        other_model = run(
            network.check_cloud(
                settings_with(tmp_path, OPENAI_BASE_URL=url, OPENAI_API_KEY="sk-good", OPENAI_MODEL="gpt-9")
            )
        )
        bad = run(network.check_cloud(settings_with(tmp_path, OPENAI_BASE_URL=url, OPENAI_API_KEY="sk-old")))
        wrong_url = run(
            network.check_cloud(settings_with(tmp_path, OPENAI_BASE_URL=base_url(server, ""), OPENAI_API_KEY="sk-good"))
        )
        server.status = 429
        broke = run(network.check_cloud(settings_with(tmp_path, OPENAI_BASE_URL=url, OPENAI_API_KEY="sk-good")))
    assert good.mark == "ok" and good.detail == f"{url} accepts the key"
    assert other_model.mark == "ok" and "does not list gpt-9: check OPENAI_MODEL" in other_model.detail
    assert bad.problem and "rejected the key (HTTP 401): check OPENAI_API_KEY" in bad.detail
    assert wrong_url.problem and "HTTP 404" in wrong_url.detail and "/v1" in wrong_url.detail
    assert broke.problem and "HTTP 429" in broke.detail
    assert run(network.check_cloud(settings_with(tmp_path))).mark == "--"


# --- Ollama through the real client -----------------------------------------------------


def test_ollama_has_the_model_or_says_how_to_pull_it(tmp_path: Path):
    with FakeOllama(models=["qwen2.5:1.5b"]) as server:
        good = run(network.check_ollama(settings_with(tmp_path, LOCAL_LLM_HOST=server.url)))
        missing = run(
            network.check_ollama(settings_with(tmp_path, LOCAL_LLM_HOST=server.url, LOCAL_LLM_MODEL="llama3.2"))
        )
    dead = run(network.check_ollama(settings_with(tmp_path, LOCAL_LLM_HOST=DEAD_URL.format(port=free_port()))))
    assert good.mark == "ok"
    assert missing.problem and "run `ollama pull llama3.2`" in missing.detail and "qwen2.5:1.5b" in missing.detail
    assert dead.problem and "not answering" in dead.detail and "ollama serve" in dead.detail


# --- files ------------------------------------------------------------------------------


def test_every_song_parses_or_is_named(tmp_path: Path):
    songs = tmp_path / "sounds" / "songs"
    shutil.copytree(ROOT / "sounds" / "songs" / "reef_shuffle", songs / "reef_shuffle")
    shutil.copytree(ROOT / "sounds" / "songs" / "reef_shuffle", songs / "broken")
    (songs / "broken" / "drums.wav").unlink()
    settings = replace(settings_with(tmp_path), sounds_dir=tmp_path / "sounds")
    lines = list(doctor.check_songs(settings))
    assert [line.mark for line in lines] == ["NO", "ok"]
    assert lines[0].detail == "broken: drums.wav is missing; fix the folder or remove it"
    assert lines[1].detail == "1 parse: Reef Shuffle"


def test_a_missing_persona_is_a_problem(tmp_path: Path):
    good = doctor._safely("persona", doctor.check_persona, settings_with(tmp_path))
    assert good.mark == "ok" and good.detail.startswith("billy parses")
    bad = doctor._safely("persona", doctor.check_persona, settings_with(tmp_path, PERSONA="nobody"))
    assert bad.problem and "PERSONA='nobody'" in bad.detail and "available: " in bad.detail


# --- devices ----------------------------------------------------------------------------


def _has_sound_card() -> bool:
    import sounddevice

    return any(index >= 0 for index in sounddevice.default.device)


@pytest.mark.skipif(_has_sound_card(), reason="this machine has a sound card")
def test_no_sound_card_is_not_reported_as_found(tmp_path: Path):
    settings = settings_with(tmp_path)
    mic, speaker = devices.check_microphone(settings), devices.check_speaker(settings)
    assert mic.problem and "plug in a mic or set MIC_PREFERENCE" in mic.detail
    assert speaker.problem and "plug in a speaker or set SPEAKER_PREFERENCE" in speaker.detail


def test_no_gpio_here_is_said_not_counted(tmp_path: Path):
    lines = list(devices.check_gpio(settings_with(tmp_path), model_files=(tmp_path / "none",)))
    assert [(line.mark, line.part) for line in lines] == [("--", "gpio")]
    assert "simulated" in lines[0].detail and "mouth GPIO17" in lines[0].detail


def test_a_pi_without_its_pin_library_is_a_problem(tmp_path: Path):
    model = tmp_path / "model"
    model.write_text("Raspberry Pi 4 Model B Rev 1.5")
    (line,) = devices.check_gpio(settings_with(tmp_path), model_files=(model,))
    assert line.problem and line.part == "gpio" and "setup/install.sh" in line.detail


def test_bad_pin_settings_are_a_problem(tmp_path: Path):
    settings = replace(settings_with(tmp_path), motion=MotionSettings(pin_overrides={"head": 17}))
    (line,) = devices.check_gpio(settings, model_files=(tmp_path / "none",))
    assert line.problem and line.part == "pins" and "GPIO17 is already the mouth pin" in line.detail


class _BusyFactory(MockFactory):
    def pin(self, name, pin_class=None, **kwargs):
        if int(str(name).removeprefix("GPIO")) == 24:
            raise RuntimeError("GPIO busy")
        return super().pin(name, pin_class, **kwargs)


@pytest.fixture
def pi_with(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Callable[[MockFactory, str], None]]:
    """Make check_gpio see a Pi whose pins come from `factory`, and a boot config with `config` in it."""

    def install(factory: MockFactory, config: str) -> None:
        choice = pins.FactoryChoice(factory, False, "Raspberry Pi 5 Model B Rev 1.0")
        monkeypatch.setattr(pins, "choose_pin_factory", lambda simulate, model_files=(): choice)
        (tmp_path / "config.txt").write_text(config)
        monkeypatch.setattr(pins, "BOOT_CONFIG_FILES", (tmp_path / "config.txt",))

    yield install


def test_a_pi_whose_pins_open(tmp_path: Path, pi_with):
    pi_with(MockFactory(pin_class=MockPWMPin), "[all]\ngpio=17,22=op,dl\n")
    lines = list(devices.check_gpio(settings_with(tmp_path)))
    assert [(line.mark, line.part) for line in lines] == [("ok", "gpio"), ("ok", "pins"), ("--", "boot pins")]
    assert "mouth GPIO17, head GPIO22, tail GPIO27, button GPIO24 open" in lines[1].detail
    assert "add `gpio=27=op,dl`" in lines[2].detail


def test_a_busy_button_pin_is_named(tmp_path: Path, pi_with):
    pi_with(_BusyFactory(pin_class=MockPWMPin), "gpio=17,22,27=op,dl\n")
    lines = list(devices.check_gpio(settings_with(tmp_path)))
    assert [(line.mark, line.part) for line in lines] == [("NO", "pins")]
    assert lines[0].detail.startswith("GPIO24 (button) is busy")


def test_pins_low_at_boot_reads_lists_and_ranges():
    text = "# gpio=2=op,dl\ngpio=5,6,12-13=op,dl\ngpio=19=ip,pu\ngpio=26=op,dh\n[pi5]\ngpio=27=dl,op  # ok\n"
    assert pins.pins_low_at_boot(text) == {5, 6, 12, 13, 27}


# --- the whole doctor -------------------------------------------------------------------


def test_exit_status_counts_the_no_lines(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    async def lines(found: list[doctor.Line]) -> AsyncIterator[doctor.Line]:
        for line in found:
            yield line

    printed: list[str] = []
    fine = [doctor.ok("a", "fine"), doctor.off("b", "not set up")]
    monkeypatch.setattr(doctor, "run_checks", lambda settings: lines(fine))
    assert run(doctor.check(settings_with(tmp_path), printed.append)) == 0
    assert printed == ["ok  a               fine", "--  b               not set up", "all good"]
    printed.clear()
    monkeypatch.setattr(doctor, "run_checks", lambda settings: lines([*fine, doctor.no("c", "broken: fix it")]))
    assert run(doctor.check(settings_with(tmp_path), printed.append)) == 1
    assert printed[-1] == "1 problem found: see the NO lines"


ASOUNDRC = """pcm.billynull {
    type null
    hint { show on description "Billy's test sound card (ALSA null)" }
}
pcm.!default { type plug slave.pcm "billynull" }
"""


@pytest.mark.slow
def test_the_real_command_on_a_null_sound_card(tmp_path: Path):
    """`python main.py check` in its own process: ALSA's null device stands in for a sound card (PortAudio
    opens it for real), a password broker refuses a wrong password, Home Assistant refuses a stale token."""
    home = tmp_path / "home"
    home.mkdir()
    (home / ".asoundrc").write_text(ASOUNDRC)
    with (
        Mosquitto(tmp_path / "broker", username="billy", password="right") as broker,
        FakeHomeAssistant(token="good-token") as ha,
    ):
        env_file = tmp_path / "billy.env"
        env_file.write_text(
            f"MQTT_HOST={broker.host}\nMQTT_PORT={broker.port}\nMQTT_USERNAME=billy\nMQTT_PASSWORD=wrong\n"
            f"HA_HOST={ha.url}\nHA_TOKEN=stale\nLOCAL_LLM_HOST={DEAD_URL.format(port=free_port())}\n"
        )
        started = time.monotonic()
        result = subprocess.run(
            [sys.executable, str(ROOT / "main.py"), "--env", str(env_file), "check"],
            cwd=tmp_path,
            env={**os.environ, "HOME": str(home)},
            capture_output=True,
            text=True,
            timeout=180,
        )
        took = time.monotonic() - started
    lines = {line[4:19].strip(): line for line in result.stdout.splitlines() if line[:3] in ("ok ", "NO ", "-- ")}
    assert result.returncode == 1, result.stdout + result.stderr
    for part in ("settings", "persona", "songs", "mic", "speaker", "speech to text", "voice", "embedded brain"):
        assert lines[part].startswith("ok "), lines.get(part)
    assert "opens and records" in lines["mic"] and "opens and plays" in lines["speaker"]
    assert lines["gpio"].startswith("-- ")
    assert lines["mqtt"].startswith("NO ") and "check MQTT_USERNAME and MQTT_PASSWORD" in lines["mqtt"]
    assert lines["home assistant"].startswith("NO ") and "rejected the token" in lines["home assistant"]
    assert lines["ollama"].startswith("NO ") and "ollama serve" in lines["ollama"]
    assert result.stdout.rstrip().endswith("3 problems found: see the NO lines")
    assert took < 90, f"the doctor took {took:.0f} s"

"""Settings: defaults, .env vs environment, and a clear error for every kind of bad value."""

import re
from pathlib import Path

import pytest

from core.config import ROOT, load_settings
from core.errors import BadSetting


def load(tmp_path: Path, env_text: str = "", **environ: str):
    env = tmp_path / ".env"
    env.write_text(env_text)
    return load_settings(env, environ)


def test_defaults_when_nothing_is_set(tmp_path):
    s = load(tmp_path)
    assert s.session.run_mode == "normal"
    assert s.endpoint.end_silence_ms <= 600
    assert s.motion.billy_model == "modern" and s.motion.pin_layout == "new"
    assert not s.mqtt.enabled and not s.home_assistant.enabled and not s.models.cloud_enabled


def test_empty_value_means_not_set_and_environment_wins(tmp_path):
    s = load(tmp_path, "RUN_MODE=\nMIC_TIMEOUT_SECONDS=9\nMQTT_HOST=broker\n", MIC_TIMEOUT_SECONDS="3.5")
    assert s.session.run_mode == "normal"
    assert s.session.mic_timeout_seconds == 3.5
    assert s.mqtt.enabled and s.mqtt.host == "broker"


@pytest.mark.parametrize(
    ("name", "value", "allowed"),
    [
        ("RUN_MODE", "sleepy", "normal, dory"),
        ("BILLY_MODEL", "robot", "modern, classic"),
        ("MOUTH_ARTICULATION", "11", "from 0 to 10"),
        ("MOUTH_ARTICULATION", "loud", "whole number"),
        ("MQTT_PORT", "70000", "from 1 to 65535"),
        ("WAKE_WORD_THRESHOLD", "1.5", "from 0 to 1"),
        ("WAKE_WORD_ENABLED", "maybe", "true or false"),
        ("LOCAL_LLM_HOST", "localhost:11434", "http://"),
        ("LOCAL_TTS_VOICE", "/nowhere/voice.onnx", "no such file"),
        ("BILLY_PIN_MOUTH", "40", "from 0 to 27"),
        ("MQTT_TOPIC_PREFIX", "billy/#", "without + or #"),
    ],
)
def test_bad_value_names_variable_value_and_what_is_allowed(tmp_path, name, value, allowed):
    with pytest.raises(BadSetting) as err:
        load(tmp_path, f"{name}={value}\n")
    message = str(err.value)
    assert name in message and repr(value) in message and allowed in message
    assert "\n" not in message


def test_pin_overrides_are_collected(tmp_path):
    s = load(tmp_path, "BILLY_PIN_MOUTH=5\nBILLY_PIN_BUTTON=\n")
    assert s.motion.pin_overrides == {"mouth": 5}


def test_env_example_documents_every_setting_and_loads(tmp_path):
    example = (ROOT / ".env.example").read_text()
    documented = set(re.findall(r"^([A-Z][A-Z0-9_]+)=", example, re.M))
    source = (ROOT / "core" / "config.py").read_text()
    parsed = set(re.findall(r'"([A-Z][A-Z0-9_]+)"', source)) - {"BILLY_PIN_", "INFO"}
    assert parsed <= documented, f"undocumented in .env.example: {sorted(parsed - documented)}"
    assert documented <= parsed, f"documented but never read: {sorted(documented - parsed)}"
    s = load_settings(ROOT / ".env.example", {})
    assert s.persona.name == "billy"


def test_cli_reports_bad_setting_in_one_line(tmp_path):
    import subprocess
    import sys

    env = tmp_path / ".env"
    env.write_text("RUN_MODE=sideways\n")
    proc = subprocess.run(
        [sys.executable, str(ROOT / "main.py"), "--env", str(env), "check"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0
    assert "RUN_MODE='sideways'" in proc.stderr and "normal, dory" in proc.stderr

"""Settings as the page edits them: `.env` written back whole, checked like at start-up."""

from __future__ import annotations

import re
import stat

import pytest
from dotenv import dotenv_values

from core.config import ROOT, load_settings
from core.envfile import SECRETS, format_value, render, update_env_file
from core.errors import BadSetting
from core.web.envschema import candidate_from, check, field_names, read_schema

NASTY = [
    "plain",
    "two words",
    "with # hash",
    "it's",
    'say "hi"',
    "back\\slash",
    "dollar $HOME",
    "both ' and \"",
    "  ",
    "ünïcødé 🐟",
    "a=b",
]


@pytest.mark.parametrize("value", NASTY)
def test_every_value_reads_back_unchanged(tmp_path, value):
    env = tmp_path / ".env"
    env.write_text(render("# a comment\nOTHER=1\n", {"NAME": value}))
    assert dotenv_values(env)["NAME"] == value
    assert dotenv_values(env)["OTHER"] == "1"


def test_values_a_line_cannot_hold_are_refused():
    for value in ("two\nlines", "nul\0byte", "a ${VARIABLE}"):
        with pytest.raises(BadSetting):
            format_value("NAME", value)


def test_only_the_changed_lines_change(tmp_path):
    text = "# keep me\nRUN_MODE=normal  # trailing\n\nexport MQTT_HOST=broker\nLOG_LEVEL=\n"
    out = render(text, {"MQTT_HOST": "new-broker", "FLASK_PORT": "9000"})
    assert out == "# keep me\nRUN_MODE=normal  # trailing\n\nMQTT_HOST=new-broker\nLOG_LEVEL=\nFLASK_PORT=9000\n"


def test_update_keeps_a_backup_and_the_file_mode(tmp_path):
    env = tmp_path / ".env"
    env.write_text("RUN_MODE=normal\nOPENAI_API_KEY=sk-old\n")
    env.chmod(0o640)
    update_env_file(env, {"RUN_MODE": "dory"})
    assert dotenv_values(env) == {"RUN_MODE": "dory", "OPENAI_API_KEY": "sk-old"}
    assert (tmp_path / ".env.bak").read_text() == "RUN_MODE=normal\nOPENAI_API_KEY=sk-old\n"
    assert stat.S_IMODE(env.stat().st_mode) == 0o640
    assert stat.S_IMODE((tmp_path / ".env.bak").stat().st_mode) == 0o640
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_a_missing_file_starts_from_the_example_and_is_private(tmp_path):
    env = tmp_path / ".env"
    update_env_file(env, {"PERSONA": "pirate"})
    assert stat.S_IMODE(env.stat().st_mode) == 0o600
    text = env.read_text()
    assert "# --- personality" in text and "PERSONA=pirate" in text
    assert load_settings(env, {}).persona.name == "pirate"


def test_the_schema_is_every_variable_of_the_example_with_its_explanation():
    schema = read_schema()
    fields = field_names(schema)
    documented = set(re.findall(r"^([A-Z][A-Z0-9_]+)=", (ROOT / ".env.example").read_text(), re.M))
    assert documented <= set(fields)
    assert {"BILLY_PIN_MOUTH", "BILLY_PIN_TAIL_B", "BILLY_PIN_BUTTON"} <= set(fields)
    assert [g.title for g in schema][:3] == ["the fish", "conversation", "audio"]
    assert fields["END_SILENCE_MS"].default == "400" and "Silence" in fields["END_SILENCE_MS"].help
    assert fields["SPEAKER_PREFERENCE"].help == fields["MIC_PREFERENCE"].help  # one comment for both
    assert {f.name for f in fields.values() if f.secret} == SECRETS
    assert fields["PERSONA"].applies == "live" and fields["FLASK_PORT"].applies == "page"
    assert fields["RUN_MODE"].applies == "restart"


def test_check_names_every_bad_value_with_the_start_up_sentence():
    errors = check(
        {"END_SILENCE_MS": "fast", "RUN_MODE": "sideways", "MQTT_PORT": "1883", "WEB_PASSWORD": "abc12"},
        persona_names=["billy"],
    )
    assert set(errors) == {"END_SILENCE_MS", "RUN_MODE", "WEB_PASSWORD"}
    assert errors["END_SILENCE_MS"] == "END_SILENCE_MS='fast' is not allowed: use a whole number from 100 to 3000."
    assert "normal, dory" in errors["RUN_MODE"]
    assert "abc12" not in errors["WEB_PASSWORD"]  # a secret's value is never echoed
    assert check({"PERSONA": "nobody"}, persona_names=["billy", "pirate"]) == {
        "PERSONA": "PERSONA='nobody' is not allowed: no such persona; available: billy, pirate."
    }
    assert check({"PERSONA": "pirate", "LOG_LEVEL": "debug"}, persona_names=["billy", "pirate"]) == {}


def test_an_empty_secret_keeps_it_and_clear_empties_it():
    known = field_names(read_schema())
    current = {"OPENAI_API_KEY": "sk-old", "RUN_MODE": "normal"}
    values, changed = candidate_from({"OPENAI_API_KEY": "", "RUN_MODE": "dory"}, [], current, known)
    assert changed == {"RUN_MODE": "dory"} and values["OPENAI_API_KEY"] == "sk-old"
    _, changed = candidate_from({}, ["OPENAI_API_KEY"], current, known)
    assert changed == {"OPENAI_API_KEY": ""}
    with pytest.raises(ValueError, match="not a setting"):
        candidate_from({"PATH": "/evil"}, [], current, known)
    with pytest.raises(ValueError, match="text"):
        candidate_from({"RUN_MODE": ["dory"]}, [], current, known)

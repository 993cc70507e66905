"""The tool registry: schemas, lenient coercion, validation, and every kind of malformed call."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

import pytest

from core.config import ROOT, HomeAssistantSettings, PersonaSettings
from core.home.homeassistant import HomeAssistantClient
from core.interfaces import ToolCall
from core.persona.store import PersonaStore
from core.talk.schema import validate
from core.talk.tools import ResolvedCall, ToolRegistry, normalize_tool_name
from tests.helpers.home_assistant import FakeHomeAssistant

SONGS = ["Take Me to the River", "Don't Worry, Be Happy", "Fishsticks"]


@pytest.fixture
def personas(tmp_path: Path) -> PersonaStore:
    shutil.copytree(ROOT / "personas" / "billy", tmp_path / "billy")
    return PersonaStore(PersonaSettings(name="billy", directory=tmp_path, allow_update_ini=True))


@pytest.fixture
def registry(personas: PersonaStore) -> ToolRegistry:
    return ToolRegistry(personas, lambda: list(SONGS), None)


def _call(registry: ToolRegistry, name: str, arguments) -> object:
    return asyncio.run(asyncio.wait_for(registry.call(ToolCall(name=name, arguments=arguments)), 10))


def test_schemas_are_openai_functions_in_a_fixed_order(registry):
    schemas = registry.schemas()
    assert [s["function"]["name"] for s in schemas] == ["update_personality", "play_song", "end_conversation"]
    assert all(s["type"] == "function" and s["function"]["parameters"]["type"] == "object" for s in schemas)
    song = schemas[1]["function"]
    assert song["parameters"]["properties"]["song"]["enum"] == sorted(SONGS, key=str.lower)
    assert all(title in song["description"] for title in SONGS)
    assert json.dumps(schemas) == json.dumps(registry.schemas())  # stable for the prompt cache


def test_smart_home_command_is_offered_only_when_home_assistant_is_configured(personas):
    unset = HomeAssistantClient(HomeAssistantSettings())
    assert "smart_home_command" not in ToolRegistry(personas, list, unset).names()
    ready = HomeAssistantClient(HomeAssistantSettings(host="http://127.0.0.1:9", token="t"))
    assert "smart_home_command" in ToolRegistry(personas, list, ready).names()


@pytest.mark.parametrize(
    "arguments",
    [
        {"humor": 90},
        {"humor": "90"},
        {"humor": "90%"},
        {"humor": "ninety percent"},
        {"Humour": 90},
        {"humor": {"value": 90}},
        {"traits": {"humor": 90}},
        {"trait": "humor", "value": "ninety"},
        {"arguments": {"humor": 90}},
        '{"humor": 90}',
        "{'humor': 90,}",
        '{"traits": [{"trait": "humour", "value": 90}]}',
    ],
)
def test_update_personality_accepts_every_sloppy_shape(registry, personas, arguments):
    outcome = _call(registry, "update_personality", arguments)
    assert not outcome.error, outcome.result
    assert outcome.persona_changed and "humor 90" in outcome.result
    assert personas.current().traits["humor"] == 90
    assert "humor = 90\n" in personas.path.read_text()


def test_level_names_and_relative_words_work(registry, personas):
    before = personas.current().traits["sarcasm"]
    _call(registry, "update_personality", {"sarcastic": "more", "warmth": "max", "formality": "low"})
    traits = personas.current().traits
    assert traits["sarcasm"] == min(100, before + 20)
    assert (traits["warmth"], traits["formality"]) == (95, 25)


def test_in_memory_only_when_the_ini_may_not_be_updated(tmp_path):
    shutil.copytree(ROOT / "personas" / "billy", tmp_path / "billy")
    store = PersonaStore(PersonaSettings(name="billy", directory=tmp_path, allow_update_ini=False))
    text = store.path.read_text()
    outcome = _call(ToolRegistry(store, list, None), "update_personality", {"humor": 3})
    assert "session only" in outcome.result and store.current().traits["humor"] == 3
    assert store.path.read_text() == text


@pytest.mark.parametrize(
    ("name", "arguments", "expected"),
    [
        ("launch_rockets", {}, "no tool called 'launch_rockets'. The tools are: update_personality, play_song"),
        ("update_personality", "{humor: ninety", "not valid JSON"),
        ("update_personality", "[1, 2]", "not valid JSON"),
        ("update_personality", {"humor": True}, "humor"),
        ("update_personality", {"humor": [80]}, "humor"),
        ("update_personality", {"sparkle": 80}, "'sparkle' are not traits"),
        ("update_personality", {}, "no trait to change"),
        ("play_song", {"song": "Macarena"}, "no song called 'Macarena'; the installed songs are"),
        ("play_song", {"song": {"title": 5}}, "'song' must be string"),
        ("smart_home_command", {"prompt": "lights"}, "no tool called"),
    ],
)
def test_bad_calls_come_back_as_clear_errors_and_never_raise(registry, personas, name, arguments, expected):
    text = personas.path.read_text()
    outcome = _call(registry, name, arguments)
    assert outcome.error and expected in outcome.result
    assert personas.path.read_text() == text


@pytest.mark.parametrize(
    ("wanted", "title"),
    [("take me to the river", "Take Me to the River"), ("dont worry be happy", "Don't Worry, Be Happy"),
     ("fish sticks", "Fishsticks"), ("Fishstiks", "Fishsticks"), ("river", "Take Me to the River")],
)  # fmt: skip
def test_play_song_finds_the_installed_title(registry, wanted, title):
    outcome = _call(registry, "playSong", {"song": wanted})
    assert (outcome.song, outcome.error) == (title, False)


def test_play_song_without_a_title_picks_an_installed_one(registry):
    for arguments in ({}, {"song": "any"}, {"song": ""}, None):
        assert _call(registry, "play_song", arguments).song in SONGS


def test_play_song_with_no_songs_installed_says_so(personas):
    outcome = _call(ToolRegistry(personas, list, None), "play_song", {"song": "x"})
    assert outcome.error and "no songs are installed" in outcome.result and outcome.song is None


def test_end_conversation_sets_the_flag(registry):
    outcome = _call(registry, "end_conversation", {})
    assert outcome.end_conversation is True and not outcome.error
    assert _call(registry, "goodbye", "").end_conversation is True
    assert _call(registry, "play_song", {"song": "river"}).end_conversation is None


def test_smart_home_command_reaches_home_assistant_and_reports_errors(personas, caplog):
    with FakeHomeAssistant(token="good-token") as ha:
        client = HomeAssistantClient(HomeAssistantSettings(host=ha.url, token="good-token"))
        registry = ToolRegistry(personas, list, client)
        outcome = _call(registry, "smart_home_command", {"command": "turn on the kitchen lights"})
        assert outcome.result == "Home Assistant says: Turned on the lights"
        assert ha.requests[-1][1]["text"] == "turn on the kitchen lights"
        bad = ToolRegistry(personas, list, HomeAssistantClient(HomeAssistantSettings(host=ha.url, token="nope")))
        outcome = _call(bad, "smart_home_command", {"prompt": "turn on the kitchen lights"})
        assert outcome.error and "not answering" in outcome.result and ha.url not in outcome.result
        assert any("rejected the token" in r.getMessage() for r in caplog.records)  # the reason is in the log
        refused = _call(registry, "smart_home_command", {"prompt": "feed the unicorn"})
        assert (
            refused.error
            and refused.result == "Home Assistant says: Sorry, I am not aware of any device called unicorn"
        )


def test_resolve_has_no_side_effects(registry, personas):
    text = personas.path.read_text()
    resolved = registry.resolve(ToolCall(name="Update-Personality", arguments={"humour": "high"}))
    assert resolved == ResolvedCall("update_personality", {"humor": 75})
    assert personas.path.read_text() == text


def test_normalize_tool_name():
    assert normalize_tool_name("functions.playSong") == "play_song"
    assert normalize_tool_name(" End-Conversation ") == "end_conversation"


def test_validate_covers_our_schema_subset():
    schema = {
        "type": "object",
        "properties": {"n": {"type": "integer", "minimum": 0, "maximum": 10}, "s": {"type": "string", "enum": ["a"]}},
        "required": ["s"],
        "additionalProperties": False,
    }
    assert validate(schema, {"s": "a", "n": 3}) == []
    problems = validate(schema, {"n": 11, "x": 1})
    assert any("required 's'" in p for p in problems)
    assert any("at most 10" in p for p in problems)
    assert any("'x' is not an argument" in p for p in problems)
    assert sorted(validate(schema, {"s": "b", "n": True})) == [
        "'n' must be integer, not bool True",
        "'s' must be one of 'a', not 'b'",
    ]
    assert validate(schema, []) == ["arguments must be object, not list []"]

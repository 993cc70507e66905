"""Understanding before any model: Billy's templates, then Home Assistant's agent, else the brain.

Real parts: the project's sentence templates (hassil), the real tool registry and persona
store on a copy of the personas, the installed songs, and the real Home Assistant client
talking HTTP to a server that speaks HA's conversation API.
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest

from core.body.songs import SongLibrary
from core.config import ROOT, HomeAssistantSettings, PersonaSettings
from core.home.homeassistant import HomeAssistantClient
from core.persona.store import PersonaStore
from core.talk.parts import build_talk_parts
from core.talk.understand import BRAIN, HOME_ASSISTANT, TEMPLATES, Handled
from tests.helpers.fakes import make_session, reply, running, utterance
from tests.helpers.home_assistant import FakeHomeAssistant


@pytest.fixture
def personas(tmp_path: Path) -> PersonaStore:
    shutil.copytree(ROOT / "personas", tmp_path / "personas")
    return PersonaStore(PersonaSettings(name="billy", directory=tmp_path / "personas"))


def _parts(personas: PersonaStore, home: HomeAssistantClient | None = None):
    return build_talk_parts(personas, SongLibrary(ROOT / "sounds" / "songs"), home)


def _handle(parts, text: str, order: list[str] | None = None) -> Handled | None:
    async def commit() -> None:
        if order is not None:
            order.append("commit")

    async def run() -> Handled | None:
        return await parts.understanding.handle(text, parts.understanding.recognize(text), commit)

    return asyncio.run(asyncio.wait_for(run(), 10))


def test_a_personality_command_is_carried_out_after_the_commit_and_acknowledged(personas) -> None:
    parts = _parts(personas)
    order: list[str] = []
    parts.personas.subscribe(lambda persona: order.append(f"humor {persona.traits['humor']}"))
    handled = _handle(parts, "Could you set your humor to ninety percent?", order)
    assert order == ["commit", "humor 90"]
    assert handled.decided_by == TEMPLATES and handled.tool.name == "update_personality"
    assert handled.tool.arguments == {"humor": 90} and handled.tool.decided_by == TEMPLATES
    assert "humor up to 90" in handled.speech
    assert "humor = 90" in personas.path.read_text()


def test_a_song_and_a_goodbye(personas) -> None:
    parts = _parts(personas)
    song = _handle(parts, "Sing me the reef shuffle song!")
    assert song.tool.arguments == {"song": "Reef Shuffle"} and song.song.title == "Reef Shuffle"
    assert "Reef Shuffle" in song.speech and not song.end
    bye = _handle(parts, "Okay thanks, bye Billy.")
    assert bye.end and bye.tool.name == "end_conversation"


def test_home_assistant_judges_what_the_templates_do_not_know(personas) -> None:
    with FakeHomeAssistant() as ha:
        parts = _parts(personas, HomeAssistantClient(HomeAssistantSettings(host=ha.url, token="good-token")))
        handled = _handle(parts, "Turn on the kitchen lights please")
        assert handled.decided_by == HOME_ASSISTANT and handled.speech == "Turned on the lights"
        assert handled.tool.name == "smart_home_command"
        assert handled.tool.arguments == {"prompt": "Turn on the kitchen lights please"}
        assert handled.tool.result == "Turned on the lights"
        unknown = _handle(parts, "Turn on the unicorn")  # HA knows no such device: its words are spoken
        assert unknown.speech == "Sorry, I am not aware of any device called unicorn"
        assert _handle(parts, "What is your favourite colour?") is None  # no intent matched: the brain answers
        asked = len(ha.requests)
        assert _handle(parts, "Should I turn on the kitchen lights?") is None  # advice never becomes an action
        assert _handle(parts, "Set your sarcasm to twenty").decided_by == TEMPLATES
        assert len(ha.requests) == asked  # neither went to Home Assistant


def test_a_dead_home_assistant_is_said_plainly_and_chat_still_reaches_the_brain(personas, caplog) -> None:
    with FakeHomeAssistant() as ha:
        url = ha.url
    parts = _parts(personas, HomeAssistantClient(HomeAssistantSettings(host=url, token="t", timeout_seconds=1)))
    handled = _handle(parts, "Turn off the living room lamp")
    assert handled.tool is None and url not in handled.speech and "Error" not in handled.speech
    assert handled.speech in parts.responses._lines["home_unreachable"]
    assert any(url in r.getMessage() for r in caplog.records)  # the address is in the log, not in his mouth
    assert _handle(parts, "Tell me a story about the sea") is None


def test_without_home_assistant_a_home_command_is_not_made_up(personas) -> None:
    parts = _parts(personas)
    handled = _handle(parts, "Lock the front door")
    assert handled.tool is None and handled.speech in parts.responses._lines["home_not_set_up"]
    assert _handle(parts, "Is it a good idea to lock the front door?") is None


def test_a_change_that_cannot_be_saved_is_kept_and_said(personas, monkeypatch) -> None:
    def disk_full(path, data) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("core.persona.store.write_atomic", disk_full)
    before = personas.path.read_text()
    handled = _handle(_parts(personas), "Be a lot more sarcastic")
    assert personas.unsaved and personas.current().traits["sarcasm"] == 95  # kept in memory
    assert personas.path.read_text() == before  # no half file
    assert "couldn't save" in handled.speech


def test_a_session_turn_decided_by_templates_never_asks_the_brain(tmp_path, personas) -> None:
    parts = _parts(personas)

    async def scenario() -> None:
        rig = make_session(tmp_path, ["Be more curious, Billy."], [], understanding=parts.understanding)
        async with running(rig):
            rig.session.press()
            await rig.ask(utterance())
            await rig.wait_for(lambda: rig.records, 10, "a turn")
        record = rig.records[0]
        assert record.decided_by == TEMPLATES and record.tool_calls[0].arguments == {"curiosity": 75}
        assert "curiosity up to 75" in record.reply and rig.brain.calls == []
        assert rig.synthesizer.texts and "curiosity up to 75" in " ".join(rig.synthesizer.texts)

    asyncio.run(asyncio.wait_for(scenario(), 30))


def test_what_the_templates_do_not_know_goes_to_the_brain(tmp_path, personas) -> None:
    parts = _parts(personas)

    async def scenario() -> None:
        brain = [reply("Plankton, mostly.")]
        rig = make_session(tmp_path, ["What do you eat?"], brain, understanding=parts.understanding, RUN_MODE="dory")
        async with running(rig):
            rig.session.press()
            await rig.ask(utterance())
            await rig.idle(10)
        assert rig.records[0].decided_by == BRAIN and rig.records[0].reply == "Plankton, mostly."

    asyncio.run(asyncio.wait_for(scenario(), 30))

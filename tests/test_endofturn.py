"""Deciding the end of a turn by meaning as well as by silence.

A whole request is answered once END_SILENCE_MS has passed; a phrase cut off mid-way
("...next to the") waits out PAUSE_TOLERANCE_MS, so a speaker who goes on is never cut off.
The session tests drive the real session (real endpointer with an energy detector, real
templates and word lists) with a scripted transcriber and brain.
"""

from __future__ import annotations

import asyncio
import shutil

import numpy as np
import pytest

from core.body.songs import SongLibrary
from core.config import ROOT, PersonaSettings
from core.persona.store import PersonaStore
from core.talk.endofturn import TurnEndings
from core.talk.parts import build_talk_parts
from tests.helpers.fakes import make_session, reply, running, silence, speech

ENDINGS = TurnEndings()


@pytest.mark.parametrize(
    "text",
    ["How old are you?", "Turn on the kitchen lights.", "Tell me a joke.", "Where are you from?", "Switch it on",
     "What is the weather like?", "Play reef shuffle please"],
)  # fmt: skip
def test_whole_requests(text: str) -> None:
    assert ENDINGS.finished(text)


@pytest.mark.parametrize(
    "text",
    ["Dim the lamp next to the", "Set the", "I would like to know.", "I want to know if...", "Turn on the light and",
     "What do you think about", "Could you turn on the light in the", "Um,", ""],
)  # fmt: skip
def test_phrases_cut_off_mid_way(text: str) -> None:
    assert not ENDINGS.finished(text)


def _understanding(tmp_path):
    shutil.copytree(ROOT / "personas", tmp_path / "personas")
    personas = PersonaStore(PersonaSettings(name="billy", directory=tmp_path / "personas"))
    return build_talk_parts(personas, SongLibrary(ROOT / "sounds" / "songs"), None).understanding


TIMING = {"END_SILENCE_MS": "400", "PAUSE_TOLERANCE_MS": "700", "RUN_MODE": "dory"}


def test_a_whole_question_is_answered_without_waiting_out_the_pause_tolerance(tmp_path) -> None:
    async def scenario():
        rig = make_session(
            tmp_path, ["How old are you?"], [reply("Older than the toaster.")],
            understanding=_understanding(tmp_path), **TIMING,
        )  # fmt: skip
        async with running(rig):
            rig.session.press()
            handle = await rig.ask(np.concatenate([silence(0.06), speech(0.3)]))
            await rig.idle(10)
        (record,) = rig.records
        assert record.reply == "Older than the toaster."
        assert record.latency_ms["hold"] < 400  # at most the end silence, never the pause tolerance
        first = rig.played.first_sound()
        assert first is not None and first - handle.ended_at < 0.4 + 0.7  # heard before the old floor allowed

    asyncio.run(asyncio.wait_for(scenario(), 30))


def test_a_phrase_cut_off_mid_way_waits_and_a_600_ms_pause_is_one_turn(tmp_path) -> None:
    def transcript(seconds: float) -> str:
        return "Tell me about the crab next to the rock." if seconds > 0.9 else "Tell me about the crab next to the"

    async def scenario():
        rig = make_session(
            tmp_path, [transcript], [lambda messages: reply("He is a grumpy old crab.")],
            understanding=_understanding(tmp_path), **TIMING,
        )  # fmt: skip
        async with running(rig):
            rig.session.press()
            handle = await rig.ask(np.concatenate([silence(0.06), speech(0.3), silence(0.6), speech(0.3)]))
            await rig.idle(10)
        (record,) = rig.records  # one turn, not one per half
        assert record.transcript == "Tell me about the crab next to the rock."
        assert [m["content"] for m in rig.brain.calls[-1] if m["role"] == "user"] == [record.transcript]
        assert rig.played.sound_seconds(before=handle.ended_at) == 0  # nothing said over the second half

    asyncio.run(asyncio.wait_for(scenario(), 30))

"""The reply guard, and the brain's part of a turn around it (resample, fallback line, cut)."""

from __future__ import annotations

import asyncio

import pytest

from core.interfaces import TurnRecord
from core.talk.guard import ReplyGuard
from core.talk.history import History
from core.talk.prompt import instruction_texts
from core.talk.think import Thinker
from tests.helpers.fakes import FakeTools, ScriptedBrain, reply

GUARD = ReplyGuard(lambda: instruction_texts())


@pytest.mark.parametrize(
    "sentence",
    [
        "As an AI language model, I cannot eat.",
        "As a fish-loving AI, my primary function is to help.",
        "The conversation ends after this reply.",
        "Billy stops listening now.",
        "Home Assistant's response: 1. The user specified the action.",
        "A: Hello there. B: Hi!",
        "User: what is the weather",
        "- first item",
        "1. Open the door",
        "Here is **bold** text.",
        "Answer the question in one or two short sentences.",
        "Put a quip or a pun in most answers, I always say.",
        "I will call the tool smart_home_command for you.",
        "Visit https://example.com for more.",
        "<|im_start|>assistant",
        "...",
    ],
)
def test_leaks_scripts_lists_and_meta_text_are_refused(sentence: str) -> None:
    assert GUARD.check(sentence) is not None


@pytest.mark.parametrize(
    "sentence",
    [
        "The capital of France is Paris, even a fish knows that.",
        "I'm a singing fish on a wall plaque, and proud of it!",
        "Why did the fish blush? Because it saw the ocean's bottom.",
        "Sure, I can be funnier.",
        "Tools? I only have fins.",
        "Two plus two is four.",
    ],
)
def test_ordinary_answers_pass(sentence: str) -> None:
    assert GUARD.check(sentence) is None


def test_a_rerun_of_the_previous_answer_or_an_echo_of_the_question_is_refused() -> None:
    previous = "Paris is the capital of France. It has a big tower."
    assert GUARD.check("Paris is the capital of France.", previous=previous) == "repeats the previous answer"
    assert GUARD.check("What should I cook for dinner tonight?", question="What should I cook for dinner tonight?")
    assert GUARD.check("Paris is lovely in spring.", previous=previous) is None
    assert GUARD.check("Paris is the capital of France.", spoken="Well.", previous=previous) is None


def _think(brain: ScriptedBrain, text: str = "Tell me something.") -> tuple[list[str], TurnRecord, History]:
    history = History(1500)
    said: list[str] = []
    record = TurnRecord(transcript=text)
    thinker = Thinker(brain, FakeTools(), lambda: "system", history, GUARD, lambda: "Blub, ask me again?")

    async def nothing() -> None:
        return None

    thought = asyncio.run(asyncio.wait_for(thinker.think(text, said.append, record, 0.0, nothing), 10))
    assert thought.reply == " ".join(said)
    return said, record, history


def test_a_reply_that_fails_is_sampled_once_more() -> None:
    brain = ScriptedBrain([reply("As an AI, I have no favourite food."), reply("Plankton, obviously. Crunchy.")])
    said, record, history = _think(brain)
    assert said == ["Plankton, obviously.", "Crunchy."]
    assert len(brain.calls) == 2 and len(record.guard) == 1 and "meta text" in record.guard[0]
    assert history.messages()[-1] == {"role": "assistant", "content": "Plankton, obviously. Crunchy."}


def test_two_failures_end_in_billys_own_line_and_keep_the_history_clean() -> None:
    brain = ScriptedBrain([reply("A: hi there. B: hello."), reply("The user asked a question.")])
    said, record, history = _think(brain)
    assert said == ["Blub, ask me again?"]
    assert len(record.guard) == 2
    assert history.messages()[-1]["content"] == "Blub, ask me again?"


def test_a_reply_that_goes_bad_halfway_is_cut_there() -> None:
    brain = ScriptedBrain([reply("Fish are great swimmers. As an AI I must add that. They never sleep.")])
    said, record, _ = _think(brain)
    assert said == ["Fish are great swimmers."]
    assert len(brain.calls) == 1 and len(record.guard) == 1

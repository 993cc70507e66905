"""A whole tool round trip over real HTTP: a scripted Ollama server asks for a tool, the real
`OllamaBrain` reads the call, `ToolRegistry` runs it, and the result goes back to the model."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest

from core.brains.ollama import OllamaBrain
from core.brains.toolparse import TextToolCallFilter
from core.config import ROOT, HomeAssistantSettings, PersonaSettings
from core.home.homeassistant import HomeAssistantClient
from core.interfaces import BrainDone, TextDelta, ToolCall
from core.persona.store import PersonaStore
from core.talk.prompt import build_system_prompt
from core.talk.tools import ToolRegistry
from tests.helpers.home_assistant import FakeHomeAssistant
from tests.helpers.ollama_server import FakeOllama, Reply


@pytest.fixture
def personas(tmp_path: Path) -> PersonaStore:
    shutil.copytree(ROOT / "personas" / "billy", tmp_path / "billy")
    return PersonaStore(PersonaSettings(name="billy", directory=tmp_path, allow_update_ini=True))


async def _step(brain: OllamaBrain, messages: list, tools: list) -> tuple[str, list[ToolCall]]:
    """One assistant step, with calls written as text found the way the lead finds them."""
    text_filter = TextToolCallFilter(tools)
    spoken, calls = [], []
    async for event in brain.chat(messages, tools):
        if isinstance(event, ToolCall):
            calls.append(event)
        elif isinstance(event, TextDelta):
            text, found = text_filter.feed(event.text)
            spoken.append(text)
            calls += found
        elif isinstance(event, BrainDone):
            break
    text, found = text_filter.flush()
    return "".join(spoken) + text, calls + found


async def _turn(brain: OllamaBrain, registry: ToolRegistry, personas: PersonaStore, said: str):
    """User sentence → tool calls → results back to the model → its words. Returns (words, outcomes, messages)."""
    messages = [
        {"role": "system", "content": build_system_prompt(personas.current(), [], registry.names())},
        {"role": "user", "content": said},
    ]
    text, calls = await _step(brain, messages, registry.schemas())
    outcomes = []
    if calls:
        messages.append({"role": "assistant", "content": text, "tool_calls": [
            {"function": {"name": c.name, "arguments": c.arguments}} for c in calls]})  # fmt: skip
        for call in calls:
            outcome = await registry.call(call)
            outcomes.append(outcome)
            messages.append({"role": "tool", "content": outcome.result, "name": call.name})
        text, _ = await _step(brain, messages, registry.schemas())
    return text, outcomes, messages


def _run(coro):
    return asyncio.run(asyncio.wait_for(coro, 20))


def test_update_personality_from_the_model_changes_the_file_and_the_next_prompt(personas):
    with FakeOllama(models=["qwen2.5:1.5b"]) as server:
        server.script(
            Reply.tool_calls(("update_personality", {"humor": 90, "sarcasm": "high"})),
            Reply.text("Cranked the funny up to ninety, mate."),
        )
        brain = OllamaBrain(server.url, "qwen2.5:1.5b", timeout_s=5)
        registry = ToolRegistry(personas, list, None)
        words, outcomes, _ = _run(_turn(brain, registry, personas, "set your humor to ninety percent"))
        assert words == "Cranked the funny up to ninety, mate."
        assert outcomes[0].persona_changed and not outcomes[0].error
        text = personas.path.read_text()
        assert "humor = 90\n" in text and "sarcasm = 75\n" in text
        assert PersonaStore(PersonaSettings(name="billy", directory=personas.path.parent.parent)).current().traits[
            "humor"
        ] == 90  # fmt: skip
        # The tool result went back to the model, and the next system prompt carries the new rule.
        second = server.requests[1]["messages"]
        assert second[-1]["role"] == "tool" and "humor 90" in second[-1]["content"]
        assert "humor 90 (max)" in build_system_prompt(personas.current(), [])


def test_a_call_written_as_text_is_run_and_not_spoken(personas):
    with FakeOllama() as server:
        server.script(
            Reply.text('Right away! {"name": "play_song", "arguments": {"song": "river"}}', chunk_words=2),
            Reply.text("Here it comes."),
        )
        brain = OllamaBrain(server.url, "qwen2.5:1.5b", timeout_s=5)
        registry = ToolRegistry(personas, lambda: ["Take Me to the River"], None)
        words, outcomes, messages = _run(_turn(brain, registry, personas, "sing me a song"))
        assert outcomes[0].song == "Take Me to the River"
        assert messages[2]["content"] == "Right away! "
        assert words == "Here it comes."


def test_home_assistant_unreachable_is_said_plainly_and_the_turn_goes_on(personas):
    with FakeHomeAssistant() as ha:
        url = ha.url
    client = HomeAssistantClient(HomeAssistantSettings(host=url, token="good-token", timeout_seconds=1))
    with FakeOllama() as server:
        server.script(
            Reply.tool_calls(("smart_home_command", {"prompt": "turn on the kitchen lights"})),
            Reply.text("Home Assistant isn't answering, sorry."),
        )
        brain = OllamaBrain(server.url, "qwen2.5:1.5b", timeout_s=5)
        registry = ToolRegistry(personas, list, client)
        words, outcomes, _ = _run(_turn(brain, registry, personas, "turn on the kitchen lights"))
        assert outcomes[0].error and url not in outcomes[0].result  # an address is for the log, not his mouth
        assert server.requests[1]["messages"][-1]["content"].startswith("Home Assistant is not answering")
        assert words == "Home Assistant isn't answering, sorry."


def test_malformed_tool_calls_from_the_server_become_errors_for_the_model(personas):
    with FakeOllama() as server:
        server.script(
            Reply.tool_calls(("launch_rockets", {}), ("update_personality", {"humor": [1, 2]})),
            Reply.text("Oops, never mind."),
        )
        brain = OllamaBrain(server.url, "qwen2.5:1.5b", timeout_s=5)
        text = personas.path.read_text()
        words, outcomes, _ = _run(_turn(brain, ToolRegistry(personas, list, None), personas, "do a thing"))
        assert [o.error for o in outcomes] == [True, True]
        assert "no tool called 'launch_rockets'" in outcomes[0].result
        assert personas.path.read_text() == text
        assert words == "Oops, never mind."

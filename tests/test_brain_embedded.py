"""EmbeddedBrain with the real bundled SmolLM2-135M through llama.cpp, in process."""

import asyncio
import contextlib
import importlib.util
import time

import pytest

from core.brains.chatml import render_prompt
from core.brains.embedded import EmbeddedBrain, bundled_model_path
from core.errors import BackendError
from core.interfaces import Brain, BrainDone, TextDelta, ToolCall

needs_llama = pytest.mark.skipif(
    importlib.util.find_spec("llama_cpp") is None, reason="llama-cpp-python is not installed"
)

SYSTEM = "You are Billy, a singing fish on a wall. Answer in one or two short sentences."
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "play_song",
            "description": "Sing one of Billy's installed songs. Installed songs: Take Me to the River.",
            "parameters": {
                "type": "object",
                "properties": {"song": {"type": "string", "enum": ["Take Me to the River"]}},
                "required": ["song"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "smart_home_command",
            "description": "Send a direct smart-home command to Home Assistant, in the user's words.",
            "parameters": {
                "type": "object",
                "properties": {"prompt": {"type": "string"}},
                "required": ["prompt"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "end_conversation",
            "description": "End the conversation when the user says goodbye.",
            "parameters": {"type": "object", "properties": {}, "required": []},
        },
    },
]


def run(coro, timeout=60.0):
    return asyncio.run(asyncio.wait_for(coro, timeout))


def ask(text):
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": text}]


async def collect(brain, messages, tools=TOOLS):
    return [event async for event in brain.chat(messages, tools)]


@pytest.fixture(scope="module")
def brain():
    pytest.importorskip("llama_cpp")
    loaded = EmbeddedBrain(n_threads=2, max_tokens=48)
    run(loaded.warm(SYSTEM, TOOLS))
    yield loaded
    loaded.close()


def test_bundled_model_is_found_and_bad_paths_are_explained():
    assert bundled_model_path().endswith(".gguf")
    with pytest.raises(BackendError, match="does not exist: fix EMBEDDED_LLM_MODEL"):
        EmbeddedBrain(model_path="/nowhere/model.gguf")


def test_prompt_prefix_is_constant_across_turns():
    first, _ = render_prompt(ask("hello"))
    second, rest = render_prompt(
        [*ask("hello"), {"role": "assistant", "content": "Hi!"}, {"role": "user", "content": "x"}]
    )
    assert first == second and rest.endswith("<|im_start|>assistant\n")


@pytest.mark.slow
def test_streams_text_then_done(brain):
    assert isinstance(brain, Brain)
    events = run(collect(brain, ask("Who are you?")))
    text = "".join(e.text for e in events if isinstance(e, TextDelta))
    assert text.strip() and not any(isinstance(e, ToolCall) for e in events)
    assert isinstance(events[-1], BrainDone) and events[-1].eval_tokens > 0 and events[-1].prompt_tokens > 0


@pytest.mark.slow
def test_tools_are_never_offered_to_it(brain):
    """Commands are recognised before any model is asked; a 135M model only talks."""
    for question in ("Turn on the kitchen lights", "Goodbye Billy", "Sing me a song"):
        events = run(collect(brain, ask(question)))
        assert not any(isinstance(e, ToolCall) for e in events)
        assert isinstance(events[-1], BrainDone)


@pytest.mark.slow
@needs_llama
def test_with_a_card_it_sees_the_card_and_the_question_only():
    card = "You are Billy, a singing fish on a wall. Answer the question in one or two short sentences."
    carded = EmbeddedBrain(n_threads=2, max_tokens=120, temperature=0.0, card=lambda: card)
    long_prompt = "You are an assistant with these tools: play_song, smart_home_command. " * 20
    history = [
        {"role": "system", "content": long_prompt},
        {"role": "user", "content": "Hello"},
        {"role": "assistant", "content": "Hi there!"},
        {"role": "tool", "content": "The conversation ends after this reply."},
        {"role": "user", "content": "Why is the sky blue?"},
    ]
    assert carded._messages(history) == [{"role": "system", "content": card}, *history[1:3], history[-1]]
    try:
        run(carded.warm(long_prompt, TOOLS))
        events = run(collect(carded, history))
    finally:
        carded.close()
    text = "".join(e.text for e in events if isinstance(e, TextDelta)).strip()
    assert text and "tool" not in text.lower()
    assert isinstance(events[-1], BrainDone) and events[-1].prompt_tokens < 150  # the long prompt was not sent
    ends = [c for c in text if c in ".!?"]
    assert 1 <= len(ends) <= 2, text  # one or two sentences, then it stops


@pytest.mark.slow
@needs_llama
def test_a_reply_ends_with_its_first_finished_paragraph():
    """Under Billy's own persona, greedy SmolLM2 answers "Why is the sky blue?" with a paragraph
    and then goes on after a line break; the reply must end where that paragraph does."""
    from core.config import ROOT, load_settings
    from core.persona.store import PersonaStore
    from core.talk.prompt import build_system_prompt

    settings = load_settings(ROOT / "absent.env", {})
    system = build_system_prompt(PersonaStore(settings.persona).current(), ["Reef Shuffle"], tools=[])
    greedy = EmbeddedBrain(n_threads=2, max_tokens=120, temperature=0.0)
    try:
        run(greedy.warm(system, []))
        messages = [{"role": "system", "content": system}, {"role": "user", "content": "Why is the sky blue?"}]
        events = run(collect(greedy, messages, tools=[]))
    finally:
        greedy.close()
    text = "".join(e.text for e in events if isinstance(e, TextDelta))
    assert text.strip().startswith("The sky")
    assert "\n" not in text and text.rstrip().endswith((".", "!", "?")), text
    assert isinstance(events[-1], BrainDone)


@pytest.mark.slow
def test_a_history_longer_than_the_context_drops_the_oldest_exchanges(brain):
    filler = "Tell me again about the coral reef and the tides and the little crabs. " * 8
    history = [{"role": "system", "content": SYSTEM}]
    for i in range(40):  # about 5000 tokens, over twice the 2048-token context
        history += [{"role": "user", "content": f"{i}: {filler}"}, {"role": "assistant", "content": filler}]
    history.append({"role": "user", "content": "What is your name?"})
    events = run(collect(brain, history, tools=[]))
    assert isinstance(events[-1], BrainDone)
    assert events[-1].prompt_tokens + brain.max_tokens <= brain.n_ctx
    assert "".join(e.text for e in events if isinstance(e, TextDelta)).strip()


@pytest.mark.slow
@needs_llama
def test_stopping_the_stream_stops_the_model_promptly():
    long_brain = EmbeddedBrain(n_threads=2, max_tokens=1500)
    try:

        async def scenario():
            await long_brain.warm(SYSTEM, [])
            received = 0
            async with contextlib.aclosing(long_brain.chat(ask("Tell me a very long story about the sea."), [])) as ev:
                async for event in ev:
                    received += isinstance(event, TextDelta)
                    if received == 3:
                        break
            stopped_at = time.monotonic()
            # the next turn runs on the same worker: it can only start once the long one has stopped
            async for event in long_brain.chat(ask("Hi"), []):
                if isinstance(event, TextDelta):
                    return time.monotonic() - stopped_at
            return 0.0

        assert run(scenario()) < 3.0  # 1500 tokens would take about 40 s here
    finally:
        long_brain.close()

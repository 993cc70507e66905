"""OllamaBrain through the real `ollama` client against the fake Ollama server over HTTP."""

import asyncio
import time

import pytest

from core.brains.ollama import OllamaBrain
from core.errors import BackendError
from core.interfaces import Brain, BrainDone, TextDelta, ToolCall
from tests.helpers.ollama_server import FakeOllama, Reply

MODEL = "qwen2.5:1.5b"
HI = [{"role": "system", "content": "You are Billy."}, {"role": "user", "content": "Sing me something."}]
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "play_song",
            "description": "Play one of the installed songs.",
            "parameters": {
                "type": "object",
                "properties": {"song": {"type": "string", "enum": ["take_me_to_the_river"]}},
                "required": ["song"],
            },
        },
    }
]


def run(coro, timeout=10.0):
    return asyncio.run(asyncio.wait_for(coro, timeout))


async def collect(brain, messages=HI, tools=TOOLS):
    return [event async for event in brain.chat(messages, tools)]


@pytest.fixture
def server():
    with FakeOllama(models=[MODEL]) as fake:
        yield fake


def _brain(server, **kw):
    return OllamaBrain(server.url, MODEL, **kw)


def test_is_a_brain(server):
    assert isinstance(_brain(server), Brain)


def test_text_streams_in_order_then_done(server):
    server.script(Reply.text("Hello there. I am a fish!"))
    events = run(collect(_brain(server)))
    deltas = [e.text for e in events if isinstance(e, TextDelta)]
    assert deltas == ["Hello", " there.", " I", " am", " a", " fish!"]
    assert isinstance(events[-1], BrainDone) and events[-1].eval_tokens > 0 and events[-1].prompt_tokens > 0
    body = server.requests[0]
    assert body["model"] == MODEL and body["stream"] is True and body["messages"] == HI
    assert body["tools"][0]["function"]["name"] == "play_song"


def test_keep_alive_and_num_ctx_are_sent(server):
    run(collect(_brain(server, keep_alive="3h", num_ctx=4096)))
    assert server.requests[0]["keep_alive"] == "3h"
    assert server.requests[0]["options"] == {"num_ctx": 4096}


def test_tool_calls_become_tool_call_events(server):
    server.script(Reply.tool_calls(("play_song", {"song": "take_me_to_the_river"}), content="Here goes!"))
    events = run(collect(_brain(server)))
    calls = [e for e in events if isinstance(e, ToolCall)]
    assert [(c.name, c.arguments) for c in calls] == [("play_song", {"song": "take_me_to_the_river"})]
    assert calls[0].id
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "Here goes!"
    assert isinstance(events[-1], BrainDone)


def test_history_with_openai_style_arguments_is_accepted(server):
    history = [
        *HI,
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "play_song", "arguments": '{"song": "x"}'}}
            ],
        },
        {"role": "tool", "content": "playing", "tool_call_id": "c1", "name": "play_song"},
    ]
    run(collect(_brain(server), history))
    sent = server.requests[0]["messages"]
    assert sent[2]["tool_calls"][0]["function"]["arguments"] == {"song": "x"}
    assert sent[3]["tool_name"] == "play_song"


def test_missing_model_says_how_to_pull_it(server):
    brain = OllamaBrain(server.url, "llama9:70b")
    with pytest.raises(BackendError, match=r"Ollama has no model 'llama9:70b': run `ollama pull llama9:70b`"):
        run(collect(brain))
    assert run(brain.healthy()) is False


def test_connection_refused_says_how_to_start_it(server):
    server.stop()
    brain = _brain(server)
    with pytest.raises(BackendError, match=r"Ollama is not answering at http://127\.0\.0\.1:\d+: start it"):
        run(collect(brain))
    with pytest.raises(BackendError, match="not answering"):
        run(brain.warm("You are Billy.", TOOLS))
    assert run(brain.healthy()) is False


def test_dropped_stream_raises_after_the_text_it_got(server):
    server.script(Reply.drop(2, "one two three four"))
    received = []

    async def consume():
        async for event in _brain(server).chat(HI, TOOLS):
            received.append(event)

    with pytest.raises(BackendError, match="dropped"):
        run(consume())
    assert received == [TextDelta("one"), TextDelta(" two")]


def test_stalled_stream_times_out_instead_of_hanging(server):
    server.script(Reply.text("too slow", delay_s=3.0))
    start = time.monotonic()
    with pytest.raises(BackendError, match=r"silent for more than 0\.5 s"):
        run(collect(_brain(server, timeout_s=0.5)))
    assert time.monotonic() - start < 2.5


def test_garbage_and_server_errors_become_backend_errors(server):
    server.script(Reply.raw(["{not json"]), Reply.raw(['{"error": "out of memory"}']), Reply.error(500, "boom"))
    with pytest.raises(BackendError, match="not a chat stream"):
        run(collect(_brain(server)))
    with pytest.raises(BackendError, match="out of memory"):
        run(collect(_brain(server)))
    with pytest.raises(BackendError, match=r"boom \(HTTP 500\)"):
        run(collect(_brain(server)))


def test_stream_without_done_is_an_error(server):
    server.script(Reply.raw(['{"model": "m", "message": {"role": "assistant", "content": "Hi"}, "done": false}']))
    with pytest.raises(BackendError, match="without finishing"):
        run(collect(_brain(server)))


def test_warm_sends_system_prompt_and_tools_for_one_token(server):
    brain = _brain(server)
    run(brain.warm("You are Billy, a singing fish.", TOOLS))
    body = server.requests[0]
    assert body["messages"] == [{"role": "system", "content": "You are Billy, a singing fish."}]
    assert body["tools"][0]["function"]["name"] == "play_song"
    assert body["options"]["num_predict"] == 1 and body["keep_alive"] == "24h"


def test_healthy_checks_tags(server):
    assert run(_brain(server).healthy()) is True
    assert ("GET", "/api/tags") in server.paths
    with FakeOllama(models=["qwen2.5"]) as other:
        assert run(OllamaBrain(other.url, "qwen2.5:latest").healthy()) is True

"""OpenAIBrain against a small OpenAI-compatible SSE server on 127.0.0.1."""

import asyncio
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from core.brains.openai import OpenAIBrain
from core.errors import BackendError
from core.interfaces import Brain, BrainDone, TextDelta, ToolCall

HI = [{"role": "user", "content": "Turn on the lights"}]
TOOLS = [{"type": "function", "function": {"name": "smart_home_command", "parameters": {"type": "object"}}}]


def _chunk(delta=None, finish=None, usage=None):
    payload = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "model": "gpt-test", "choices": []}
    if delta is not None or finish is not None:
        payload["choices"] = [{"index": 0, "delta": delta or {}, "finish_reason": finish}]
    if usage is not None:
        payload["usage"] = usage
    return "data: " + json.dumps(payload)


class _SSEServer:
    """Answers each POST /chat/completions with the next scripted (status, lines, delay_s)."""

    def __init__(self):
        self.script: list[tuple[int, list[str], float]] = []
        self.requests: list[tuple[dict, dict]] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                status = 200 if self.headers.get("Authorization") == "Bearer good" else 401
                self._send(status, b'{"data": []}')

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                owner.requests.append((body, dict(self.headers)))
                status, lines, delay = owner.script.pop(0) if owner.script else (200, [], 0.0)
                if status != 200:
                    self._send(status, json.dumps({"error": {"message": "nope"}}).encode())
                    return
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()
                for line in lines:
                    time.sleep(delay)
                    self.wfile.write((line + "\n\n").encode())
                    self.wfile.flush()

            def _send(self, status, data):
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def sse():
    server = _SSEServer()
    yield server
    server.close()


def run(coro, timeout=10.0):
    return asyncio.run(asyncio.wait_for(coro, timeout))


async def collect(brain, messages=HI, tools=TOOLS):
    return [event async for event in brain.chat(messages, tools)]


def _brain(sse, key="good", timeout_s=5.0):
    return OpenAIBrain(sse.url, key, "gpt-test", timeout_s)


def test_is_a_brain(sse):
    assert isinstance(_brain(sse), Brain)


def test_streams_text_and_usage(sse):
    lines = [
        ": keep-alive",
        _chunk({"role": "assistant", "content": ""}),
        _chunk({"content": "Hello"}),
        _chunk({"content": " there!"}),
        _chunk({}, finish="stop"),
        _chunk(usage={"prompt_tokens": 12, "completion_tokens": 3}),
        "data: [DONE]",
    ]
    sse.script.append((200, lines, 0.0))
    events = run(collect(_brain(sse)))
    assert events == [TextDelta("Hello"), TextDelta(" there!"), BrainDone(12, 3)]
    body, headers = sse.requests[0]
    assert body["stream"] is True and body["model"] == "gpt-test" and body["tools"] == TOOLS
    assert headers["Authorization"] == "Bearer good"


def test_tool_call_arguments_are_assembled_across_chunks(sse):
    first = {
        "index": 0,
        "id": "call_a",
        "type": "function",
        "function": {"name": "smart_home_command", "arguments": ""},
    }
    lines = [
        _chunk({"role": "assistant", "content": None, "tool_calls": [first]}),
        _chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"pro'}}]}),
        _chunk({"tool_calls": [{"index": 0, "function": {"arguments": 'mpt": "turn on'}}]}),
        _chunk({"tool_calls": [{"index": 0, "function": {"arguments": ' the lights"}'}}]}),
        _chunk({"tool_calls": [{"index": 1, "id": "call_b", "function": {"name": "end_conversation"}}]}),
        _chunk({"tool_calls": [{"index": 1, "function": {"arguments": "{oops"}}]}),
        _chunk({}, finish="tool_calls"),
        "data: [DONE]",
    ]
    sse.script.append((200, lines, 0.0))
    events = run(collect(_brain(sse)))
    assert events == [
        ToolCall("smart_home_command", {"prompt": "turn on the lights"}, id="call_a"),
        ToolCall("end_conversation", "{oops", id="call_b"),
        BrainDone(0, 0),
    ]


def test_history_with_dict_arguments_is_sent_as_json_string(sse):
    sse.script.append((200, [_chunk({}, finish="stop"), "data: [DONE]"], 0.0))
    history = [
        *HI,
        {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "x", "arguments": {"a": 1}}}]},
        {"role": "tool", "tool_call_id": "call_0", "content": "done"},
    ]
    run(collect(_brain(sse), history))
    sent = sse.requests[0][0]["messages"][1]["tool_calls"][0]
    assert sent == {"id": "call_0", "type": "function", "function": {"name": "x", "arguments": '{"a": 1}'}}


@pytest.mark.parametrize(
    ("status", "match"),
    [
        (401, "refused the API key.*OPENAI_API_KEY"),
        (429, "rate-limiting"),
        (503, r"failed on its side \(HTTP 503\)"),
        (404, "has no model 'gpt-test'"),
        (400, r"rejected the request \(HTTP 400\): nope"),
    ],
)
def test_http_errors_become_clear_backend_errors(sse, status, match):
    sse.script.append((status, [], 0.0))
    with pytest.raises(BackendError, match=match):
        run(collect(_brain(sse)))


def test_garbage_and_truncated_streams_are_errors(sse):
    sse.script += [(200, ["data: {not json"], 0.0), (200, [_chunk({"content": "Hi"})], 0.0)]
    with pytest.raises(BackendError, match="not JSON"):
        run(collect(_brain(sse)))
    with pytest.raises(BackendError, match="without finishing"):
        run(collect(_brain(sse)))


def test_stall_times_out(sse):
    sse.script.append((200, [_chunk({"content": "late"})], 3.0))
    start = time.monotonic()
    with pytest.raises(BackendError, match="went silent"):
        run(collect(_brain(sse, timeout_s=0.5)))
    assert time.monotonic() - start < 2.5


def test_unreachable_and_health(sse):
    assert run(_brain(sse).healthy()) is True
    assert run(_brain(sse, key="bad").healthy()) is False
    sse.close()
    with pytest.raises(BackendError, match="not reachable: check OPENAI_BASE_URL"):
        run(collect(_brain(sse)))
    assert run(_brain(sse).healthy()) is False

"""The fake Ollama answers the real `ollama` client the way a real Ollama does."""

import httpx
import ollama
import pytest

from tests.helpers.ollama_server import DEFAULT_REPLY, FakeOllama, Reply

MODEL = "qwen2.5:1.5b"
HI = [{"role": "user", "content": "hi"}]


@pytest.fixture
def server():
    with FakeOllama(models=[MODEL]) as fake:
        yield fake


@pytest.fixture
def client(server):
    return ollama.Client(host=server.url, timeout=5)


def test_tags_version_and_show(server, client):
    assert [m.model for m in client.list().models] == [MODEL]
    assert client.show(MODEL).capabilities == ["completion", "tools"]
    with pytest.raises(ollama.ResponseError) as err:
        client.show("nope")
    assert err.value.status_code == 404
    assert httpx.get(server.url + "/api/version", timeout=5).json()["version"]


def test_unscripted_chat_answers_friendly_text(server, client):
    parts = list(client.chat(MODEL, HI, stream=True))
    assert "".join(p.message.content for p in parts) == DEFAULT_REPLY
    assert [p.done for p in parts][-1] is True
    assert parts[-1].done_reason == "stop" and parts[-1].eval_count > 0 and parts[-1].prompt_eval_count > 0


def test_scripted_text_streams_in_word_chunks(server, client):
    server.script(Reply.text("One two three four five.", chunk_words=2))
    parts = list(client.chat(MODEL, HI, stream=True, keep_alive="24h"))
    assert [p.message.content for p in parts] == ["One two", " three four", " five.", ""]
    assert server.requests[0]["keep_alive"] == "24h" and server.requests[0]["messages"] == HI


def test_non_streaming_chat(server, client):
    server.script(Reply.text("All at once."))
    reply = client.chat(MODEL, HI, stream=False)
    assert reply.message.content == "All at once." and reply.done


def test_tool_calls_parse_in_the_client(server, client):
    server.script(Reply.tool_calls(("play_song", {"song": "fish"}), ("end_conversation", {}), content="Sure!"))
    parts = list(client.chat(MODEL, HI, stream=True))
    calls = [c for p in parts for c in (p.message.tool_calls or [])]
    assert [(c.function.name, dict(c.function.arguments)) for c in calls] == [
        ("play_song", {"song": "fish"}),
        ("end_conversation", {}),
    ]
    assert "".join(p.message.content for p in parts) == "Sure!"


def test_errors_drops_and_garbage(server, client):
    server.script(Reply.error(500, "boom"), Reply.drop(2, "a b c d"), Reply.raw(['{"broken']))
    with pytest.raises(ollama.ResponseError, match="boom"):
        list(client.chat(MODEL, HI, stream=True))
    received = []
    with pytest.raises(httpx.RemoteProtocolError):
        for part in client.chat(MODEL, HI, stream=True):
            received.append(part.message.content)
    assert received == ["a", " b"]
    with pytest.raises(ValueError):
        list(client.chat(MODEL, HI, stream=True))
    with pytest.raises(ollama.ResponseError) as err:
        client.chat("missing-model", HI)
    assert err.value.status_code == 404
    assert len(server.requests) == 4


def test_stop_refuses_connections(server, client):
    server.stop()
    with pytest.raises(ConnectionError):
        client.list()

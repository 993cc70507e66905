"""The Home Assistant client against a real HTTP server speaking HA's conversation API."""

from __future__ import annotations

import asyncio
import logging
import socket
import time

import pytest

from core.config import HomeAssistantSettings
from core.errors import BackendError
from core.home.homeassistant import HomeAssistantClient
from core.state import State, StateOwner
from tests.helpers.home_assistant import FakeHomeAssistant


@pytest.fixture
def ha():
    with FakeHomeAssistant(token="good-token") as server:
        yield server


def _client(url: str, token: str = "good-token", timeout: float = 2.0, lang: str = "en") -> HomeAssistantClient:
    return HomeAssistantClient(HomeAssistantSettings(host=url, token=token, lang=lang, timeout_seconds=timeout))


def _run(coro):
    return asyncio.run(asyncio.wait_for(coro, 10))


def test_a_command_returns_home_assistants_speech(ha):
    client = _client(ha.url, lang="nl")
    assert _run(client.process("turn on the kitchen lights")) == "Turned on the lights"
    headers, body = ha.requests[-1]
    assert headers["Authorization"] == "Bearer good-token"
    assert body == {"text": "turn on the kitchen lights", "language": "nl"}


def test_the_conversation_id_is_sent_back_on_the_next_command(ha):
    client = _client(ha.url)
    _run(client.process("turn on the kitchen lights"))
    _run(client.process("turn the lights off again"))
    assert ha.requests[-1][1]["conversation_id"] == "01J0FAKECONVERSATION"


def test_a_new_session_starts_a_new_ha_conversation(ha):
    client = _client(ha.url)
    state = StateOwner()
    state.subscribe(client.on_state)
    state.set(State.LISTENING)
    _run(client.process("turn on the kitchen lights"))
    state.set(State.SPEAKING)
    _run(client.process("turn the lights off"))
    assert ha.requests[-1][1]["conversation_id"] == "01J0FAKECONVERSATION"
    state.set(State.IDLE, "session over")
    state.set(State.LISTENING)
    _run(client.process("turn the lights off"))
    assert "conversation_id" not in ha.requests[-1][1]


def test_an_error_answer_becomes_a_clear_sentence(ha):
    with pytest.raises(BackendError) as error:
        _run(_client(ha.url).process("turn on the unicorn"))
    assert "found no device" in str(error.value) and "unicorn" in str(error.value)
    with pytest.raises(BackendError, match="did not understand"):
        _run(_client(ha.url).process("make me a sandwich"))


def test_a_wrong_token_is_reported_and_never_logged(ha, caplog):
    with caplog.at_level(logging.DEBUG), pytest.raises(BackendError) as error:
        _run(_client(ha.url, token="wrong-secret-token").process("turn on the kitchen lights"))
    assert str(error.value) == (
        "Home Assistant rejected the token: create a long-lived access token and put it in HA_TOKEN."
    )
    assert "wrong-secret-token" not in caplog.text
    assert ha.requests == []


def test_a_slow_answer_times_out_with_a_sentence_naming_the_host(ha):
    start = time.monotonic()
    with pytest.raises(BackendError) as error:
        _run(_client(ha.url, timeout=0.5).process("turn on the lights slowly"))
    assert time.monotonic() - start < 2.5
    assert ha.url in str(error.value) and "0.5 seconds" in str(error.value)


def test_connection_refused_names_ha_host():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    with pytest.raises(BackendError) as error:
        _run(_client(url).process("turn on the kitchen lights"))
    assert url in str(error.value) and "HA_HOST" in str(error.value)


def test_a_wrong_path_says_the_conversation_api_is_missing(ha):
    with pytest.raises(BackendError, match="no conversation API"):
        _run(_client(ha.url + "/nothing-here").process("turn on the kitchen lights"))


def test_not_configured_says_what_to_set():
    with pytest.raises(BackendError, match="HA_HOST and HA_TOKEN"):
        _run(HomeAssistantClient(HomeAssistantSettings()).process("lights on"))

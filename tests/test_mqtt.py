"""The MQTT bridge against a real mosquitto on 127.0.0.1, observed by a real paho client."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from core.config import ROOT, MqttSettings
from core.home.bridge import MqttBridge
from core.home.messages import MAX_SAY_BYTES, PayloadError, parse_command, parse_say, parse_song
from core.interfaces import ToolRecord, TurnRecord
from core.state import State, StateOwner
from core.talk.requests import COMMANDS, CommandRequest, RequestQueue, SayRequest, SongRequest
from tests.helpers.mosquitto import Mosquitto

WAIT = 10.0
"""Longest wait (seconds) for anything the broker should deliver."""


# --- a real observer client ---------------------------------------------------------------


class Listener:
    """A paho client that records every message it gets, in order."""

    def __init__(self, broker: Mosquitto, topics: tuple[str, ...] = ("#",), username: str = "", password: str = ""):
        self.messages: list[paho.MQTTMessage] = []
        self._changed = threading.Condition()
        self._subscribed = threading.Event()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"listener-{uuid.uuid4().hex[:8]}")
        if username:
            self.client.username_pw_set(username, password)
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *args: self._subscribed.set()
        self.client.connect(broker.host, broker.port, keepalive=30)
        self.client.loop_start()
        self.client.subscribe([(topic, 1) for topic in topics])
        assert self._subscribed.wait(WAIT), "the test listener could not subscribe"

    def _on_message(self, client: paho.Client, userdata: object, message: paho.MQTTMessage) -> None:
        with self._changed:
            self.messages.append(message)
            self._changed.notify_all()

    def publish(self, topic: str, payload: bytes | str, retain: bool = False) -> None:
        self.client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(WAIT)

    def payloads(self, topic: str) -> list[bytes]:
        with self._changed:
            return [m.payload for m in self.messages if m.topic == topic]

    def wait_for(self, check: Callable[[Listener], bool], what: str, timeout: float = WAIT) -> None:
        with self._changed:
            ok = self._changed.wait_for(lambda: check(self), timeout)
        assert ok, f"timed out after {timeout} s waiting for {what}; got {[m.topic for m in self.messages]}"

    def wait_payload(self, topic: str, payload: bytes, timeout: float = WAIT) -> None:
        self.wait_for(lambda me: payload in me.payloads(topic), f"{payload!r} on {topic}", timeout)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def wait_until(check: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what}"
        time.sleep(0.02)


def run(loop: asyncio.AbstractEventLoop, coro, timeout: float = WAIT):
    return loop.run_until_complete(asyncio.wait_for(coro, timeout))


def take(loop: asyncio.AbstractEventLoop, queue: RequestQueue, count: int = 1) -> list:
    async def collect() -> list:
        return [await queue.get() for _ in range(count)]

    return run(loop, collect())


def rejections(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "core.home.bridge" and "rejected" in r.getMessage()]


# --- fixtures -----------------------------------------------------------------------------


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    with Mosquitto(tmp_path / "broker") as mosquitto:
        yield mosquitto


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    event_loop = asyncio.new_event_loop()
    yield event_loop
    event_loop.close()


@pytest.fixture
def listeners() -> Iterator[Callable[..., Listener]]:
    made: list[Listener] = []

    def make(broker: Mosquitto, *topics: str, **auth: str) -> Listener:
        made.append(Listener(broker, topics or ("#",), **auth))
        return made[-1]

    yield make
    for listener in made:
        listener.close()


@pytest.fixture
def bridges(loop: asyncio.AbstractEventLoop) -> Iterator[Callable[..., tuple[MqttBridge, RequestQueue]]]:
    made: list[MqttBridge] = []

    def make(broker: Mosquitto, maxsize: int = 20, start: bool = True, **settings) -> tuple[MqttBridge, RequestQueue]:
        queue = RequestQueue(maxsize)
        bridge = MqttBridge(MqttSettings(host=broker.host, port=broker.port, **settings), loop, queue.put_nowait)
        made.append(bridge)
        if start:
            bridge.start()
        return bridge, queue

    yield make
    for bridge in made:
        bridge.stop()


@pytest.fixture
def online(broker: Mosquitto, bridges, listeners) -> tuple[MqttBridge, RequestQueue, Listener]:
    """A started bridge with the default prefix, and a listener that saw it come online."""
    listener = listeners(broker)
    bridge, queue = bridges(broker)
    listener.wait_payload("billy/availability", b"online")
    return bridge, queue, listener


# --- parsing (pure) -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (b"Hello there", SayRequest("Hello there", prompt=False, interactive=False)),
        (b"  two lines\n\tand a tab  ", SayRequest("two lines\n\tand a tab", prompt=False, interactive=False)),
        ("Grüß dich, 🐟".encode(), SayRequest("Grüß dich, 🐟", prompt=False, interactive=False)),
        (b"{{ tell a joke about cod }}", SayRequest("tell a joke about cod", prompt=True, interactive=False)),
        (b'{"text": "Dinner is ready"}', SayRequest("Dinner is ready", prompt=False, interactive=False)),
        (b'{"text": "Who is there?", "interactive": true}', SayRequest("Who is there?", False, True)),
        (b'{"text": "{{greet the guests}}", "interactive": false}', SayRequest("greet the guests", True, False)),
        (b"[laughs] very funny", SayRequest("[laughs] very funny", prompt=False, interactive=False)),
        (b"42", SayRequest("42", prompt=False, interactive=False)),
    ],
)
def test_parse_say_forms(payload: bytes, expected: SayRequest) -> None:
    assert parse_say(payload) == expected


@pytest.mark.parametrize(
    ("parse", "payload", "reason"),
    [
        (parse_say, b"", "empty"),
        (parse_say, b"   \n ", "empty"),
        (parse_say, b"\xff\xfe\x00\x01", "not UTF-8"),
        (parse_say, b"\xc3\x28", "not UTF-8"),
        (parse_say, b"a" * (MAX_SAY_BYTES + 1), f"over the {MAX_SAY_BYTES}-byte limit"),
        (parse_say, b"bell\x07", "control character"),
        (parse_say, b'{"text": "nul\\u0000"}', "control character"),
        (parse_say, b'{"text": "unclosed"', "invalid JSON"),
        (parse_say, b"[1, 2, 3]", "must be an object, not list"),
        (parse_say, b'{"text": 5}', '"text" is int, not a string'),
        (parse_say, b'{"text": ""}', "empty"),
        (parse_say, b'{"message": "hi"}', '"text" is missing'),
        (parse_say, b'{"text": "hi", "interactive": "yes"}', '"interactive" is str'),
        (parse_say, b"{{   }}", "empty {{prompt}}"),
        (parse_command, b"dance", "unknown command 'dance'"),
        (parse_command, b"\xff", "not UTF-8"),
        (parse_command, b"", "empty"),
        (parse_song, b'{"song": 5}', '"song" is int'),
        (parse_song, b'{"title": "x"}', '"song" is missing'),
        (parse_song, b"[]", "must be an object"),
        (parse_song, b"x" * 600, "over the"),
    ],
)
def test_parse_rejects_with_reason(parse, payload: bytes, reason: str) -> None:
    with pytest.raises(PayloadError) as caught:
        parse(payload)
    assert reason in str(caught.value)
    assert isinstance(caught.value, ValueError)


def test_parse_command_and_song_forms() -> None:
    assert [parse_command(c.upper().encode()) for c in COMMANDS] == [CommandRequest(c) for c in COMMANDS]
    assert parse_song(b"Take Me to the River") == SongRequest("Take Me to the River")
    assert parse_song(b'{"song": "Don\'t Worry"}') == SongRequest("Don't Worry")


def test_queue_drops_oldest_with_a_log_line(loop, caplog) -> None:
    caplog.set_level(logging.WARNING, logger="core.talk.requests")
    queue = RequestQueue(maxsize=3)
    for i in range(5):
        queue.put_nowait(SayRequest(f"n{i}", False, False))
    assert [item.text for item in take(loop, queue, 3)] == ["n2", "n3", "n4"]
    drops = [r.getMessage() for r in caplog.records if "dropped the oldest" in r.getMessage()]
    assert len(drops) == 2 and "'n0'" in drops[0] and "'n1'" in drops[1]
    assert queue.dropped == 2


# --- discovery, availability, state -------------------------------------------------------


def test_discovery_payloads(broker, bridges, listeners) -> None:
    listener = listeners(broker, "homeassistant/#", "billy/availability")
    bridge, _ = bridges(broker)
    listener.wait_payload("billy/availability", b"online")
    listener.wait_for(lambda me: len([m for m in me.messages if m.topic.endswith("/config")]) >= 7, "7 configs")
    configs = {m.topic: json.loads(m.payload) for m in listener.messages if m.topic.endswith("/config")}
    assert set(configs) == {
        "homeassistant/sensor/billy/state/config",
        "homeassistant/sensor/billy/latency/config",
        "homeassistant/text/billy/say/config",
        *(f"homeassistant/button/billy/{c}/config" for c in COMMANDS),
    }
    unique_ids = [c["unique_id"] for c in configs.values()]
    assert len(set(unique_ids)) == 7 and all(u.startswith("billy_") for u in unique_ids)
    for config in configs.values():
        assert config["availability_topic"] == "billy/availability"
        assert config["device"]["identifiers"] == ["billy"]
        assert config["device"]["name"] == "Billy Bass"
        assert {"model", "manufacturer", "sw_version"} <= set(config["device"])
    state = configs["homeassistant/sensor/billy/state/config"]
    assert state["state_topic"] == "billy/state" and set(state["options"]) == {s.value for s in State}
    latency = configs["homeassistant/sensor/billy/latency/config"]
    assert latency["state_topic"] == "billy/latency"
    assert latency["unit_of_measurement"] == "ms" and latency["state_class"] == "measurement"
    assert configs["homeassistant/text/billy/say/config"]["command_topic"] == "billy/say"
    buttons = {c["payload_press"]: c["command_topic"] for t, c in configs.items() if "/button/" in t}
    assert buttons == dict.fromkeys(COMMANDS, "billy/command")

    # a fresh bridge (Billy restarted) publishes the same unique_ids; late subscribers get them retained
    bridge.stop()
    seen = len(listener.messages)
    bridges(broker)

    def fresh_configs(me: Listener) -> list[str]:
        return [json.loads(m.payload)["unique_id"] for m in me.messages[seen:] if m.topic.endswith("/config")]

    listener.wait_for(lambda me: len(fresh_configs(me)) >= 7, "7 configs from the fresh bridge")
    assert sorted(fresh_configs(listener)) == sorted(unique_ids)
    late = listeners(broker, "homeassistant/#")
    late.wait_for(lambda me: len(me.messages) >= 7, "retained configs")
    assert all(m.retain for m in late.messages[:7])


def test_stop_says_offline(online) -> None:
    bridge, _, listener = online
    bridge.stop()
    listener.wait_payload("billy/availability", b"offline")
    assert not bridge.connected


_FISH = """
import asyncio, sys
from core.config import MqttSettings
from core.home.bridge import MqttBridge
from core.talk.requests import RequestQueue
from core.state import State

async def main():
    bridge = MqttBridge(MqttSettings(host="127.0.0.1", port=int(sys.argv[1])), asyncio.get_running_loop(),
                        RequestQueue().put_nowait)
    bridge.publish_state(State.SPEAKING)
    bridge.start()
    await asyncio.sleep(120)

asyncio.run(main())
"""


def test_last_will_says_offline_when_billy_dies(broker, listeners, tmp_path) -> None:
    listener = listeners(broker, "billy/availability", "billy/state")
    script = tmp_path / "fish.py"
    script.write_text(_FISH)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    fish = subprocess.Popen([sys.executable, str(script), str(broker.port)], cwd=ROOT, env=env)
    try:
        listener.wait_payload("billy/availability", b"online", timeout=30)
        listener.wait_payload("billy/state", b"speaking")
        fish.send_signal(signal.SIGKILL)
        fish.wait(timeout=WAIT)
        listener.wait_payload("billy/availability", b"offline")
        assert listener.payloads("billy/availability")[-2:] == [b"online", b"offline"]
    finally:
        fish.kill()
        fish.wait(timeout=WAIT)


def test_state_transitions_are_retained_in_order(online, broker, listeners) -> None:
    bridge, _, listener = online
    owner = StateOwner()
    owner.subscribe(bridge.on_state)
    bridge.publish_state(owner.state)
    for state in (State.LISTENING, State.THINKING, State.SPEAKING, State.IDLE, State.PLAYING_SONG, State.ERROR):
        owner.set(state, "test")
    expected = [b"idle", b"listening", b"thinking", b"speaking", b"idle", b"playing_song", b"error"]
    listener.wait_for(lambda me: len(me.payloads("billy/state")) >= 7, "7 states")
    assert listener.payloads("billy/state") == expected
    late = listeners(broker, "billy/state")
    late.wait_for(lambda me: me.messages, "the retained state")
    assert late.messages[0].payload == b"error" and late.messages[0].retain


def test_turn_telemetry_and_latency(online) -> None:
    bridge, _, listener = online
    record = TurnRecord(
        transcript="turn on the lights",
        reply="Done, the lights are on.",
        tool_calls=[ToolRecord("smart_home_command", {"prompt": "turn on the lights"}, "ok")],
        backends={"stt": "faster-whisper", "llm": "ollama", "tts": "piper"},
        latency_ms={"endpoint": 500.2, "stt": 210.0, "end_of_speech_to_first_audio": 1234.6},
    )
    bridge.publish_turn(record)
    listener.wait_payload("billy/latency", b"1235")
    listener.wait_for(lambda me: me.payloads("billy/turn"), "a turn")
    turn = json.loads(listener.payloads("billy/turn")[0])
    assert turn["transcript"] == "turn on the lights" and turn["reply"] == "Done, the lights are on."
    assert turn["tools"] == ["smart_home_command"]
    assert turn["tool_calls"][0]["arguments"] == {"prompt": "turn on the lights"}
    assert turn["latency_ms"]["stt"] == 210.0


def test_turns_not_published_when_private(broker, bridges, listeners) -> None:
    listener = listeners(broker)
    bridge, _ = bridges(broker, publish_turns=False)
    listener.wait_payload("billy/availability", b"online")
    bridge.publish_turn(TurnRecord("my secret", "ok", latency_ms={"end_of_speech_to_first_audio": 900}))
    bridge.publish_state(State.IDLE)
    listener.wait_payload("billy/state", b"idle")
    assert listener.payloads("billy/latency") == [b"900"]
    assert listener.payloads("billy/turn") == []
    assert not any(b"my secret" in m.payload for m in listener.messages)


# --- inbound: say, command, song, burst, fuzz ---------------------------------------------


def test_every_say_form_reaches_the_queue(online, loop) -> None:
    _, queue, listener = online
    listener.publish("billy/say", "Dinner is ready")
    listener.publish("billy/say", "{{tell the kids to come down}}")
    listener.publish("billy/say", json.dumps({"text": "Anyone home?", "interactive": True}))
    listener.publish("billy/say", json.dumps({"text": "Bye"}))
    assert take(loop, queue, 4) == [
        SayRequest("Dinner is ready", prompt=False, interactive=False),
        SayRequest("tell the kids to come down", prompt=True, interactive=False),
        SayRequest("Anyone home?", prompt=False, interactive=True),
        SayRequest("Bye", prompt=False, interactive=False),
    ]


def test_commands_and_unknown_command(online, loop, caplog) -> None:
    caplog.set_level(logging.INFO, logger="core.home.bridge")
    _, queue, listener = online
    for payload in ("listen", "dance", "STOP", "restart", "shutdown"):
        listener.publish("billy/command", payload)
    assert take(loop, queue, 4) == [CommandRequest(c) for c in ("listen", "stop", "restart", "shutdown")]
    assert rejections(caplog) == [
        "MQTT billy/command rejected: unknown command 'dance'; use one of shutdown, restart, listen, stop"
    ]


def test_song_both_forms(online, loop) -> None:
    _, queue, listener = online
    listener.publish("billy/song", "Take Me to the River")
    listener.publish("billy/song", json.dumps({"song": "Don't Worry, Be Happy"}))
    assert take(loop, queue, 2) == [SongRequest("Take Me to the River"), SongRequest("Don't Worry, Be Happy")]


def test_retained_command_is_not_replayed(broker, bridges, listeners, loop, caplog) -> None:
    caplog.set_level(logging.WARNING, logger="core.home.bridge")
    listener = listeners(broker, "billy/availability")
    listener.publish("billy/command", "shutdown", retain=True)
    _, queue = bridges(broker)
    listener.wait_payload("billy/availability", b"online")
    listener.publish("billy/command", "listen")
    assert take(loop, queue) == [CommandRequest("listen")]
    assert any("ignored a retained message" in r.getMessage() for r in caplog.records)


def test_burst_of_100_says_all_kept_in_order(broker, bridges, listeners, loop) -> None:
    listener = listeners(broker, "billy/availability")
    _, queue = bridges(broker, maxsize=100)
    listener.wait_payload("billy/availability", b"online")
    for i in range(100):
        listener.client.publish("billy/say", f"n{i}", qos=1)
    assert [item.text for item in take(loop, queue, 100)] == [f"n{i}" for i in range(100)]


def test_burst_of_100_says_while_busy_drops_oldest_only(broker, bridges, listeners, loop, caplog) -> None:
    """Billy is busy (a slow consumer); the bound keeps the newest, logs each drop, never reorders."""
    caplog.set_level(logging.WARNING, logger="core.home.bridge")
    listener = listeners(broker, "billy/availability")
    _, queue = bridges(broker, maxsize=20)
    listener.wait_payload("billy/availability", b"online")

    def burst() -> None:
        infos = [listener.client.publish("billy/say", f"n{i}", qos=1) for i in range(100)]
        infos[-1].wait_for_publish(WAIT)

    async def busy_billy() -> list[int]:
        heard: list[int] = []
        sender = asyncio.get_running_loop().run_in_executor(None, burst)
        while not heard or heard[-1] != 99:
            heard.append(int((await queue.get()).text[1:]))
            await asyncio.sleep(0.02)
        await sender
        return heard

    heard = run(loop, busy_billy(), timeout=30)
    dropped = [r.getMessage() for r in caplog.records if "dropped the oldest" in r.getMessage()]
    assert heard == sorted(heard) and len(set(heard)) == len(heard)
    assert len(heard) + len(dropped) == 100 and queue.dropped == len(dropped) > 0
    named = {int(line.rsplit("'n", 1)[1].rstrip("'")) for line in dropped}
    assert named == set(range(100)) - set(heard)
    assert set(range(80, 100)) <= set(heard)


FUZZ = [
    ("billy/say", b"\xff\xfe\x00\x01BINARYMARK\x80\x81"),
    ("billy/say", b"a" * 1_000_000),
    ("billy/say", b"\xc3\x28 invalid utf-8"),
    ("billy/say", b'{"text": "unclosed'),
    ("billy/say", b"[1, 2, 3]"),
    ("billy/say", b'{"text": 12}'),
    ("billy/say", b'{"text": ["a"]}'),
    ("billy/say", b'{"text": "x", "interactive": 1}'),
    ("billy/say", b""),
    ("billy/say", b"\x1b[31mred"),
    ("billy/command", b"\x00\x00"),
    ("billy/command", b"42"),
    ("billy/command", b'{"command": "listen"}'),
    ("billy/command", b"x" * 100_000),
    ("billy/song", b'{"song": null}'),
    ("billy/song", b'{"song": 3.5}'),
    ("billy/song", b"\xfe"),
    ("billy/song", b"[[]]"),
    ("billy/song", b" "),
]


def test_fuzz_rejects_each_with_a_log_line(online, loop, caplog) -> None:
    caplog.set_level(logging.DEBUG, logger="core.home.bridge")
    _, queue, listener = online
    for topic, payload in FUZZ:
        listener.publish(topic, payload)
    listener.publish("billy/say", "still alive")
    assert take(loop, queue) == [SayRequest("still alive", prompt=False, interactive=False)]
    lines = rejections(caplog)
    assert len(lines) == len(FUZZ)
    assert [line.split()[1] for line in lines] == [topic for topic, _ in FUZZ]
    assert "over the 4096-byte limit" in lines[1]
    assert all(len(line) < 300 for line in lines)
    assert "BINARYMARK" not in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert queue.qsize() == 0


# --- the broker comes and goes ------------------------------------------------------------


def test_broker_restart_reconnects_and_republishes(online, broker, listeners, loop, caplog) -> None:
    caplog.set_level(logging.INFO, logger="core.home.bridge")
    bridge, queue, _ = online
    bridge.publish_state(State.SPEAKING)
    broker.stop()
    wait_until(lambda: not bridge.connected, "the bridge to notice the broker is gone")
    # Billy keeps working offline: nothing raises, the newest state is remembered
    bridge.publish_state(State.THINKING)
    bridge.publish_turn(TurnRecord("offline turn", "fine", latency_ms={"end_of_speech_to_first_audio": 321}))
    time.sleep(1.5)  # at least one failed reconnect, so backoff is exercised
    broker.start()
    restarted = time.monotonic()
    listener = listeners(broker)
    listener.wait_payload("billy/availability", b"online")
    listener.wait_payload("billy/state", b"thinking")
    listener.wait_payload("billy/latency", b"321")
    listener.wait_for(lambda me: len([m for m in me.messages if m.topic.endswith("/config")]) >= 7, "discovery")
    assert time.monotonic() - restarted < 10
    assert bridge.connected
    assert b"speaking" not in listener.payloads("billy/state")
    listener.publish("billy/say", "I am back")
    assert take(loop, queue) == [SayRequest("I am back", prompt=False, interactive=False)]
    assert any("lost the broker" in r.getMessage() for r in caplog.records)


def test_start_never_blocks_on_a_dead_broker(tmp_path, bridges, listeners, loop) -> None:
    broker = Mosquitto(tmp_path / "late")
    began = time.monotonic()
    bridge, _ = bridges(broker)
    bridge.publish_state(State.IDLE)
    assert time.monotonic() - began < 0.5
    assert not bridge.connected
    broker.start()
    try:
        listener = listeners(broker, "billy/state")
        listener.wait_payload("billy/state", b"idle", timeout=15)
    finally:
        bridge.stop()
        broker.stop()


def test_no_host_means_no_mqtt(loop, caplog) -> None:
    caplog.set_level(logging.INFO, logger="core.home.bridge")
    bridge = MqttBridge(MqttSettings(), loop, RequestQueue().put_nowait)
    bridge.start()
    bridge.publish_state(State.IDLE)
    bridge.stop()
    assert not bridge.connected
    assert "MQTT is off (MQTT_HOST is empty)" in caplog.text


# --- authentication -----------------------------------------------------------------------

PASSWORD = "Sup3r-s3cret-fish-pw"


@pytest.fixture
def secured(tmp_path: Path) -> Iterator[Mosquitto]:
    with Mosquitto(tmp_path / "secured", username="billy", password=PASSWORD) as mosquitto:
        yield mosquitto


def test_username_password_connects_and_is_never_logged(secured, bridges, listeners, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    listener = listeners(secured, username="billy", password=PASSWORD)
    bridge, _ = bridges(secured, username="billy", password=PASSWORD)
    listener.wait_payload("billy/availability", b"online")
    bridge.publish_state(State.LISTENING)
    listener.wait_payload("billy/state", b"listening")
    bridge.stop()
    listener.wait_payload("billy/availability", b"offline")
    assert caplog.records and PASSWORD not in caplog.text


def test_wrong_password_logs_and_keeps_retrying(secured, bridges, listeners, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    bridge, _ = bridges(secured, username="billy", password="wrong-" + PASSWORD)
    wait_until(lambda: secured.log().count("not authorised") >= 2, "two refused attempts", timeout=15)
    refused = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "refused" in r.getMessage()]
    assert len(refused) == 1  # one clear line, not one per retry
    assert "MQTT_USERNAME and MQTT_PASSWORD" in refused[0]
    assert not bridge.connected
    assert PASSWORD not in caplog.text
    began = time.monotonic()
    bridge.stop()
    assert time.monotonic() - began < 3


def test_anonymous_bridge_is_refused_by_secured_broker(secured, bridges, caplog) -> None:
    caplog.set_level(logging.WARNING, logger="core.home.bridge")
    bridge, _ = bridges(secured)
    wait_until(lambda: "refused the connection" in caplog.text, "a refusal line")
    assert not bridge.connected


# --- two fish, one broker -----------------------------------------------------------------


def test_two_fish_do_not_cross_talk(broker, bridges, listeners, loop) -> None:
    listener = listeners(broker)
    bridge_a, queue_a = bridges(broker, topic_prefix="fish/a", device_id="fish_a", device_name="Billy A")
    bridge_b, queue_b = bridges(broker, topic_prefix="fish/b", device_id="fish_b", device_name="Billy B")
    listener.wait_payload("fish/a/availability", b"online")
    listener.wait_payload("fish/b/availability", b"online")
    listener.wait_for(lambda me: len([m for m in me.messages if m.topic.endswith("/config")]) >= 14, "14 configs")
    configs = [json.loads(m.payload) for m in listener.messages if m.topic.endswith("/config")]
    assert len({c["unique_id"] for c in configs}) == 14
    for config in configs:
        fish = config["device"]["identifiers"][0][-1]
        assert config["availability_topic"] == f"fish/{fish}/availability"
        assert config["unique_id"].startswith(f"fish_{fish}_")

    bridge_a.publish_state(State.SPEAKING)
    bridge_b.publish_state(State.IDLE)
    listener.publish("fish/a/say", "to a")
    listener.publish("fish/b/command", "listen")
    assert take(loop, queue_a) == [SayRequest("to a", prompt=False, interactive=False)]
    assert take(loop, queue_b) == [CommandRequest("listen")]
    listener.wait_payload("fish/b/state", b"idle")
    assert listener.payloads("fish/a/state") == [b"speaking"]
    assert listener.payloads("fish/b/state") == [b"idle"]
    assert queue_a.qsize() == queue_b.qsize() == 0


def test_bad_ca_cert_turns_mqtt_off_without_raising(tmp_path, loop, caplog) -> None:
    caplog.set_level(logging.ERROR, logger="core.home.bridge")
    ca_cert = tmp_path / "ca.pem"
    ca_cert.write_text("not a certificate\n")
    settings = MqttSettings(host="127.0.0.1", port=1, tls=True, ca_cert=ca_cert)
    bridge = MqttBridge(settings, loop, RequestQueue().put_nowait)
    bridge.start()
    bridge.publish_state(State.IDLE)
    bridge.stop()
    assert not bridge.connected
    assert "MQTT is off: cannot set up the connection" in caplog.text

"""Billy in simulation, driven only through a real mosquitto broker, as Home Assistant would."""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import paho.mqtt.client as mqtt
import pytest

from core.app import Billy, make_devices
from core.config import ROOT, load_settings
from tests.helpers.mosquitto import Mosquitto
from tests.helpers.ollama_server import FakeOllama, Reply

pytestmark = pytest.mark.slow
MODEL = "qwen2.5:1.5b"


class Watcher:
    """A real MQTT client that records every message Billy publishes."""

    def __init__(self, broker: Mosquitto):
        self.messages: list[tuple[float, str, bytes]] = []
        self._lock = threading.Lock()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        self.client.on_message = self._on_message
        self.client.on_connect = lambda c, *_: c.subscribe("billy/#")
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()

    def _on_message(self, _client, _userdata, message) -> None:
        with self._lock:
            self.messages.append((time.monotonic(), message.topic, message.payload))

    def states(self, since: float = 0.0) -> list[str]:
        with self._lock:
            return [p.decode() for t, topic, p in self.messages if topic == "billy/state" and t >= since]

    def publish(self, topic: str, payload: str) -> None:
        self.client.publish(topic, payload, qos=1).wait_for_publish(5)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


async def until(condition, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s")
        await asyncio.sleep(0.05)


def test_home_assistant_drives_billy_over_mqtt(tmp_path: Path):
    with Mosquitto(tmp_path / "broker") as broker, FakeOllama(models=[MODEL]) as ollama:
        ollama.script(Reply.text("ok"), Reply.text("A prompt answered in character."))
        settings = replace(
            load_settings(
                tmp_path / "none.env",
                {
                    "MQTT_HOST": broker.host,
                    "MQTT_PORT": str(broker.port),
                    "LOCAL_LLM_HOST": ollama.url,
                    "LOCAL_LLM_MODEL": MODEL,
                    "MIC_TIMEOUT_SECONDS": "2",
                    "PERSONA_DIR": str(ROOT / "personas"),
                },
            ),
            cache_dir=tmp_path / "cache",
        )
        watcher = Watcher(broker)

        async def scenario() -> None:
            devices = make_devices(settings, simulate=True)
            billy = Billy(settings, devices)
            await billy.start()
            t0 = time.monotonic()
            try:
                await until(lambda: "idle" in watcher.states(), 15)

                # Plain text is spoken as is: speaking, then idle again, and real audio was heard.
                mark = time.monotonic()
                watcher.publish("billy/say", "Hello from Home Assistant.")
                await until(lambda: watcher.states(mark)[-2:] == ["speaking", "idle"], 30)
                audio = devices.speaker.recording(t0)
                assert np.abs(audio.astype(np.int32)).max() > 2000
                assert not [r for r in ollama.requests if r["messages"][-1]["role"] == "user"]

                # {{...}} is a prompt Billy answers with his brain.
                mark = time.monotonic()
                watcher.publish("billy/say", "{{Say something nice about Mondays}}")
                await until(lambda: watcher.states(mark)[-2:] == ["speaking", "idle"], 30)
                asked = [r for r in ollama.requests if r["messages"][-1]["role"] == "user"]
                assert asked[-1]["messages"][-1]["content"] == "Say something nice about Mondays"

                # interactive JSON opens a conversation after speaking; it times out back to idle.
                mark = time.monotonic()
                watcher.publish("billy/say", '{"text": "Anything else?", "interactive": true}')
                await until(lambda: watcher.states(mark)[-3:] == ["speaking", "listening", "idle"], 30)

                # Commands: listen opens the mic; stop ends it at once.
                mark = time.monotonic()
                watcher.publish("billy/command", "listen")
                await until(lambda: "listening" in watcher.states(mark), 10)
                watcher.publish("billy/command", "stop")
                await until(lambda: watcher.states(mark)[-1:] == ["idle"], 10)

                # The broker dies and comes back: Billy republishes his state and still answers.
                broker.stop()
                await asyncio.sleep(1.0)
                broker.start()
                mark = time.monotonic()
                await until(lambda: "idle" in watcher.states(mark), 10)
                mark = time.monotonic()
                watcher.publish("billy/say", "Back online.")
                await until(lambda: watcher.states(mark)[-2:] == ["speaking", "idle"], 30)
            finally:
                await billy.close()

        try:
            asyncio.run(scenario())
        finally:
            watcher.close()

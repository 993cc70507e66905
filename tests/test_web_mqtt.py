"""The page's knobs in Home Assistant: persona and song selects, a number per trait, the "Visit" link.

Against a real mosquitto, observed by a real paho client (the helpers of tests/test_mqtt.py).
"""

from __future__ import annotations

import json
import logging

import pytest

from core.config import MqttSettings
from core.home.bridge import MqttBridge
from core.home.discovery import Topics, discovery_messages
from core.home.messages import PayloadError, parse_persona, parse_trait
from core.persona.requests import PersonaRequest, TraitRequest
from core.persona.traits import TRAITS
from core.talk.requests import RequestQueue
from tests.test_mqtt import broker, listeners, loop, take, wait_until  # noqa: F401 - fixtures

URL = "http://192.168.1.20:8080/"
PERSONAS = ["billy", "pirate"]


def test_discovery_has_the_selects_numbers_and_the_page_link():
    topics = Topics.under("billy")
    configs = discovery_messages(MqttSettings(), topics, "1", personas=PERSONAS, songs=["Reef Shuffle"], page_url=URL)
    persona = configs["homeassistant/select/billy/persona/config"]
    assert persona["options"] == PERSONAS
    assert persona["command_topic"] == "billy/persona/set" and persona["state_topic"] == "billy/persona"
    song = configs["homeassistant/select/billy/song/config"]
    assert song["options"] == ["Reef Shuffle"] and song["command_topic"] == "billy/song"
    for trait in TRAITS:
        number = configs[f"homeassistant/number/billy/trait_{trait}/config"]
        assert number["command_topic"] == f"billy/trait/{trait}/set"
        assert number["state_topic"] == f"billy/trait/{trait}"
        assert (number["min"], number["max"], number["step"]) == (0, 100, 1)
        assert number["unique_id"] == f"billy_trait_{trait}"
    assert all(c["device"]["configuration_url"] == URL for c in configs.values())
    bare = discovery_messages(MqttSettings(), topics, "1")
    assert not any("/select/" in t or "/number/" in t for t in bare)
    assert "configuration_url" not in next(iter(bare.values()))["device"]


@pytest.mark.parametrize(
    ("payload", "expected"),
    [(b"pirate", PersonaRequest("pirate")), (b'{"persona": "butler"}', PersonaRequest("butler"))],
)
def test_parse_persona(payload, expected):
    assert parse_persona(payload) == expected


@pytest.mark.parametrize(
    ("parse", "payload", "reason"),
    [
        (parse_persona, b"../../etc/passwd", "not a persona name"),
        (parse_persona, b'{"persona": 5}', '"persona" is int'),
        (parse_persona, b"\xff\xfe", "not UTF-8"),
        (parse_persona, b"x" * 600, "over the"),
        (lambda p: parse_trait("humor", p), b"loud", "not a number"),
        (lambda p: parse_trait("humor", p), b"120", "not a number from 0 to 100"),
        (lambda p: parse_trait("humor", p), b"nan", "not a number"),
        (lambda p: parse_trait("humor", p), b"", "empty"),
    ],
)
def test_bad_payloads_are_refused_with_the_reason(parse, payload, reason):
    with pytest.raises(PayloadError, match=reason):
        parse(payload)


def test_parse_trait_rounds_what_home_assistant_sends():
    assert parse_trait("humor", b"42.0") == TraitRequest("humor", 42)
    assert parse_trait("warmth", b"0") == TraitRequest("warmth", 0)


def test_the_bridge_takes_persona_and_traits_and_publishes_them(broker, loop, listeners, caplog):  # noqa: F811
    caplog.set_level(logging.INFO)
    listener = listeners(broker)
    queue = RequestQueue(20)
    settings = MqttSettings(host=broker.host, port=broker.port)
    bridge = MqttBridge(settings, loop, queue.put_nowait, personas=PERSONAS, songs=["Reef Shuffle"], page_url=URL)
    bridge.publish_persona("billy", {"humor": 85, "sarcasm": 60}, PERSONAS)
    bridge.start()
    try:
        listener.wait_payload("billy/availability", b"online")
        listener.wait_payload("billy/persona", b"billy")
        listener.wait_payload("billy/trait/humor", b"85")
        late = listeners(broker, "billy/persona", "billy/trait/#")  # retained: a late subscriber sees them
        late.wait_payload("billy/trait/humor", b"85")
        assert all(m.retain for m in late.messages)
        listener.publish("billy/trait/humor/set", "12.0")
        listener.publish("billy/persona/set", "pirate")
        listener.publish("billy/persona/set", "../../etc")  # refused, with a log line
        listener.publish("billy/trait/sarcasm/set", "lots")
        assert take(loop, queue, 2) == [TraitRequest("humor", 12), PersonaRequest("pirate")]
        wait_until(lambda: sum("rejected" in r.getMessage() for r in caplog.records) >= 2, "two rejections")
        assert queue.qsize() == 0
        # A new persona: the select's options are announced again, the state follows.
        bridge.publish_persona("captain", {"humor": 12}, [*PERSONAS, "captain"])
        topic = "homeassistant/select/billy/persona/config"
        listener.wait_for(
            lambda me: any("captain" in json.loads(p)["options"] for p in me.payloads(topic)), "new options"
        )
        listener.wait_payload("billy/persona", b"captain")
        listener.wait_payload("billy/trait/humor", b"12")
    finally:
        bridge.stop()

"""MQTT bridge: Billy as a Home Assistant device, and requests from the broker.

paho runs its network loop on its own thread. Its callbacks only validate payloads and hand
the request to the asyncio loop with `loop.call_soon_threadsafe(deliver, request)`; the app
acts on commands at once and queues announcements, so they never interleave.
The broker may come and go: paho reconnects with backoff (1 s doubling to 60 s) and every
(re)connect republishes discovery, availability, the current state and the last latency.
Outbound messages use QoS 0 and are only sent while connected, so a stale message queued
during an outage can never overwrite a newer retained state after the reconnect.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import json
import logging
import ssl
import threading
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.client import ConnectFlags, DisconnectFlags
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from core.config import MqttSettings
from core.home.discovery import Topics, discovery_messages, package_version
from core.home.messages import PayloadError, parse_command, parse_persona, parse_say, parse_song, parse_trait
from core.interfaces import TurnRecord
from core.persona.requests import PersonaRequest, TraitRequest
from core.persona.traits import TRAITS
from core.state import State, StateChange
from core.talk.requests import Request, describe

log = logging.getLogger(__name__)

LATENCY_KEY = "end_of_speech_to_first_audio"
"""The `TurnRecord.latency_ms` figure shown by the latency sensor."""
RECONNECT_MIN_SECONDS = 1
RECONNECT_MAX_SECONDS = 60
KEEPALIVE_SECONDS = 30
STOP_FLUSH_SECONDS = 2.0
"""How long `stop()` waits for the `offline` message to leave before disconnecting."""


def _describe(item: Any) -> str:
    """A request in a log line: persona and trait requests name themselves."""
    if isinstance(item, PersonaRequest):
        return f"persona {item.name!r}"
    if isinstance(item, TraitRequest):
        return f"trait {item.trait}={item.value}"
    return describe(item)


def _turn_payload(record: TurnRecord) -> str:
    body = dataclasses.asdict(record)
    body["tools"] = [call["name"] for call in body["tool_calls"]]
    return json.dumps(body, default=str, ensure_ascii=False)


class MqttBridge:
    """Billy's one connection to the broker; publishes what he does, delivers what he is told.

    Public methods are called from the asyncio loop and never block on the network, except
    `stop()`, which waits up to `STOP_FLUSH_SECONDS` for the `offline` message to leave.
    """

    def __init__(
        self,
        settings: MqttSettings,
        loop: asyncio.AbstractEventLoop,
        deliver: Callable[[Request], None],
        *,
        sw_version: str | None = None,
        personas: Sequence[str] = (),
        songs: Sequence[str] = (),
        page_url: str = "",
    ):
        self.settings = settings
        self.topics = Topics.under(settings.topic_prefix)
        self._loop = loop
        self._deliver = deliver
        self._discovery_args = {"sw_version": sw_version or package_version(), "songs": songs, "page_url": page_url}
        self._discovery = self._discovery_for(personas)
        self._handlers = {
            self.topics.say: parse_say,
            self.topics.command: parse_command,
            self.topics.song: parse_song,
            self.topics.persona_set: parse_persona,
            **{self.topics.trait_set(t): functools.partial(parse_trait, t) for t in TRAITS},
        }
        self._persona: tuple[str, dict[str, int]] | None = None
        self._ha_status_topic = f"{settings.discovery_prefix}/status"
        self._lock = threading.Lock()
        self._state: State | None = None
        self._latency: str | None = None
        self._connected = False
        self._stopping = False
        self._started = False
        self._last_problem = ""
        self._client = self._make_client()

    @property
    def connected(self) -> bool:
        return self._connected

    @property
    def _where(self) -> str:
        return f"{self.settings.host}:{self.settings.port}"

    def _make_client(self) -> paho.Client:
        client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"billy-{self.settings.device_id}-{uuid.uuid4().hex[:8]}",
            protocol=paho.MQTTv311,
        )
        client.will_set(self.topics.availability, "offline", qos=1, retain=True)
        if self.settings.username:
            client.username_pw_set(self.settings.username, self.settings.password or None)
        client.reconnect_delay_set(RECONNECT_MIN_SECONDS, RECONNECT_MAX_SECONDS)
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        return client

    def start(self) -> None:
        """Begin connecting in the background; returns at once, even if the broker is dead."""
        if not self.settings.enabled:
            log.info("MQTT is off (MQTT_HOST is empty)")
            return
        if self._started:
            return
        try:
            if self.settings.tls:
                ca_cert = str(self.settings.ca_cert) if self.settings.ca_cert else None
                self._client.tls_set(ca_certs=ca_cert)
            self._client.connect_async(self.settings.host, self.settings.port, keepalive=KEEPALIVE_SECONDS)
        except (OSError, ValueError, ssl.SSLError) as err:
            log.error(
                "MQTT is off: cannot set up the connection to %s (%s); check MQTT_HOST, MQTT_PORT, "
                "MQTT_TLS and MQTT_CA_CERT",
                self._where,
                err,
            )
            return
        self._started = True
        self._client.loop_start()
        auth = "with a username" if self.settings.username else "anonymously"
        log.info("MQTT connecting to %s %s%s", self._where, auth, " over TLS" if self.settings.tls else "")

    def stop(self) -> None:
        """Say `offline` (retained), disconnect cleanly so no last will fires, end paho's thread.

        Blocks up to `STOP_FLUSH_SECONDS` plus about one second (paho's thread may be
        sleeping between reconnect attempts): call it at shutdown, or in an executor.
        """
        if not self._started:
            return
        self._stopping = True
        if self._connected:
            info = self._client.publish(self.topics.availability, "offline", qos=1, retain=True)
            try:
                info.wait_for_publish(timeout=STOP_FLUSH_SECONDS)
            except (RuntimeError, ValueError) as err:
                log.warning("MQTT could not say offline before stopping (%s); the last will says it", err)
        self._client.disconnect()
        self._client.loop_stop()
        self._started = False
        self._connected = False
        log.info("MQTT stopped")

    def publish_state(self, state: State) -> None:
        """Retained; remembered so that every reconnect republishes it."""
        with self._lock:
            self._state = state
            if self._connected:
                self._client.publish(self.topics.state, state.value, retain=True)

    def on_state(self, change: StateChange) -> None:
        """A `StateOwner` observer."""
        self.publish_state(change.current)

    def publish_turn(self, record: TurnRecord) -> None:
        """Turn telemetry on `<prefix>/turn` (unless publish_turns is off) and the latency sensor."""
        latency = record.latency_ms.get(LATENCY_KEY)
        with self._lock:
            if latency is not None:
                self._latency = f"{latency:.0f}"
                if self._connected:
                    self._client.publish(self.topics.latency, self._latency, retain=True)
            if self.settings.publish_turns and self._connected:
                self._client.publish(self.topics.turn, _turn_payload(record))

    # --- paho callbacks: paho's thread; never raise, hand work to the loop ------------------

    def _announce(self) -> None:
        """Everything a fresh broker or a restarted Home Assistant needs to see Billy."""
        with self._lock:
            self._connected = True
            for topic, config in self._discovery.items():
                self._client.publish(topic, json.dumps(config), retain=True)
            self._client.publish(self.topics.availability, "online", retain=True)
            if self._state is not None:
                self._client.publish(self.topics.state, self._state.value, retain=True)
            if self._latency is not None:
                self._client.publish(self.topics.latency, self._latency, retain=True)
            self._publish_persona_locked()

    def _discovery_for(self, personas: Sequence[str]) -> dict[str, dict[str, Any]]:
        args = self._discovery_args
        return discovery_messages(
            self.settings, self.topics, args["sw_version"], personas=personas, songs=args["songs"],
            page_url=args["page_url"],
        )  # fmt: skip

    def publish_persona(self, name: str, traits: Mapping[str, int], personas: Sequence[str]) -> None:
        """The persona in use and its traits (retained), for the select and the numbers; any thread.

        A changed list of personas (one created, renamed or deleted) re-announces the select.
        """
        with self._lock:
            self._persona = (name, dict(traits))
            discovery = self._discovery_for(personas)
            changed = {topic: config for topic, config in discovery.items() if self._discovery.get(topic) != config}
            self._discovery = discovery
            if self._connected:
                for topic, config in changed.items():
                    self._client.publish(topic, json.dumps(config), retain=True)
            self._publish_persona_locked()

    def _publish_persona_locked(self) -> None:
        if self._persona is None or not self._connected:
            return
        name, traits = self._persona
        self._client.publish(self.topics.persona, name, retain=True)
        for trait, value in traits.items():
            self._client.publish(self.topics.trait_state(trait), str(value), retain=True)

    def _on_connect(
        self, client: paho.Client, userdata: Any, flags: ConnectFlags, reason_code: ReasonCode, properties: Properties
    ) -> None:
        try:
            if reason_code.is_failure:
                self._problem(
                    f"the broker at {self._where} refused the connection ({reason_code}); "
                    "check MQTT_USERNAME and MQTT_PASSWORD; retrying with backoff"
                )
                return
            client.subscribe([(topic, 1) for topic in (*self._handlers, self._ha_status_topic)])
            self._announce()
            log.info(
                "MQTT connected to %s as %r (topics %s/#)",
                self._where,
                self.settings.device_id,
                self.settings.topic_prefix,
            )
            self._last_problem = ""
        except Exception:
            log.exception("MQTT on_connect failed; Billy goes on without it")

    def _on_connect_fail(self, client: paho.Client, userdata: Any) -> None:
        self._problem(
            f"cannot reach the broker at {self._where}; retrying with backoff up to "
            f"{RECONNECT_MAX_SECONDS} s, Billy works on without it"
        )

    def _on_disconnect(
        self,
        client: paho.Client,
        userdata: Any,
        flags: DisconnectFlags,
        reason_code: ReasonCode,
        properties: Properties,
    ) -> None:
        with self._lock:
            was_connected, self._connected = self._connected, False
        if was_connected and not self._stopping:
            self._problem(f"lost the broker at {self._where} ({reason_code}); reconnecting with backoff")

    def _problem(self, line: str) -> None:
        """Log a connection problem once, and its repeats (each retry) at debug level only."""
        if line != self._last_problem:
            log.warning("MQTT: %s", line)
            self._last_problem = line
        else:
            log.debug("MQTT: %s", line)

    def _on_message(self, client: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        try:
            self._handle(message)
        except Exception:
            log.exception("MQTT message on %s could not be handled; it is dropped", message.topic)

    def _handle(self, message: paho.MQTTMessage) -> None:
        topic = message.topic
        if topic == self._ha_status_topic:
            if message.payload == b"online":
                log.info("Home Assistant came online: republishing discovery")
                self._announce()
            return
        parse = self._handlers.get(topic)
        if parse is None:
            return
        if message.retain:
            log.warning(
                "MQTT %s: ignored a retained message (it would replay at every connect); clear it with "
                "mosquitto_pub -r -n -t %s",
                topic,
                topic,
            )
            return
        try:
            item = parse(message.payload)
        except PayloadError as err:
            log.warning("MQTT %s rejected: %s", topic, err)
            return
        log.info("MQTT %s: %s", topic, _describe(item))
        try:
            self._loop.call_soon_threadsafe(self._deliver, item)
        except RuntimeError:
            log.warning("MQTT %s: %s dropped, the voice loop is closed", topic, _describe(item))

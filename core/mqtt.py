"""MQTT bridge: Billy as a Home Assistant device, and announcements from the broker.

paho runs its network loop on its own thread. Its callbacks only validate payloads and hand
the result to the asyncio loop with `loop.call_soon_threadsafe(inbound.put_nowait, item)`;
the voice loop consumes `InboundQueue` one item at a time, so announcements never interleave.
The broker may come and go: paho reconnects with backoff (1 s doubling to 60 s) and every
(re)connect republishes discovery, availability, the current state and the last latency.
Outbound messages use QoS 0 and are only sent while connected, so a stale message queued
during an outage can never overwrite a newer retained state after the reconnect.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import ssl
import threading
import tomllib
import uuid
from collections import deque
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.client import ConnectFlags, DisconnectFlags
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from core.config import ROOT, MqttSettings
from core.errors import BillyError
from core.interfaces import TurnRecord
from core.state import State, StateChange

log = logging.getLogger(__name__)

MAX_SAY_BYTES = 4096
"""Largest `say` payload accepted (bytes); a spoken announcement longer than this is a mistake."""
MAX_SHORT_BYTES = 512
"""Largest `command` or `song` payload accepted (bytes)."""
COMMANDS = ("shutdown", "restart", "listen", "stop")
LATENCY_KEYS = ("end_of_speech_to_first_audio", "total")
"""`TurnRecord.latency_ms` keys shown by the latency sensor, first present wins."""
RECONNECT_MIN_SECONDS = 1
RECONNECT_MAX_SECONDS = 60
KEEPALIVE_SECONDS = 30
STOP_FLUSH_SECONDS = 2.0
"""How long `stop()` waits for the `offline` message to leave before disconnecting."""
_PREVIEW_CHARS = 60


class PayloadError(BillyError, ValueError):
    """An inbound MQTT payload is too big, not text, or not the expected shape."""


@dataclass(frozen=True)
class SayRequest:
    """Something to say: `text` as is, or (prompt=True) a prompt Billy answers in character."""

    text: str
    prompt: bool = False
    interactive: bool = False
    """Listen for an answer after speaking (opens a conversation)."""


@dataclass(frozen=True)
class CommandRequest:
    command: str
    """One of `COMMANDS`."""


@dataclass(frozen=True)
class SongRequest:
    song: str
    """A song name as given; the song library resolves it."""


Inbound = SayRequest | CommandRequest | SongRequest


# --- payload parsing: pure functions, each rejection a PayloadError with the reason ---------


def _preview(text: str) -> str:
    """A short, printable quote of untrusted text for a log line."""
    if len(text) > _PREVIEW_CHARS:
        text = text[:_PREVIEW_CHARS] + "…"
    return repr(text)


def _check_text(text: str) -> str:
    for char in text:
        if (ord(char) < 32 and char not in "\n\t") or 127 <= ord(char) < 160:
            raise PayloadError(f"control character {char!r} in text; send plain text")
    text = text.strip()
    if not text:
        raise PayloadError("empty text")
    return text


def _decode(payload: bytes, limit: int) -> str:
    if len(payload) > limit:
        raise PayloadError(f"payload of {len(payload)} bytes is over the {limit}-byte limit")
    try:
        text = bytes(payload).decode("utf-8")
    except UnicodeDecodeError:
        raise PayloadError(f"binary payload of {len(payload)} bytes is not UTF-8 text") from None
    return _check_text(text)


def _json_object(text: str) -> dict[str, Any] | None:
    """Parse `text` as a JSON object when it looks like JSON; None when it is plain text.

    Text that starts with `{` must be valid JSON. Text that starts with `[` is plain text
    unless it parses as JSON (so "[laughs] hello" is spoken, `[1, 2]` is rejected).
    """
    if not text.startswith(("{", "[")):
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        if text.startswith("["):
            return None
        raise PayloadError(f"invalid JSON ({err.msg} at character {err.pos})") from None
    if not isinstance(value, dict):
        raise PayloadError(f"JSON must be an object, not {type(value).__name__}")
    return value


def _field(obj: dict[str, Any], key: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str):
        kind = "missing" if value is None else f"{type(value).__name__}, not a string"
        raise PayloadError(f'JSON field "{key}" is {kind}')
    return _check_text(value)


def _say_text(text: str, interactive: bool) -> SayRequest:
    if text.startswith("{{") and text.endswith("}}"):
        inner = text[2:-2].strip()
        if not inner:
            raise PayloadError("empty {{prompt}}")
        return SayRequest(inner, prompt=True, interactive=interactive)
    return SayRequest(text, prompt=False, interactive=interactive)


def parse_say(payload: bytes) -> SayRequest:
    """Plain text is spoken as is; `{{...}}` is a prompt; `{"text": ..., "interactive": bool}`."""
    text = _decode(payload, MAX_SAY_BYTES)
    if text.startswith("{{") and text.endswith("}}"):
        return _say_text(text, interactive=False)
    obj = _json_object(text)
    if obj is None:
        return SayRequest(text, prompt=False, interactive=False)
    interactive = obj.get("interactive", False)
    if not isinstance(interactive, bool):
        raise PayloadError(f'JSON field "interactive" is {type(interactive).__name__}, not true/false')
    return _say_text(_field(obj, "text"), interactive)


def parse_command(payload: bytes) -> CommandRequest:
    """One bare word of `COMMANDS`, any case."""
    text = _decode(payload, MAX_SHORT_BYTES)
    command = text.lower()
    if command not in COMMANDS:
        raise PayloadError(f"unknown command {_preview(text)}; use one of {', '.join(COMMANDS)}")
    return CommandRequest(command)


def parse_song(payload: bytes) -> SongRequest:
    """A song name, or `{"song": name}`."""
    text = _decode(payload, MAX_SHORT_BYTES)
    obj = _json_object(text)
    return SongRequest(text if obj is None else _field(obj, "song"))


def describe(item: Inbound) -> str:
    """A short name for a request in a log line."""
    if isinstance(item, SayRequest):
        kind = "prompt" if item.prompt else "say"
        return f"{kind} {_preview(item.text)}"
    if isinstance(item, CommandRequest):
        return f"command {item.command!r}"
    return f"song {_preview(item.song)}"


# --- the queue the voice loop consumes ----------------------------------------------------


class InboundQueue:
    """Bounded FIFO of inbound requests, used on the asyncio loop only.

    When full, the OLDEST waiting request is dropped with a warning naming it: a burst of
    announcements keeps the newest ones, and nothing disappears without a log line.
    """

    def __init__(self, maxsize: int = 20):
        if maxsize < 1:
            raise ValueError("InboundQueue maxsize must be at least 1")
        self.maxsize = maxsize
        self.dropped = 0
        """How many requests were dropped because the queue was full."""
        self._items: deque[Inbound] = deque()
        self._ready = asyncio.Event()

    def qsize(self) -> int:
        return len(self._items)

    def put_nowait(self, item: Inbound) -> None:
        if len(self._items) >= self.maxsize:
            oldest = self._items.popleft()
            self.dropped += 1
            log.warning("MQTT queue full (%d waiting): dropped the oldest, %s", self.maxsize, describe(oldest))
        self._items.append(item)
        self._ready.set()

    async def get(self) -> Inbound:
        while not self._items:
            self._ready.clear()
            await self._ready.wait()
        return self._items.popleft()


# --- the bridge -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Topics:
    """Every topic of one fish, under its prefix."""

    state: str
    availability: str
    say: str
    command: str
    song: str
    turn: str
    latency: str

    @classmethod
    def under(cls, prefix: str) -> Topics:
        return cls(*(f"{prefix}/{f.name}" for f in dataclasses.fields(cls)))


def _sw_version() -> str:
    try:
        with open(ROOT / "pyproject.toml", "rb") as file:
            return str(tomllib.load(file)["project"]["version"])
    except (OSError, KeyError, tomllib.TOMLDecodeError):
        return "unknown"


def discovery_messages(settings: MqttSettings, topics: Topics, sw_version: str) -> dict[str, dict[str, Any]]:
    """Home Assistant discovery configs by topic: one device, its sensors, text and buttons."""
    dev_id = settings.device_id
    device = {
        "identifiers": [dev_id],
        "name": settings.device_name,
        "model": "Big Mouth Billy Bass",
        "manufacturer": "Billy open-source firmware",
        "sw_version": sw_version,
    }
    common = {
        "availability_topic": topics.availability,
        "payload_available": "online",
        "payload_not_available": "offline",
        "device": device,
    }
    entities: list[tuple[str, str, dict[str, Any]]] = [
        (
            "sensor",
            "state",
            {
                "name": "State",
                "state_topic": topics.state,
                "device_class": "enum",
                "options": [state.value for state in State],
                "icon": "mdi:fish",
            },
        ),
        (
            "sensor",
            "latency",
            {
                "name": "Last turn latency",
                "state_topic": topics.latency,
                "unit_of_measurement": "ms",
                "device_class": "duration",
                "state_class": "measurement",
                "suggested_display_precision": 0,
            },
        ),
        (
            "text",
            "say",
            {
                "name": "Say",
                "command_topic": topics.say,
                "mode": "text",
                "min": 1,
                "max": 255,
                "icon": "mdi:bullhorn",
            },
        ),
    ]
    icons = {"listen": "mdi:ear-hearing", "stop": "mdi:stop", "restart": "mdi:restart", "shutdown": "mdi:power"}
    for command in COMMANDS:
        entities.append(
            (
                "button",
                command,
                {
                    "name": command.capitalize(),
                    "command_topic": topics.command,
                    "payload_press": command,
                    "icon": icons[command],
                },
            )
        )
    return {
        f"{settings.discovery_prefix}/{component}/{dev_id}/{object_id}/config": {
            **config,
            "unique_id": f"{dev_id}_{object_id}",
            **common,
        }
        for component, object_id, config in entities
    }


def _turn_payload(record: TurnRecord) -> str:
    body = dataclasses.asdict(record)
    body["tools"] = [call["name"] for call in body["tool_calls"]]
    return json.dumps(body, default=str, ensure_ascii=False)


class MqttBridge:
    """Billy's one connection to the broker; publishes what he does, queues what he is told.

    Public methods are called from the asyncio loop and never block on the network, except
    `stop()`, which waits up to `STOP_FLUSH_SECONDS` for the `offline` message to leave.
    """

    def __init__(
        self,
        settings: MqttSettings,
        loop: asyncio.AbstractEventLoop,
        inbound: InboundQueue,
        *,
        sw_version: str | None = None,
    ):
        self.settings = settings
        self.topics = Topics.under(settings.topic_prefix)
        self._loop = loop
        self._inbound = inbound
        self._discovery = discovery_messages(settings, self.topics, sw_version or _sw_version())
        self._handlers = {
            self.topics.say: parse_say,
            self.topics.command: parse_command,
            self.topics.song: parse_song,
        }
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
        latency = next((record.latency_ms[k] for k in LATENCY_KEYS if k in record.latency_ms), None)
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
        log.info("MQTT %s: %s", topic, describe(item))
        try:
            self._loop.call_soon_threadsafe(self._inbound.put_nowait, item)
        except RuntimeError:
            log.warning("MQTT %s: %s dropped, the voice loop is closed", topic, describe(item))

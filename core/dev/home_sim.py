"""A simulated Home Assistant: HA's own English sentences and answers over a small fixed home.

It behaves like Home Assistant's default conversation agent (`homeassistant/components/
conversation/default_agent.py`): the sentence templates of the `home-assistant-intents`
package, matched with hassil against slot lists of the home's entity names (each with its
domain as context) and area names; a strict match first (a match naming an entity wins),
then, as HA does for its error messages, a match that lets names be unknown, answered
"Sorry, I am not aware of any device called ..." (`no_valid_targets`); nothing at all is
`no_intent_match`. Commands change the in-memory states, questions are answered from them,
and every answer is rendered from HA's own response templates (jinja2, as HA renders them).

Only the intents this home can carry out are loaded (`INTENTS`): it has no timers, lists,
weather, vacuum, lawn mower, broadcast or media search, and Billy's REST call names no
device, so sentences that need the speaker's area ("turn on the lights") do not match.

It is served on 127.0.0.1 with HA's REST API, so Billy's real client talks to it over HTTP:

    with SimulatedHomeAssistant() as ha:   # ha.url, ha.token, ha.home.state("lock.front_door")
        HomeAssistantSettings(host=ha.url, token=ha.token)
"""

from __future__ import annotations

import copy
import datetime
import json
import threading
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jinja2
from hassil import Intents, TextSlotList, recognize_all, recognize_best
from hassil.recognize import MISSING_ENTITY, RecognizeResult
from hassil.string_matcher import UnmatchedTextEntity
from home_assistant_intents import get_intents

INTENTS = (
    "HassTurnOn", "HassTurnOff", "HassGetState", "HassLightSet", "HassClimateGetTemperature",
    "HassClimateSetTemperature", "HassSetPosition", "HassFanSetSpeed", "HassMediaPause", "HassMediaUnpause",
    "HassMediaNext", "HassMediaPrevious", "HassSetVolume", "HassMediaPlayerMute", "HassMediaPlayerUnmute",
    "HassGetCurrentTime", "HassGetCurrentDate", "HassNevermind", "HassRespond",
)  # fmt: skip
"""The intents this home can carry out; HA's other intents are left out, as if their integrations were absent."""


@dataclass
class Entity:
    entity_id: str
    name: str
    area: str | None
    state: str
    attributes: dict[str, Any] = field(default_factory=dict)
    aliases: tuple[str, ...] = ()

    @property
    def domain(self) -> str:
        return self.entity_id.split(".", 1)[0]

    @property
    def state_with_unit(self) -> str:
        unit = self.attributes.get("unit_of_measurement")
        return f"{self.state} {unit}" if unit else self.state

    @property
    def object_id(self) -> str:
        return self.entity_id.split(".", 1)[1]


AREAS: dict[str, tuple[str, ...]] = {
    "Kitchen": (),
    "Living Room": ("lounge",),
    "Bedroom": (),
    "Office": ("study",),
    "Hallway": ("hall",),
    "Garage": (),
}
"""Area names and their aliases."""


def default_entities() -> list[Entity]:
    """The simulated home, in its starting state (temperatures in °C)."""
    return [
        Entity("light.kitchen", "Kitchen Light", "Kitchen", "off", {"brightness_pct": 0}),
        Entity("light.living_room_lamp", "Living Room Lamp", "Living Room", "on", {"brightness_pct": 70}),
        Entity("light.bedroom", "Bedroom Light", "Bedroom", "off", {"brightness_pct": 0}),
        Entity("light.desk_lamp", "Desk Lamp", "Office", "off", {"brightness_pct": 0}),
        Entity("lock.front_door", "Front Door", "Hallway", "locked"),
        Entity("lock.back_door", "Back Door", "Kitchen", "unlocked"),
        Entity("cover.garage_door", "Garage Door", "Garage", "closed", {"device_class": "garage", "position": 0}),
        Entity("cover.bedroom_blinds", "Bedroom Blinds", "Bedroom", "open", {"device_class": "blind", "position": 100}),
        Entity(
            "climate.thermostat",
            "Thermostat",
            "Living Room",
            "heat",
            {"current_temperature": 20.5, "temperature": 21, "unit_of_measurement": "°C"},
            ("heating",),
        ),
        Entity("fan.ceiling_fan", "Ceiling Fan", "Bedroom", "off", {"percentage": 0}),
        Entity("media_player.tv", "TV", "Living Room", "playing", {"volume": 30, "muted": False}, ("television",)),
        Entity("switch.coffee_maker", "Coffee Maker", "Kitchen", "off", {}, ("coffee machine",)),
        Entity(
            "sensor.outdoor_temperature",
            "Outdoor Temperature",
            None,
            "12.5",
            {"device_class": "temperature", "unit_of_measurement": "°C"},
        ),
    ]


class MatchFailed(Exception):
    """No entity meets the command's constraints: HA's `no_valid_targets` with this error key."""

    def __init__(self, key: str, **args: Any):
        super().__init__(key)
        self.key = key
        self.args_ = args


_ON = {"lock": "locked", "cover": "open", "valve": "open", "media_player": "on"}
_OFF = {"lock": "unlocked", "cover": "closed", "valve": "closed", "media_player": "off"}
_SWITCHABLE = {"light", "switch", "fan", "media_player", "climate", "lock", "cover", "valve", "input_boolean"}
_SETTERS = {
    "HassLightSet": ("light", "brightness", "brightness_pct"),
    "HassSetPosition": ("cover", "position", "position"),
    "HassFanSetSpeed": ("fan", "percentage", "percentage"),
    "HassClimateSetTemperature": ("climate", "temperature", "temperature"),
    "HassSetVolume": ("media_player", "volume", "volume"),
}
"""Intents that set a number: (domain, slot, attribute). A light set to a colour has no number."""
_LEVEL_STATES = {"light": ("off", "on"), "fan": ("off", "on"), "cover": ("closed", "open")}
"""The state a level puts an entity in: (at 0, above 0)."""
_MEDIA = {
    "HassMediaPause": ("state", "paused"),
    "HassMediaUnpause": ("state", "playing"),
    "HassMediaNext": ("state", "playing"),
    "HassMediaPrevious": ("state", "playing"),
    "HassMediaPlayerMute": ("muted", True),
    "HassMediaPlayerUnmute": ("muted", False),
}


class SimulatedHome:
    """The home's entities and what HA's default agent makes of a sentence about them. Thread-safe."""

    def __init__(self, entities: list[Entity] | None = None, language: str = "en"):
        self._initial = entities or default_entities()
        self.entities: dict[str, Entity] = {}
        self._lock = threading.Lock()
        data = get_intents(language)
        if data is None:
            raise ValueError(f"home-assistant-intents has no sentences for {language!r}")
        data = {**data, "intents": {k: v for k, v in data["intents"].items() if k in INTENTS}}
        self._intents = Intents.from_dict(data)
        self._responses: dict[str, dict[str, str]] = data["responses"]["intents"]
        self._errors: dict[str, str] = data["responses"]["errors"]
        self._jinja = jinja2.Environment(autoescape=False)
        self._jinja.globals["state_attr"] = self._state_attr
        self.reset()

    def reset(self) -> None:
        """Every entity back to its starting state."""
        with self._lock:
            self.entities = {e.entity_id: copy.deepcopy(e) for e in self._initial}

    def state(self, entity_id: str) -> str:
        with self._lock:
            return self.entities[entity_id].state

    def states(self) -> dict[str, str]:
        with self._lock:
            return {eid: e.state for eid, e in self.entities.items()}

    # --- recognition, as HA's default agent does it ---------------------------------------

    def _slot_lists(self) -> dict[str, Any]:
        names = []
        for e in self.entities.values():
            context = {"domain": e.domain}
            if "device_class" in e.attributes:
                context["device_class"] = e.attributes["device_class"]
            names.extend((alias, alias, context) for alias in e.aliases)
            names.append((e.name, e.name, context))
        areas = [(name, name) for name in AREAS] + [(alias, alias) for aliases in AREAS.values() for alias in aliases]
        return {
            "name": TextSlotList.from_tuples(names, allow_template=False),
            "area": TextSlotList.from_tuples(areas, allow_template=False),
            "floor": TextSlotList.from_tuples([], allow_template=False),
        }

    def recognize(self, text: str) -> RecognizeResult | None:
        """HA's `_recognize`: strict (best match naming an entity), else the best match with unknown names."""
        lists = self._slot_lists()
        strict = recognize_best(text, self._intents, slot_lists=lists, language="en", best_slot_name="name")
        if strict is not None:
            return strict
        best: RecognizeResult | None = None
        best_score = (0, 0)
        for result in recognize_all(text, self._intents, slot_lists=lists, allow_unmatched_entities=True):
            if result.text_chunks_matched < 1:
                continue
            matched = sum(1 for e in result.entities_list if e.name not in result.unmatched_entities)
            unmatched = sum(
                1
                for e in result.unmatched_entities_list
                if not (isinstance(e, UnmatchedTextEntity) and e.text == MISSING_ENTITY)
            )
            if (
                best is None
                or result.text_chunks_matched > best.text_chunks_matched
                or matched > best_score[0]
                or (matched == best_score[0] and unmatched < best_score[1])
                or (
                    result.text_chunks_matched == best.text_chunks_matched
                    and (matched, unmatched) == best_score
                    and ("name" in result.entities or "name" in result.unmatched_entities)
                )
            ):
                best, best_score = result, (matched, unmatched)
        return best

    # --- handling ------------------------------------------------------------------------

    def process(self, text: str, language: str = "en") -> dict[str, Any]:
        """HA's `response` object for `text`: speech, `response_type` and data."""
        result = self.recognize(text)
        if result is None:
            return _error(self._errors["no_intent"], "no_intent_match", language)
        if result.unmatched_entities:
            key, args = _unmatched_error(result)
            return _error(self._render(self._errors[key], args), "no_valid_targets", language)
        slots = {e.name: e.value for e in result.entities_list}
        with self._lock:
            try:
                kind, matched, unmatched, extra = self._handle(result.intent.name, slots)
            except MatchFailed as failed:
                return _error(self._render(self._errors[failed.key], failed.args_), "no_valid_targets", language)
            template = self._responses.get(result.intent.name, {}).get(result.response or "default", "")
            speech_slots = {name: entity.text or entity.value for name, entity in result.entities.items()}
            speech_slots.update(extra)
            first = (matched or unmatched or [None])[0]
            speech = self._render(
                template,
                {"slots": speech_slots, "state": first, "query": {"matched": matched, "unmatched": unmatched}},
            )
        success = [{"name": e.name, "type": "entity", "id": e.entity_id} for e in matched]
        return {
            "speech": {"plain": {"speech": speech, "extra_data": None}},
            "card": {},
            "language": language,
            "response_type": kind,
            "data": {"targets": [], "success": success, "failed": []},
        }

    def _handle(self, intent: str, slots: dict[str, Any]) -> tuple[str, list[Entity], list[Entity], dict[str, Any]]:
        """Carry out one intent: (response_type, matched, unmatched, extra speech slots)."""
        if intent in ("HassTurnOn", "HassTurnOff"):
            on = intent == "HassTurnOn"
            targets = [e for e in self._targets(slots) if e.domain in _SWITCHABLE]
            if not targets:
                raise MatchFailed("no_domain", domain=str(slots.get("domain") or "device"))
            for e in targets:
                e.state = (_ON if on else _OFF).get(e.domain, "on" if on else "off")
            return "action_done", targets, [], {}
        if intent in ("HassGetState", "HassClimateGetTemperature"):
            targets = self._targets(slots, "climate" if intent == "HassClimateGetTemperature" else None)
            wanted = slots.get("state")
            matched = [e for e in targets if wanted is None or e.state == wanted]
            return "query_answer", matched, [e for e in targets if e not in matched], {}
        if intent in _SETTERS:
            domain, slot, attribute = _SETTERS[intent]
            targets = self._targets(slots, domain)
            for e in targets:
                value = slots.get(slot, slots.get("color", slots.get("temperature")))
                e.attributes[attribute if slot in slots else "color"] = value
                if domain in _LEVEL_STATES:
                    e.state = _LEVEL_STATES[domain][bool(value) if slot in slots else True]
            return "action_done", targets, [], {}
        if intent in _MEDIA:
            key, value = _MEDIA[intent]
            targets = self._targets(slots, "media_player")
            for e in targets:
                if key == "state":
                    e.state = value
                else:
                    e.attributes[key] = value
            return "action_done", targets, [], {}
        now = datetime.datetime.now()
        return "query_answer" if "GetCurrent" in intent else "action_done", [], [], {"time": now, "date": now}

    def _targets(self, slots: dict[str, Any], domain: str | None = None) -> list[Entity]:
        """The entities a command means (HA's `async_match_targets`, simplified); MatchFailed when none."""
        found = list(self.entities.values())
        name, area = slots.get("name"), slots.get("area")
        domains = slots.get("domain") or domain
        domains = {domains} if isinstance(domains, str) else set(domains or ())
        if name:
            found = [e for e in found if str(name).lower() in {e.name.lower(), *(a.lower() for a in e.aliases)}]
            if not found:
                raise MatchFailed("no_entity", entity=name)
        if area:
            area_name = next((a for a, aliases in AREAS.items() if str(area).lower() in {a.lower(), *aliases}), None)
            if area_name is None:
                raise MatchFailed("no_area", area=area)
            in_area = [e for e in found if e.area == area_name]
            if not in_area and name:
                raise MatchFailed("no_entity_in_area", entity=name, area=area)
            found = in_area
        if domains:
            found = [e for e in found if e.domain in domains]
            if not found:
                first = sorted(domains)[0]
                raise MatchFailed("no_domain_in_area" if area else "no_domain", domain=first, area=area)
        if "device_class" in slots:
            found = [e for e in found if e.attributes.get("device_class") == slots["device_class"]]
            if not found:
                key = "no_device_class_in_area" if area else "no_device_class"
                raise MatchFailed(key, device_class=slots["device_class"], area=area)
        if not found:
            raise MatchFailed("no_domain", domain=sorted(domains)[0] if domains else "device")
        return found

    def _state_attr(self, entity_id: str, name: str) -> Any:
        entity = self.entities.get(entity_id)
        return None if entity is None else entity.attributes.get(name)

    def _render(self, template: str, values: dict[str, Any]) -> str:
        """HA renders a response template, then squeezes its whitespace."""
        return " ".join(self._jinja.from_string(template).render(**values).split())


def _unmatched_error(result: RecognizeResult) -> tuple[str, dict[str, Any]]:
    """HA's `_get_unmatched_response`: which error a match with unknown names gets."""
    unmatched = {
        key: entity.text.strip()
        for key, entity in result.unmatched_entities.items()
        if isinstance(entity, UnmatchedTextEntity) and entity.text != MISSING_ENTITY
    }
    if "area" in unmatched:
        return "no_area", {"area": unmatched["area"]}
    if "name" in unmatched:
        area = result.entities.get("area")
        if area is not None:
            return "no_entity_in_area", {"entity": unmatched["name"], "area": area.text.strip()}
        return "no_entity", {"entity": unmatched["name"]}
    return "no_intent", {}


def _error(speech: str, code: str, language: str) -> dict[str, Any]:
    return {
        "speech": {"plain": {"speech": speech, "extra_data": None}},
        "card": {},
        "language": language,
        "response_type": "error",
        "data": {"code": code},
    }


class SimulatedHomeAssistant:
    """`SimulatedHome` behind HA's REST API on 127.0.0.1 (a free port); a context manager."""

    def __init__(self, home: SimulatedHome | None = None, token: str = "billy-eval"):
        self.home = home or SimulatedHome()
        self.token = token
        self.requests: list[tuple[str, dict[str, Any]]] = []
        """Every (text, response) answered, in order."""
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(self))
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    def __enter__(self) -> SimulatedHomeAssistant:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=2)

    def answer(self, body: dict[str, Any]) -> dict[str, Any]:
        """The JSON HA sends back for one `/api/conversation/process` request."""
        text = str(body.get("text", ""))
        response = self.home.process(text, str(body.get("language") or "en"))
        self.requests.append((text, response))
        return {
            "response": response,
            "conversation_id": body.get("conversation_id") or uuid.uuid4().hex,
            "continue_conversation": False,
        }


def _make_handler(owner: SimulatedHomeAssistant) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def _send(self, status: int, payload: bytes, content_type: str = "application/json") -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def _authorized(self) -> bool:
            if self.headers.get("Authorization") == f"Bearer {owner.token}":
                return True
            self._send(401, b"401: Unauthorized", "text/plain; charset=utf-8")
            return False

        def do_GET(self) -> None:
            if self.path != "/api/":
                self._send(404, b"404: Not Found", "text/plain")
            elif self._authorized():
                self._send(200, b'{"message": "API running."}')

        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if self.path != "/api/conversation/process":
                self._send(404, b"404: Not Found", "text/plain")
                return
            if not self._authorized():
                return
            try:
                body = json.loads(raw)
                if not isinstance(body, dict) or not isinstance(body.get("text"), str):
                    raise ValueError("no text")
            except ValueError:
                self._send(400, b'{"message": "Message format incorrect: required key not provided @ data[\'text\']"}')
                return
            self._send(200, json.dumps(owner.answer(body)).encode())

    return Handler

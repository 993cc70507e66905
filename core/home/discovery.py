"""Home Assistant MQTT discovery: Billy's topics, and one device with its entities."""

from __future__ import annotations

import dataclasses
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from core.config import ROOT, MqttSettings
from core.persona.traits import TRAITS
from core.state import State
from core.talk.requests import COMMANDS


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
    persona: str
    """The persona in use (out, retained); set it on `<persona>/set`."""
    trait: str
    """`<trait>/<name>`: a trait's value (out, retained); set it on `<trait>/<name>/set`."""

    @classmethod
    def under(cls, prefix: str) -> Topics:
        return cls(*(f"{prefix}/{f.name}" for f in dataclasses.fields(cls)))

    @property
    def persona_set(self) -> str:
        return f"{self.persona}/set"

    def trait_state(self, trait: str) -> str:
        return f"{self.trait}/{trait}"

    def trait_set(self, trait: str) -> str:
        return f"{self.trait}/{trait}/set"


def package_version() -> str:
    try:
        with open(ROOT / "pyproject.toml", "rb") as file:
            return str(tomllib.load(file)["project"]["version"])
    except (OSError, KeyError, tomllib.TOMLDecodeError):
        return "unknown"


def discovery_messages(
    settings: MqttSettings,
    topics: Topics,
    sw_version: str,
    *,
    personas: Sequence[str] = (),
    songs: Sequence[str] = (),
    page_url: str = "",
) -> dict[str, dict[str, Any]]:
    """Home Assistant discovery configs by topic: one device, its sensors, text and buttons.

    With `personas`, a persona select and a number per trait; with `songs` (titles), a select
    that plays one; with `page_url`, the device's "Visit" link to Billy's page.
    """
    dev_id = settings.device_id
    device = {
        "identifiers": [dev_id],
        "name": settings.device_name,
        "model": "Big Mouth Billy Bass",
        "manufacturer": "Billy open-source firmware",
        "sw_version": sw_version,
    }
    if page_url:
        device["configuration_url"] = page_url
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
    entities += _persona_entities(topics, personas) + _song_entities(topics, songs)
    return {
        f"{settings.discovery_prefix}/{component}/{dev_id}/{object_id}/config": {
            **config,
            "unique_id": f"{dev_id}_{object_id}",
            **common,
        }
        for component, object_id, config in entities
    }


def _persona_entities(topics: Topics, personas: Sequence[str]) -> list[tuple[str, str, dict[str, Any]]]:
    """A select for the persona in use and a 0–100 number per trait (so an automation can make Billy grumpy)."""
    if not personas:
        return []
    entities: list[tuple[str, str, dict[str, Any]]] = [
        (
            "select",
            "persona",
            {
                "name": "Persona",
                "command_topic": topics.persona_set,
                "state_topic": topics.persona,
                "options": list(personas),
                "icon": "mdi:account-voice",
            },
        )
    ]
    for trait in TRAITS:
        entities.append(
            (
                "number",
                f"trait_{trait}",
                {
                    "name": trait.capitalize(),
                    "command_topic": topics.trait_set(trait),
                    "state_topic": topics.trait_state(trait),
                    "min": 0,
                    "max": 100,
                    "step": 1,
                    "mode": "slider",
                    "icon": "mdi:tune-variant",
                },
            )
        )
    return entities


def _song_entities(topics: Topics, songs: Sequence[str]) -> list[tuple[str, str, dict[str, Any]]]:
    """A select that plays the song picked (it has no state: Home Assistant shows the last pick)."""
    if not songs:
        return []
    return [
        (
            "select",
            "song",
            {"name": "Play song", "command_topic": topics.song, "options": list(songs), "icon": "mdi:music"},
        )
    ]

"""Home Assistant MQTT discovery: Billy's topics, and one device with its entities."""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass
from typing import Any

from core.config import ROOT, MqttSettings
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

    @classmethod
    def under(cls, prefix: str) -> Topics:
        return cls(*(f"{prefix}/{f.name}" for f in dataclasses.fields(cls)))


def package_version() -> str:
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

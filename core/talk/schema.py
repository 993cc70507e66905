"""The small subset of JSON Schema Billy's tools use: how a tool is described, and how its arguments are checked."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from core.interfaces import ToolSchema

_TYPES: Mapping[str, Callable[[Any], bool]] = {
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "null": lambda v: v is None,
}


def validate(schema: Mapping[str, Any], value: Any, where: str = "arguments") -> list[str]:
    """Problems with `value` against `schema` (type, enum, minimum/maximum, properties, required, items)."""
    problems: list[str] = []
    kinds = schema.get("type")
    if kinds is not None:
        kinds = [kinds] if isinstance(kinds, str) else list(kinds)
        if not any(_TYPES[k](value) for k in kinds):
            return [f"{where} must be {' or '.join(kinds)}, not {type(value).__name__} {value!r}"]
    if "enum" in schema and value not in schema["enum"]:
        choices = ", ".join(repr(c) for c in schema["enum"])
        problems.append(f"{where} must be one of {choices}, not {value!r}")
    if isinstance(value, int | float) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            problems.append(f"{where} must be at least {schema['minimum']}, not {value}")
        if "maximum" in schema and value > schema["maximum"]:
            problems.append(f"{where} must be at most {schema['maximum']}, not {value}")
    if isinstance(value, dict):
        for key in schema.get("required", []):
            if key not in value:
                problems.append(f"{where} lacks the required {key!r}")
        properties = schema.get("properties", {})
        for key, item in value.items():
            if key in properties:
                problems += validate(properties[key], item, f"{key!r}")
            elif schema.get("additionalProperties") is False:
                problems.append(f"{key!r} is not an argument of this tool; use {', '.join(properties) or 'none'}")
    if isinstance(value, list) and "items" in schema:
        for index, item in enumerate(value):
            problems += validate(schema["items"], item, f"{where}[{index}]")
    return problems


# --- names and shapes ---------------------------------------------------------------------


def function(name: str, description: str, parameters: dict[str, Any]) -> ToolSchema:
    return {"type": "function", "function": {"name": name, "description": description, "parameters": parameters}}

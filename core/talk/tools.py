"""The tools Billy's brain may call: change his personality, sing, run a smart-home command, end the chat.

Small local models call tools sloppily (wrong names, numbers as words, arguments nested one
level too deep, JSON with single quotes), so every call is first coerced leniently, then
checked against its JSON schema. Whatever goes wrong comes back to the model as a result
sentence it can act on; `call()` never raises, so a bad call never breaks a turn.
"""

from __future__ import annotations

import difflib
import logging
import random
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from core.body.songs import match_title
from core.brains.arguments import parse_arguments
from core.errors import BackendError, PersonaError
from core.home.homeassistant import HomeAssistantClient
from core.interfaces import ToolCall, ToolOutcome, ToolSchema
from core.persona.store import PersonaStore
from core.persona.traits import TRAITS, canonical_trait, coerce_trait_value, level
from core.talk.schema import function, validate

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ResolvedCall:
    """A call after lenient coercion and schema checks: a known tool name and valid arguments."""

    name: str
    arguments: dict[str, Any]


# --- names and shapes ---------------------------------------------------------------------

_TOOL_ALIASES: Mapping[str, str] = {
    "set_personality": "update_personality", "change_personality": "update_personality",
    "update_persona": "update_personality", "update_traits": "update_personality",
    "set_traits": "update_personality", "personality": "update_personality",
    "update_personality_traits": "update_personality", "adjust_personality": "update_personality",
    "sing": "play_song", "sing_song": "play_song", "play_music": "play_song", "play": "play_song",
    "song": "play_song", "sing_a_song": "play_song",
    "smart_home": "smart_home_command", "home_assistant": "smart_home_command",
    "homeassistant": "smart_home_command", "ha_command": "smart_home_command",
    "control_device": "smart_home_command", "home_command": "smart_home_command",
    "smarthome_command": "smart_home_command", "smart_home_control": "smart_home_command",
    "end": "end_conversation", "goodbye": "end_conversation", "end_session": "end_conversation",
    "stop_conversation": "end_conversation", "end_chat": "end_conversation", "hang_up": "end_conversation",
    "close_conversation": "end_conversation", "finish_conversation": "end_conversation",
}  # fmt: skip
_WRAPPER_KEYS = ("arguments", "parameters", "args", "input", "params", "properties", "kwargs")
_RANDOM_SONG = {"", "any", "random", "anything", "a song", "song", "surprise me", "whatever", "any song"}


def normalize_tool_name(name: str) -> str:
    """`playSong`, `Play-Song`, `functions.play_song` → `play_song`."""
    text = str(name).strip().split(".")[-1]
    text = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", text)
    return re.sub(r"[\s\-]+", "_", text).strip("_").lower()


def _unwrap(args: dict[str, Any]) -> dict[str, Any]:
    """{"arguments": {...}} (one level too deep) → {...}."""
    while len(args) == 1:
        ((key, value),) = args.items()
        if key in _WRAPPER_KEYS and isinstance(value, dict):
            args = value
        elif isinstance(value, str) and key in _WRAPPER_KEYS and (parsed := parse_arguments(value)) is not None:
            args = parsed
        else:
            break
    return args


class ToolError(Exception):
    """A call that cannot be carried out; the message goes back to the model."""


@dataclass(frozen=True)
class _Tool:
    schema: ToolSchema
    coerce: Callable[[dict[str, Any]], dict[str, Any]]
    handler: Callable[[dict[str, Any]], Awaitable[ToolOutcome]]


class ToolRegistry:
    """The tools offered to the model, each a schema plus a handler.

    `song_titles` is called on each use, so songs added while Billy runs show up;
    `home_assistant` None (or not configured) leaves `smart_home_command` out.
    """

    def __init__(
        self,
        personas: PersonaStore,
        song_titles: Callable[[], list[str]],
        home_assistant: HomeAssistantClient | None,
    ):
        self.personas = personas
        self._song_titles = song_titles
        self.home_assistant = home_assistant if home_assistant is not None and home_assistant.enabled else None

    # --- what the model sees ------------------------------------------------------------

    def _tools(self) -> dict[str, _Tool]:
        tools = {
            "update_personality": _Tool(self._personality_schema(), self._coerce_traits, self._update_personality),
            "play_song": _Tool(self._song_schema(), self._coerce_song, self._play_song),
        }
        if self.home_assistant is not None:
            tools["smart_home_command"] = _Tool(_HOME_SCHEMA, self._coerce_home, self._smart_home)
        tools["end_conversation"] = _Tool(_END_SCHEMA, lambda args: {}, self._end_conversation)
        return tools

    def names(self) -> list[str]:
        return list(self._tools())

    def schemas(self) -> list[ToolSchema]:
        """Every tool in OpenAI function form, in a fixed order (the prompt cache depends on it)."""
        return [tool.schema for tool in self._tools().values()]

    def titles(self) -> list[str]:
        return sorted(dict.fromkeys(t for t in self._song_titles() if t.strip()), key=str.lower)

    def _personality_schema(self) -> ToolSchema:
        properties = {
            trait: {"type": "integer", "minimum": 0, "maximum": 100, "description": f"New {trait}, 0 to 100."}
            for trait in TRAITS
        }
        return function(
            "update_personality",
            "Change Billy's personality traits when the user asks him to behave differently. "
            "Send only the traits to change, each 0 to 100 (min <15, low <35, med <65, high <85, max).",
            {"type": "object", "properties": properties, "required": []},
        )

    def _song_schema(self) -> ToolSchema:
        titles = self.titles()
        song: dict[str, Any] = {"type": "string", "description": "Title of the song to play."}
        if titles:
            song["enum"] = titles
            listing = "Installed songs: " + ", ".join(titles) + "."
        else:
            listing = "No songs are installed."
        return function(
            "play_song",
            f"Sing one of Billy's installed songs when the user asks for a song. {listing}",
            {"type": "object", "properties": {"song": song}, "required": ["song"]},
        )

    # --- calling ------------------------------------------------------------------------

    def resolve(self, call: ToolCall) -> ResolvedCall | str:
        """The call made valid (name and arguments coerced and checked), or the error for the model.

        Has no side effects: the tool evaluation uses it to score calls without running them.
        """
        tools = self._tools()
        name = normalize_tool_name(call.name)
        name = name if name in tools else _TOOL_ALIASES.get(name, name)
        if name not in tools:
            close = difflib.get_close_matches(name, list(tools), n=1, cutoff=0.75)
            if not close:
                return f"Error: there is no tool called {call.name!r}. The tools are: {', '.join(tools)}."
            name = close[0]
        tool = tools[name]
        args: Any = call.arguments
        if isinstance(args, str):
            parsed = parse_arguments(args)
            if parsed is None:
                example = _example(name)
                return (
                    f"Error: the arguments for {name} were not valid JSON ({args[:80]!r}). "
                    f"Send a JSON object such as {example}."
                )
            args = parsed
        if args is None:
            args = {}
        if not isinstance(args, dict):
            return f"Error: the arguments for {name} must be a JSON object, not {type(args).__name__}."
        try:
            coerced = tool.coerce(_unwrap(args))
        except ToolError as exc:
            return f"Error in {name}: {exc}"
        problems = validate(tool.schema["function"]["parameters"], coerced)
        if problems:
            return f"Error in {name}: " + "; ".join(problems) + "."
        return ResolvedCall(name, coerced)

    async def call(self, call: ToolCall) -> ToolOutcome:
        """Run one tool call; every failure is returned as an error result, never raised."""
        resolved = self.resolve(call)
        if isinstance(resolved, str):
            log.info("Tool call %s(%r) rejected: %s", call.name, call.arguments, resolved)
            return ToolOutcome(resolved, error=True)
        try:
            outcome = await self._tools()[resolved.name].handler(resolved.arguments)
        except ToolError as exc:
            outcome = ToolOutcome(f"Error in {resolved.name}: {exc}", error=True)
        except Exception as exc:
            log.exception("Tool %s failed", resolved.name)
            outcome = ToolOutcome(f"Error: {resolved.name} failed unexpectedly ({type(exc).__name__}).", error=True)
        log.info("Tool %s(%s) → %s", resolved.name, resolved.arguments, outcome.result)
        return outcome

    # --- update_personality -------------------------------------------------------------

    def _coerce_traits(self, args: dict[str, Any]) -> dict[str, Any]:
        flat = _flatten_traits(args)
        current = self.personas.current().traits
        values: dict[str, int] = {}
        unknown = []
        for key, value in flat.items():
            trait = canonical_trait(key)
            if trait is None:
                unknown.append(key)
                continue
            try:
                values[trait] = coerce_trait_value(value, current[trait])
            except ValueError as exc:
                raise ToolError(f"{trait}: {exc}.") from exc
        if not values:
            hint = f" ({', '.join(map(repr, unknown))} are not traits)" if unknown else ""
            raise ToolError(f"no trait to change{hint}; send one or more of {', '.join(TRAITS)}, each 0 to 100.")
        if unknown:
            log.info("update_personality: ignored unknown traits %s", unknown)
        return values

    async def _update_personality(self, args: dict[str, Any]) -> ToolOutcome:
        before = self.personas.current().traits
        try:
            applied = self.personas.update_traits(args)
        except PersonaError as exc:
            raise ToolError(str(exc)) from exc
        changes = ", ".join(f"{t} {v} ({level(v)}, was {before[t]})" for t, v in applied.items())
        if not self.personas.allow_update_ini:
            kept = "Kept for this session only (ALLOW_UPDATE_PERSONALITY_INI is off)."
        elif self.personas.unsaved:
            kept = "It could not be saved, so it lasts until Billy restarts; say so."
        else:
            kept = "Saved to the persona file."
        return ToolOutcome(
            f"Personality updated: {changes}. {kept} Tell the user in character, in one short sentence, "
            "and behave that way from now on.",
            persona_changed=True,
        )

    # --- play_song ----------------------------------------------------------------------

    def _coerce_song(self, args: dict[str, Any]) -> dict[str, Any]:
        value = next((args[k] for k in ("song", "title", "name", "song_name", "track", "arg0") if k in args), "")
        if isinstance(value, list) and len(value) == 1:
            value = value[0]
        if isinstance(value, int | float) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str):
            return {"song": value}
        titles = self.titles()
        if not titles:
            raise ToolError("no songs are installed; tell the user to add songs under sounds/songs/.")
        if value.strip().lower() in _RANDOM_SONG:
            return {"song": random.choice(titles)}
        match = match_title(value, titles)
        if match is None:
            raise ToolError(f"there is no song called {value!r}; the installed songs are: {', '.join(titles)}.")
        return {"song": match}

    async def _play_song(self, args: dict[str, Any]) -> ToolOutcome:
        title = args["song"]
        return ToolOutcome(f"Now playing {title!r}. Introduce it in a few words, or say nothing.", song=title)

    # --- smart_home_command -------------------------------------------------------------

    def _coerce_home(self, args: dict[str, Any]) -> dict[str, Any]:
        keys = ("prompt", "command", "text", "query", "request", "instruction", "message", "arg0")
        value = next((args[k] for k in keys if k in args), None)
        if value is None and len(args) == 1:
            value = next(iter(args.values()))
        if value is None:
            raise ToolError('send the command as \'prompt\', for example {"prompt": "turn on the kitchen lights"}.')
        if isinstance(value, str) and not value.strip():
            raise ToolError("the prompt is empty; send the user's command in words.")
        return {"prompt": value.strip() if isinstance(value, str) else value}

    async def _smart_home(self, args: dict[str, Any]) -> ToolOutcome:
        if self.home_assistant is None:
            raise ToolError("Home Assistant is not set up: set HA_HOST and HA_TOKEN in .env.")
        try:
            answer = await self.home_assistant.ask(args["prompt"])
        except BackendError as exc:
            log.warning("smart_home_command failed: %s", exc)
            return ToolOutcome(
                "Home Assistant is not answering right now. Say so plainly and briefly, without details.", error=True
            )
        return ToolOutcome(f"Home Assistant says: {answer.speech}", error=answer.kind == "error")

    # --- end_conversation ---------------------------------------------------------------

    async def _end_conversation(self, args: dict[str, Any]) -> ToolOutcome:
        return ToolOutcome(
            "The conversation ends after this reply; Billy stops listening. Say a short goodbye.",
            end_conversation=True,
        )


def _flatten_traits(args: dict[str, Any]) -> dict[str, Any]:
    """Every shape a model sends traits in, as {trait: value}.

    {"humor": 90}, {"humor": {"value": 90}}, {"traits": {"humor": 90}},
    {"trait": "humor", "value": 90}, {"traits": [{"trait": "humor", "value": 90}]}.
    """
    flat: dict[str, Any] = {}
    name_key = next((k for k in ("trait", "name", "trait_name", "personality_trait") if k in args), None)
    if name_key and isinstance(args[name_key], str):
        value_key = next((k for k in ("value", "level", "amount", "new_value", "setting") if k in args), None)
        if value_key is not None:
            flat[args[name_key]] = args[value_key]
            return flat
    for key, value in args.items():
        if key in ("traits", "personality", "changes", "updates") and isinstance(value, dict):
            flat.update(_flatten_traits(value))
        elif key in ("traits", "personality", "changes", "updates") and isinstance(value, list):
            for item in value:
                if isinstance(item, dict):
                    flat.update(_flatten_traits(item))
        else:
            flat[key] = value
    return flat


def _example(name: str) -> str:
    return {
        "update_personality": '{"humor": 90}',
        "play_song": '{"song": "<title>"}',
        "smart_home_command": '{"prompt": "turn on the kitchen lights"}',
    }.get(name, "{}")


_HOME_SCHEMA = function(
    "smart_home_command",
    "Send a direct smart-home command or device question to Home Assistant, in the user's words "
    "(for example 'turn on the kitchen lights'). Not for asking whether to do something.",
    {
        "type": "object",
        "properties": {"prompt": {"type": "string", "description": "The command, in plain words."}},
        "required": ["prompt"],
    },
)
_END_SCHEMA = function(
    "end_conversation",
    "End the conversation when the user says goodbye or has nothing more to say; Billy stops listening "
    "after his reply. Without it, Billy listens for an answer after speaking.",
    {"type": "object", "properties": {}, "required": []},
)

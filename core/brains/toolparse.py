"""Tool calls that small models write as text, found in the reply stream and taken out of it.

Small local models often answer a tool request by *writing* the call into their reply
(`{"name": "play_song", "arguments": {...}}`, `<tool_call>…</tool_call>`, a ```json fence,
or `play_song(song="x")`) instead of using the API's tool-call field. Spoken aloud, that is
gibberish. `TextToolCallFilter` sits between the brain's text stream and TTS: it passes
ordinary text straight through, holds back only what might be the start of such a call
until it can tell, and turns real calls into `ToolCall`s.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from typing import Any

from core.brains.arguments import loads_lenient, parse_arguments, parse_call_arguments
from core.interfaces import ToolCall, ToolSchema

log = logging.getLogger(__name__)

DEFAULT_TOOLS = ("update_personality", "play_song", "smart_home_command", "end_conversation")
NO_ARGUMENT_TOOLS = ("end_conversation",)
DEFAULT_PARAMETERS: Mapping[str, tuple[str, ...]] = {"play_song": ("song",), "smart_home_command": ("prompt",)}
"""Where positional arguments go (`play_song("x")`) when the filter knows tools only by name."""
"""Tools that take no arguments, so their bare name written as a word is a call."""

MAX_HOLD_CHARS = 4000
"""A candidate call still open after this many characters is given up and spoken as text."""

_TAGS: Mapping[str, str] = {
    "<tool_call>": "</tool_call>",
    "<toolcall>": "</toolcall>",
    "<function_call>": "</function_call>",
    "<tools>": "</tools>",
    "<|tool_call|>": "<|/tool_call|>",
}
_MARKERS = ("<|python_tag|>", "[TOOL_CALLS]", "<|tool_calls_section_begin|>")
_NAMESPACE = re.compile(r"(?:^|\W)functions\.$")
"""`functions.play_song(...)`: some models prefix calls with the OpenAI namespace."""
_FUNCTION_TAG = re.compile(r"<function=([A-Za-z_][\w.-]*)>")
_ARG_KEYS = ("arguments", "parameters", "args", "input", "params", "kwargs")
_NAME_KEYS = ("name", "tool", "function", "tool_name", "function_name", "action")


# --- recognising the shapes of a written call ---------------------------------------------


def _arguments_of(value: Any) -> dict[str, Any] | str:
    if isinstance(value, dict):
        return value
    if isinstance(value, str):
        parsed = parse_arguments(value)
        return parsed if parsed is not None else value
    return {} if value is None else str(value)


def to_tool_calls(obj: Any, known: Iterable[str] = DEFAULT_TOOLS) -> list[ToolCall]:
    """The calls in a parsed object of any shape models write; [] when it is not a call.

    Shapes: {"name", "arguments"} (or parameters/args/input), {"function": {...}},
    {"type": "function", ...}, {"tool_calls": [...]}, {"<tool>": {...args}}, a list of those,
    and {"name": "<tool>", ...args inline}.
    """
    known = set(known)
    if isinstance(obj, list):
        calls = []
        for item in obj:
            calls += to_tool_calls(item, known)
        return calls
    if not isinstance(obj, dict):
        return []
    if "tool_calls" in obj and isinstance(obj["tool_calls"], list):
        return to_tool_calls(obj["tool_calls"], known)
    if isinstance(obj.get("function"), dict):
        return to_tool_calls(obj["function"], known)
    name = next((obj[k] for k in _NAME_KEYS if isinstance(obj.get(k), str)), None)
    if name is not None:
        name = name.strip()
        arg_key = next((k for k in _ARG_KEYS if k in obj), None)
        if arg_key is not None:
            return [ToolCall(name=name, arguments=_arguments_of(obj[arg_key]), id=str(obj.get("id", "")))]
        if name in known:
            rest = {k: v for k, v in obj.items() if k not in (*_NAME_KEYS, "type", "id")}
            return [ToolCall(name=name, arguments=rest)]
        return []
    if len(obj) == 1:
        ((name, args),) = obj.items()
        if name in known and (isinstance(args, dict) or args is None):
            return [ToolCall(name=name, arguments=args or {})]
    return []


# --- the streaming filter -----------------------------------------------------------------


def _matching(text: str, start: int, opener: str, closer: str) -> int | None:
    """Index just past the bracket closing the one at `start`, skipping strings; None if not yet closed."""
    depth, i = 0, start
    while i < len(text):
        ch = text[i]
        if ch in "\"'":
            j = i + 1
            while j < len(text) and text[j] != ch:
                j += 2 if text[j] == "\\" else 1
            if j >= len(text):
                return None
            i = j + 1
            continue
        if ch == opener:
            depth += 1
        elif ch == closer:
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    return None


_WAIT = object()


class TextToolCallFilter:
    """Splits a streamed reply into speakable text and the tool calls written into it.

    `feed()` each text delta as it arrives and speak what it returns; call `flush()` at the
    end of the reply. Text is held back only from a character that could open a call (`{`,
    `<`, a backtick, `[`, or the start of a tool's name) until the call is complete or clearly
    is not one, so ordinary sentences pass through with no delay.
    """

    def __init__(self, tools: Iterable[ToolSchema | str] = DEFAULT_TOOLS):
        self._params: dict[str, list[str]] = {}
        self._no_args: set[str] = set()
        for tool in tools:
            if isinstance(tool, str):
                self._params[tool] = list(DEFAULT_PARAMETERS.get(tool, ()))
                if tool in NO_ARGUMENT_TOOLS:
                    self._no_args.add(tool)
            else:
                function = tool.get("function", tool)
                self._params[function["name"]] = list(function.get("parameters", {}).get("properties", {}))
                if not self._params[function["name"]]:
                    self._no_args.add(function["name"])
        self._buffer = ""

    @property
    def holding(self) -> bool:
        """True while text is held back waiting to see whether it is a call."""
        return bool(self._buffer)

    def feed(self, delta: str) -> tuple[str, list[ToolCall]]:
        self._buffer += delta
        return self._drain(final=False)

    def flush(self) -> tuple[str, list[ToolCall]]:
        text, calls = self._drain(final=True)
        self._buffer = ""
        return text, calls

    def _drain(self, final: bool) -> tuple[str, list[ToolCall]]:
        buf, out, calls, i = self._buffer, [], [], 0
        plain_from = 0
        while i < len(buf):
            if not self._may_start(buf, i):
                i += 1
                continue
            decision = self._decide(buf, i, final)
            if decision is _WAIT:
                if len(buf) - i > MAX_HOLD_CHARS:
                    i += 1
                    continue
                out.append(buf[plain_from:i])
                self._buffer = buf[i:]
                return "".join(out), calls
            end, found, spoken = decision
            if found is None:
                i = end if end > i else i + 1
                continue
            out.append(buf[plain_from:i])
            out.append(spoken)
            calls += found
            plain_from = i = end
        out.append(buf[plain_from:])
        self._buffer = ""
        return "".join(out), calls

    def _may_start(self, buf: str, i: int) -> bool:
        ch = buf[i]
        if ch in "{<`[":
            return True
        if not (ch.isascii() and (ch.isalpha() or ch == "_")):  # tool names are ASCII identifiers
            return False
        return i == 0 or not (buf[i - 1].isalnum() or buf[i - 1] in "_.") or bool(_NAMESPACE.search(buf, 0, i))

    def _decide(self, buf: str, i: int, final: bool):
        """_WAIT, or (end, calls or None, text to speak in place of buf[i:end])."""
        ch = buf[i]
        if ch == "{":
            return self._decide_json(buf, i, final, "{", "}")
        if ch == "[":
            return self._decide_bracket(buf, i, final)
        if ch == "<":
            return self._decide_tag(buf, i, final)
        if ch == "`":
            return self._decide_fence(buf, i, final)
        return self._decide_function(buf, i, final)

    def _parsed(self, text: str) -> list[ToolCall]:
        return to_tool_calls(loads_lenient(text), self._params)

    def _decide_json(self, buf: str, i: int, final: bool, opener: str, closer: str):
        rest = buf[i + 1 :].lstrip()
        if not rest:
            return (len(buf), None, "") if final else _WAIT
        if opener == "{" and rest[0] not in "\"'}":
            return (i + 1, None, "")
        end = _matching(buf, i, opener, closer)
        if end is None:
            if not final:
                return _WAIT
            calls = self._parsed(buf[i:])
            return (len(buf), calls, "") if calls else (i + 1, None, "")
        calls = self._parsed(buf[i:end])
        return (end, calls, "") if calls else (i + 1, None, "")

    def _decide_bracket(self, buf: str, i: int, final: bool):
        for marker in _MARKERS:
            if marker.startswith("["):
                if buf.startswith(marker, i):
                    return (i + len(marker), [], "")
                if marker.startswith(buf[i:]):
                    return (len(buf), None, "") if final else _WAIT
        rest = buf[i + 1 :].lstrip()
        if not rest:
            return (len(buf), None, "") if final else _WAIT
        if rest[0] != "{":
            return (i + 1, None, "")
        return self._decide_json(buf, i, final, "[", "]")

    def _decide_tag(self, buf: str, i: int, final: bool):
        tail = buf[i:]
        for marker in _MARKERS:
            if marker.startswith("<") and tail.startswith(marker):
                return (i + len(marker), [], "")
        for opener, closer in _TAGS.items():
            if tail.startswith(opener):
                close_at = buf.find(closer, i + len(opener))
                if close_at < 0:
                    if not final:
                        return _WAIT
                    return (len(buf), self._parsed(buf[i + len(opener) :]), "")
                inner = buf[i + len(opener) : close_at]
                calls = self._parsed(inner) or self._function_calls(inner.strip())
                if not calls:
                    log.warning("Dropped unreadable tool call text from the reply: %r", inner[:200])
                return (close_at + len(closer), calls, "")
        function_tag = _FUNCTION_TAG.match(tail)
        if function_tag:
            close_at = buf.find("</function>", i)
            if close_at < 0 and not final:
                return _WAIT
            body_end = close_at if close_at >= 0 else len(buf)
            args = parse_arguments(buf[i + function_tag.end() : body_end])
            end = close_at + len("</function>") if close_at >= 0 else len(buf)
            return (end, [ToolCall(name=function_tag.group(1), arguments=args or {})], "")
        if any(o.startswith(tail) for o in (*_TAGS, *_MARKERS, "<function=")) or (
            tail.startswith("<function=") and ">" not in tail
        ):
            return (len(buf), None, "") if final else _WAIT
        return (i + 1, None, "")

    def _decide_fence(self, buf: str, i: int, final: bool):
        tail = buf[i:]
        if len(tail) < 3 and "```".startswith(tail):
            return (len(buf), None, "") if final else _WAIT
        if not tail.startswith("```"):
            return (i + 1, None, "")
        close_at = buf.find("```", i + 3)
        if close_at < 0 and not final:
            return _WAIT
        body_end = close_at if close_at >= 0 else len(buf)
        end = close_at + 3 if close_at >= 0 else len(buf)
        inner = re.sub(r"^[\w-]*[ \t]*\n?", "", buf[i + 3 : body_end], count=1)
        calls = self._parsed(inner) or self._function_calls(inner.strip())
        return (end, calls, "" if calls else inner.strip())

    def _decide_function(self, buf: str, i: int, final: bool):
        match = re.match(r"[A-Za-z_]\w*", buf[i:])
        word = match.group(0)
        end = i + len(word)
        if word == "functions" and buf[end : end + 1] == ".":
            name = re.match(r"\w*", buf[end + 1 :]).group(0)
            if end + 1 + len(name) == len(buf) and not final and any(n.startswith(name) for n in self._params):
                return _WAIT
            return (end + 1, [], "") if name in self._params else (end, None, "")
        if end == len(buf):
            if not final and any(name.startswith(word) for name in (*self._params, "functions")):
                return _WAIT
            return (end, [ToolCall(name=word, arguments={})] if word in self._no_args else None, "")
        if word not in self._params:
            return (end, None, "")
        after = buf[end:]
        stripped = after.lstrip()
        if not stripped:
            if final:
                return (len(buf), [ToolCall(name=word, arguments={})] if word in self._no_args else None, "")
            return _WAIT
        if stripped[0] != "(":
            return (end, [ToolCall(name=word, arguments={})] if word in self._no_args else None, "")
        open_at = end + len(after) - len(stripped)
        close = _matching(buf, open_at, "(", ")")
        if close is None:
            if not final:
                return _WAIT
            inner, close = buf[open_at + 1 :], len(buf)
        else:
            inner = buf[open_at + 1 : close - 1]
        args = parse_call_arguments(inner, self._params[word])
        if args is None:
            args = parse_arguments(inner) or {}
        return (close, [ToolCall(name=word, arguments=args)], "")

    def _function_calls(self, text: str) -> list[ToolCall]:
        match = re.fullmatch(r"([A-Za-z_]\w*)\s*\((.*)\)\s*;?", text, re.S)
        if not match or match.group(1) not in self._params:
            return []
        args = parse_call_arguments(match.group(2), self._params[match.group(1)])
        return [ToolCall(name=match.group(1), arguments=args if args is not None else {})]

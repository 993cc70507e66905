"""Lenient parsing of tool arguments: the JSON (or Python) that small models write, read anyway."""

from __future__ import annotations

import ast
import json
import re
from typing import Any


def _scan_strings(text: str) -> list[tuple[int, int]]:
    """Spans (start, end) of quoted strings in `text`, honouring backslash escapes."""
    spans, i = [], 0
    while i < len(text):
        quote = text[i]
        if quote in "\"'":
            j = i + 1
            while j < len(text) and text[j] != quote:
                j += 2 if text[j] == "\\" else 1
            spans.append((i, min(j + 1, len(text))))
            i = j + 1
        else:
            i += 1
    return spans


def _outside_strings(text: str, func) -> str:
    """Apply `func` to the parts of `text` that are not inside quoted strings."""
    out, last = [], 0
    for start, end in _scan_strings(text):
        out += [func(text[last:start]), text[start:end]]
        last = end
    out.append(func(text[last:]))
    return "".join(out)


def _close_brackets(text: str) -> str:
    """Append the quote and closers an unfinished JSON text lacks (a model cut off mid-call)."""
    stack: list[str] = []
    quote, i = "", 0
    while i < len(text):
        ch = text[i]
        if quote:
            if ch == "\\":
                i += 1
            elif ch == quote:
                quote = ""
        elif ch in "\"'":
            quote = ch
        elif ch in "{[":
            stack.append("}" if ch == "{" else "]")
        elif ch in "}]" and stack:
            stack.pop()
        i += 1
    return text + quote + "".join(reversed(stack))


_JSON_WORDS = {"true": "True", "false": "False", "null": "None"}


def _pythonic(text: str) -> str:
    """JSON's true/false/null as Python's, outside strings, so `ast.literal_eval` can read mixed text."""
    return _outside_strings(text, lambda s: re.sub(r"\b(true|false|null)\b", lambda m: _JSON_WORDS[m[1]], s))


def loads_lenient(raw: str) -> Any:
    """json → JSON without trailing commas → Python literal (single quotes, True/None) → with closers added."""
    text = raw.strip()
    fence = re.fullmatch(r"```[\w-]*\s*(.*?)\s*(```)?", text, re.S)
    if fence:
        text = fence.group(1)
    candidates = [text, _close_brackets(text)]
    for candidate in candidates:
        try:
            return json.loads(candidate)
        except ValueError:
            pass
        no_trailing = _outside_strings(candidate, lambda s: re.sub(r",(\s*[}\]])", r"\1", s))
        try:
            return json.loads(no_trailing)
        except ValueError:
            pass
        try:
            return ast.literal_eval(_pythonic(candidate))
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            pass
    return parse_call_arguments(text)


def parse_call_arguments(text: str, params: list[str] | None = None) -> dict[str, Any] | None:
    """`song="x", humor=90` (Python call arguments) as a dict; positionals map onto `params`."""
    try:
        node = ast.parse(f"f({_pythonic(text)})", mode="eval").body
    except (SyntaxError, ValueError, RecursionError):
        return None
    if not isinstance(node, ast.Call):
        return None
    result: dict[str, Any] = {}
    try:
        if len(node.args) == 1 and not node.keywords and isinstance(node.args[0], ast.Dict):
            value = ast.literal_eval(node.args[0])
            return value if isinstance(value, dict) else None
        for index, arg in enumerate(node.args):
            key = params[index] if params and index < len(params) else f"arg{index}"
            result[key] = ast.literal_eval(arg)
        for keyword in node.keywords:
            if keyword.arg is None:
                value = ast.literal_eval(keyword.value)
                if not isinstance(value, dict):
                    return None
                result.update(value)
            else:
                result[keyword.arg] = ast.literal_eval(keyword.value)
    except (ValueError, SyntaxError, TypeError):
        return None
    return result


def parse_arguments(raw: str) -> dict[str, Any] | None:
    """Tool arguments as a dict, from JSON a model may have mangled; None when it is not one.

    Accepts single quotes, trailing commas, Python literals (True/None), a missing closing
    brace, a ```json fence, JSON encoded twice, `key=value` call syntax, and an empty string (no arguments).
    """
    if raw is None:
        return None
    if not str(raw).strip():
        return {}
    value = loads_lenient(str(raw))
    if isinstance(value, str) and value.strip()[:1] in "{[":
        value = loads_lenient(value)
    return value if isinstance(value, dict) else None


# --- recognising the shapes of a written call ---------------------------------------------

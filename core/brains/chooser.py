"""The embedded brain's choose step: a constant few-shot prompt that maps a message to a tool or `none`."""

from __future__ import annotations

import json
from typing import Any

from core.brains.chatml import chatml
from core.interfaces import ToolSchema

NONE = "none"
"""The choice that means "no tool, just talk"."""


EXAMPLES: dict[str, list[tuple[str, dict[str, Any]]]] = {
    "play_song": [("sing me something", {}), ("play a tune", {}), ("I want to hear some music", {})],
    "smart_home_command": [
        ("turn off the living room lights", {"prompt": "turn off the living room lights"}),
        ("set the heating to twenty degrees", {"prompt": "set the heating to twenty degrees"}),
        ("open the garage door", {"prompt": "open the garage door"}),
        ("switch on the fan", {"prompt": "switch on the fan"}),
    ],
    "update_personality": [
        ("be funnier", {"humor": 80}),
        ("could you be less sarcastic", {"sarcasm": 20}),
        ("make yourself more polite", {"respectfulness": 85}),
        ("stop being so serious", {"humor": 75}),
    ],
    "end_conversation": [
        ("bye", {}),
        ("thanks, that's all", {}),
        ("see you later Billy", {}),
        ("ok stop, I'm finished", {}),
    ],
    NONE: [
        ("what time is it in Tokyo", {}),
        ("tell me about fish", {}),
        ("do you like music?", {}),
        ("is it a good idea to open the window?", {}),
        ("hello Billy", {}),
        ("why is the sky blue", {}),
    ],
}
"""Few-shot (message, arguments) per known tool (DESIGN §5.3); a tool without examples uses its description.

Arguments that do not fit the offered schema are left out of the prompt; `play_song` examples
are completed with the installed titles from the schema's enum.
"""


def chooser_prompt(tools: list[ToolSchema], describe: bool = True) -> str:
    """The constant few-shot prompt of the choose step, ending where a message is filled in.

    Each shot is `Message: ...` / `Action: <name>` and, for a tool, `Arguments: {json}`.
    """
    lines = ["Pick the action for each message.", "Actions:"]
    shots: list[tuple[str, str, dict[str, Any] | None]] = []
    for tool in tools:
        function = tool.get("function") or {}
        name, description = str(function.get("name") or ""), str(function.get("description") or "")
        parameters = function.get("parameters") or {}
        lines.append(f"- {name}: {description}" if describe else f"- {name}")
        examples = EXAMPLES.get(name) or [(description.split(". ")[0].lower(), {})]
        if name == "play_song":
            examples = _song_examples(parameters, examples)
        shots += [(text, name, args if _fits(args, parameters) else None) for text, args in examples]
    lines.append(f"- {NONE}: anything else, questions and chat.")
    shots += [(text, NONE, None) for text, _ in EXAMPLES[NONE]]
    shots.sort(key=lambda shot: (hash_text(shot[0]), shot[0]))  # mixed, but the same order on every run
    body = "\n\n".join(
        f"Message: {text}\nAction: {name}" + ("" if args is None else f"\nArguments: {json.dumps(args)}")
        for text, name, args in shots
    )
    return chatml("system", "\n".join(lines)) + "<|im_start|>user\n" + body + "\n\n"


def _song_examples(parameters: dict[str, Any], examples: list[tuple[str, dict[str, Any]]]) -> list:
    """`play_song` shots naming the installed titles, so the model learns to pick one of them."""
    titles = ((parameters.get("properties") or {}).get("song") or {}).get("enum") or []
    if not titles:
        return examples
    shots = [(text, {"song": titles[i % len(titles)]}) for i, (text, _) in enumerate(examples)]
    return shots + [(f"sing {title.lower()}", {"song": title}) for title in titles[:3]]


def _fits(args: dict[str, Any], parameters: dict[str, Any]) -> bool:
    """True when an example's arguments use only the schema's properties, with allowed enum values."""
    properties = parameters.get("properties") or {}
    for key, value in args.items():
        if key not in properties or ("enum" in properties[key] and value not in properties[key]["enum"]):
            return False
    return all(key in args for key in parameters.get("required") or [])


def hash_text(text: str) -> int:
    """A stable small hash (Python's `hash` changes per process, which would change the prompt)."""
    return sum((i + 1) * ord(c) for i, c in enumerate(text)) % 97

"""ChatML prompts for the embedded model, split where its cached prefix ends."""

from __future__ import annotations

from core.interfaces import Message


def chatml(role: str, content: str) -> str:
    return f"<|im_start|>{role}\n{content}<|im_end|>\n"


def render_prompt(messages: list[Message]) -> tuple[str, str]:
    """(constant prefix, rest) of a ChatML prompt that ends where the assistant starts speaking.

    The prefix is the system message alone, so it is identical on every turn and stays cached.
    Tool results become system notes: a 135M model knows no `tool` role.
    """
    system = ""
    rest: list[str] = []
    for message in messages:
        role, content = message.get("role"), str(message.get("content") or "")
        if role == "system" and not system and not rest:
            system = content
        elif role == "tool":
            name = message.get("tool_name") or message.get("name") or "the tool"
            rest.append(chatml("system", f"Result of {name}: {content}"))
        elif role in ("user", "assistant", "system") and content:
            rest.append(chatml(role, content))
    return chatml("system", system), "".join(rest) + "<|im_start|>assistant\n"

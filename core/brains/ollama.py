"""The local brain: an Ollama server (on this machine or another on the LAN) via the `ollama` client.

Every request asks Ollama to keep the model loaded (`keep_alive`) with the same options, so
the model and the prompt cache of the long, constant system prompt survive between turns;
a different `num_ctx` would make Ollama reload the model.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import ollama
from pydantic import ValidationError

from core.errors import BackendError
from core.interfaces import BrainDone, BrainEvent, Message, TextDelta, ToolCall, ToolSchema

log = logging.getLogger(__name__)

HEALTH_TIMEOUT_S = 1.5
"""Longest wait (seconds) for `/api/tags` in `healthy()`: a health check must never slow a turn."""
LOAD_TIMEOUT_S = 180.0
"""Longest wait (seconds) in `warm()`, which may have to load the model from disk (slow on a Pi)."""


class OllamaBrain:
    """Streams chat steps from Ollama; every failure becomes a `BackendError` with one plain sentence."""

    name = "ollama"

    @property
    def last_used(self) -> str:
        """A single backend always answers itself."""
        return self.name

    def __init__(self, host: str, model: str, keep_alive: str = "24h", timeout_s: float = 20.0, num_ctx: int = 0):
        self.host = host.rstrip("/")
        self.model = model
        self.keep_alive = keep_alive
        self.timeout_s = timeout_s
        self.options: dict[str, Any] = {"num_ctx": num_ctx} if num_ctx else {}
        self._clients: dict[float, tuple[asyncio.AbstractEventLoop, ollama.AsyncClient]] = {}

    def _client(self, timeout_s: float) -> ollama.AsyncClient:
        """One client per event loop and timeout: an httpx pool must not outlive the loop it was made on."""
        loop = asyncio.get_running_loop()
        cached = self._clients.get(timeout_s)
        if cached is None or cached[0] is not loop:
            timeout = httpx.Timeout(timeout_s, connect=min(timeout_s, 5.0))
            cached = (loop, ollama.AsyncClient(host=self.host, timeout=timeout))
            self._clients[timeout_s] = cached
        return cached[1]

    async def chat(self, messages: list[Message], tools: list[ToolSchema]) -> AsyncIterator[BrainEvent]:
        """Stream one assistant step as TextDelta / ToolCall events, then one BrainDone."""
        try:
            stream = await self._client(self.timeout_s).chat(
                self.model,
                messages=[_for_ollama(m) for m in messages],
                tools=tools or None,
                stream=True,
                keep_alive=self.keep_alive,
                options=self.options or None,
            )
        except Exception as exc:
            raise self._error(exc) from exc
        done = False
        try:
            while not done:
                try:
                    part = await anext(stream)
                except StopAsyncIteration:
                    break
                except Exception as exc:
                    raise self._error(exc) from exc
                message = part.message
                if message.content:
                    yield TextDelta(message.content)
                for call in message.tool_calls or []:
                    arguments = dict(call.function.arguments)
                    yield ToolCall(call.function.name, arguments, id=f"call_{uuid.uuid4().hex[:12]}")
                if part.done:
                    done = True
                    yield BrainDone(part.prompt_eval_count or 0, part.eval_count or 0)
        finally:
            await stream.aclose()  # a consumer that stops early (barge-in) closes the HTTP stream now
        if not done:
            raise BackendError(f"Ollama at {self.host} ended its reply without finishing it; check the Ollama log.")

    async def warm(self, system_prompt: str, tools: list[ToolSchema]) -> None:
        """Load the model and have Ollama evaluate the system prompt and tools once (one token generated)."""
        try:
            await self._client(LOAD_TIMEOUT_S).chat(
                self.model,
                messages=[{"role": "system", "content": system_prompt}],
                tools=tools or None,
                stream=False,
                keep_alive=self.keep_alive,
                options={**self.options, "num_predict": 1},
            )
        except Exception as exc:
            raise self._error(exc) from exc
        log.info("Ollama model %s at %s is loaded and its prompt cache primed", self.model, self.host)

    async def healthy(self) -> bool:
        """True when Ollama answers `/api/tags` within HEALTH_TIMEOUT_S and lists the model."""
        try:
            listed = await self._client(HEALTH_TIMEOUT_S).list()
        except Exception as exc:
            log.debug("Ollama health check failed: %s", exc)
            return False
        wanted = _full_name(self.model)
        return any(_full_name(m.model or "") == wanted for m in listed.models)

    def _error(self, exc: BaseException) -> BackendError:
        """Turn whatever the client raised into one sentence that names the fix."""
        if isinstance(exc, ConnectionError | httpx.ConnectError | httpx.ConnectTimeout):
            return BackendError(
                f"Ollama is not answering at {self.host}: start it (`ollama serve`) or set LOCAL_LLM_HOST."
            )
        if isinstance(exc, ollama.ResponseError):
            if exc.status_code == 404 or "not found" in str(exc.error).lower():
                return BackendError(
                    f"Ollama has no model '{self.model}': run `ollama pull {self.model}` or set LOCAL_LLM_MODEL."
                )
            return BackendError(f"Ollama at {self.host} refused the request: {exc.error} (HTTP {exc.status_code}).")
        if isinstance(exc, httpx.TimeoutException):
            return BackendError(
                f"Ollama at {self.host} went silent for more than {self.timeout_s:g} s: "
                "check that the machine is not overloaded, or raise REQUEST_TIMEOUT_SECONDS."
            )
        if isinstance(exc, httpx.TransportError):
            return BackendError(f"Ollama at {self.host} dropped the connection mid-reply ({exc}); see its log.")
        if isinstance(exc, ValidationError | ValueError | KeyError | TypeError):
            return BackendError(f"Ollama at {self.host} answered something that is not a chat stream ({exc}).")
        return BackendError(f"Ollama at {self.host} failed: {exc}.")


def _full_name(model: str) -> str:
    return model if ":" in model else f"{model}:latest"


def _for_ollama(message: Message) -> Message:
    """Ollama wants tool-call arguments as objects and names tool results with `tool_name`."""
    out = dict(message)
    calls = out.get("tool_calls")
    if calls:
        fixed = []
        for call in calls:
            function = dict(call.get("function") or {})
            arguments = function.get("arguments")
            if isinstance(arguments, str):
                try:
                    parsed = json.loads(arguments or "{}")
                except json.JSONDecodeError:
                    parsed = {"raw": arguments}
                function["arguments"] = parsed if isinstance(parsed, dict) else {"value": parsed}
            fixed.append({"function": function})
        out["tool_calls"] = fixed
    if out.get("role") == "tool" and "tool_name" not in out and out.get("name"):
        out["tool_name"] = out["name"]
    return out

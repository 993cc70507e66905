"""The cloud brain: any OpenAI-compatible `/chat/completions` endpoint, streamed over SSE with httpx.

Tool calls arrive in pieces (the name first, the JSON arguments a few characters per chunk),
so they are assembled per `index` and emitted once the stream says it is finished.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx

from core.errors import BackendError
from core.interfaces import BrainDone, BrainEvent, Message, TextDelta, ToolCall, ToolSchema

log = logging.getLogger(__name__)

HEALTH_TIMEOUT_S = 1.5
"""Longest wait (seconds) for `GET /models` in `healthy()`."""


class OpenAIBrain:
    """Streams chat steps from an OpenAI-compatible service; failures become one-sentence `BackendError`s."""

    name = "openai"

    @property
    def last_used(self) -> str:
        """A single backend always answers itself."""
        return self.name

    def __init__(self, base_url: str, api_key: str, model: str, timeout_s: float = 20.0):
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.timeout_s = timeout_s
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._clients: dict[float, tuple[asyncio.AbstractEventLoop, httpx.AsyncClient]] = {}

    def _client(self, timeout_s: float) -> httpx.AsyncClient:
        """One client per event loop and timeout: an httpx pool must not outlive the loop it was made on."""
        loop = asyncio.get_running_loop()
        cached = self._clients.get(timeout_s)
        if cached is None or cached[0] is not loop:
            timeout = httpx.Timeout(timeout_s, connect=min(timeout_s, 5.0))
            cached = (loop, httpx.AsyncClient(base_url=self.base_url, headers=self._headers, timeout=timeout))
            self._clients[timeout_s] = cached
        return cached[1]

    async def chat(self, messages: list[Message], tools: list[ToolSchema]) -> AsyncIterator[BrainEvent]:
        """Stream one assistant step as TextDelta / ToolCall events, then one BrainDone."""
        body: dict[str, Any] = {
            "model": self.model,
            "messages": [_for_openai(m) for m in messages],
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if tools:
            body["tools"] = tools
        calls = _CallAssembler()
        usage: dict[str, Any] = {}
        finished = False
        try:
            async with self._client(self.timeout_s).stream("POST", "/chat/completions", json=body) as response:
                if response.status_code != 200:
                    await response.aread()
                    raise self._status_error(response)
                async for chunk in _sse_events(response):
                    if chunk is None:
                        finished = True
                        break
                    if chunk.get("error"):
                        raise BackendError(f"{self._who} stopped with an error: {_error_text(chunk)}.")
                    usage = chunk.get("usage") or usage
                    for choice in chunk.get("choices") or []:
                        delta = choice.get("delta") or {}
                        if delta.get("content"):
                            yield TextDelta(delta["content"])
                        calls.add(delta.get("tool_calls") or [])
                        if choice.get("finish_reason"):
                            finished = True
                            for call in calls.take():
                                yield call
        except BackendError:
            raise
        except httpx.ConnectError as exc:
            raise BackendError(f"{self._who} is not reachable: check OPENAI_BASE_URL and the network.") from exc
        except httpx.TimeoutException as exc:
            raise BackendError(
                f"{self._who} went silent for more than {self.timeout_s:g} s: "
                "try again, or raise REQUEST_TIMEOUT_SECONDS."
            ) from exc
        except httpx.TransportError as exc:
            raise BackendError(f"{self._who} dropped the connection mid-reply ({exc}).") from exc
        if not finished:
            raise BackendError(f"{self._who} ended its reply without finishing it.")
        for call in calls.take():
            yield call
        yield BrainDone(int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0))

    async def warm(self, system_prompt: str, tools: list[ToolSchema]) -> None:
        """Nothing to load: a cloud service caches long prompt prefixes by itself."""

    async def healthy(self) -> bool:
        """True when `GET /models` answers 200 within HEALTH_TIMEOUT_S (it costs no tokens)."""
        try:
            response = await self._client(HEALTH_TIMEOUT_S).get("/models")
        except httpx.HTTPError as exc:
            log.debug("%s health check failed: %s", self._who, exc)
            return False
        return response.status_code == 200

    @property
    def _who(self) -> str:
        return f"The OpenAI-compatible service at {self.base_url}"

    def _status_error(self, response: httpx.Response) -> BackendError:
        status = response.status_code
        detail = _error_text(_json_or_none(response.content) or {}) or response.text[:200].strip()
        if status == 401 or status == 403:
            return BackendError(f"{self._who} refused the API key (HTTP {status}): check OPENAI_API_KEY.")
        if status == 429:
            return BackendError(f"{self._who} is rate-limiting or out of quota (HTTP 429): wait, or check the account.")
        if status == 404:
            return BackendError(
                f"{self._who} has no model '{self.model}' or no such endpoint (HTTP 404): check OPENAI_MODEL and "
                "OPENAI_BASE_URL."
            )
        if status >= 500:
            return BackendError(f"{self._who} failed on its side (HTTP {status}): try again later.")
        return BackendError(f"{self._who} rejected the request (HTTP {status}): {detail}.")


class _CallAssembler:
    """Joins the pieces of streamed tool calls, keyed by their `index`."""

    def __init__(self) -> None:
        self._parts: dict[int, dict[str, str]] = {}

    def add(self, pieces: list[dict[str, Any]]) -> None:
        for piece in pieces:
            part = self._parts.setdefault(int(piece.get("index") or 0), {"id": "", "name": "", "arguments": ""})
            function = piece.get("function") or {}
            part["id"] = piece.get("id") or part["id"]
            part["name"] += function.get("name") or ""
            part["arguments"] += function.get("arguments") or ""

    def take(self) -> list[ToolCall]:
        calls = [_tool_call(self._parts[i]) for i in sorted(self._parts)]
        self._parts.clear()
        return calls


def _tool_call(part: dict[str, str]) -> ToolCall:
    raw = part["arguments"]
    try:
        parsed = json.loads(raw) if raw.strip() else {}
    except json.JSONDecodeError:
        parsed = None
    arguments: dict[str, Any] | str = parsed if isinstance(parsed, dict) else raw
    return ToolCall(part["name"], arguments, id=part["id"])


async def _sse_events(response: httpx.Response) -> AsyncIterator[dict[str, Any] | None]:
    """Yield each `data:` payload as a dict, and None for `[DONE]`; a payload that is not JSON is an error."""
    async for line in response.aiter_lines():
        if not line.startswith("data:"):
            continue  # blank separators, `: keep-alive` comments, `event:` names
        data = line[5:].strip()
        if data == "[DONE]":
            yield None
            return
        payload = _json_or_none(data)
        if not isinstance(payload, dict):
            raise BackendError(f"The OpenAI-compatible service sent a stream line that is not JSON: {data[:80]!r}.")
        yield payload


def _json_or_none(data: str | bytes) -> Any:
    try:
        return json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None


def _error_text(payload: Any) -> str:
    error = payload.get("error") if isinstance(payload, dict) else None
    if isinstance(error, dict):
        return str(error.get("message") or error)
    return str(error or "")


def _for_openai(message: Message) -> Message:
    """OpenAI wants tool-call arguments as a JSON string, a `type` and an `id` on every call."""
    calls = message.get("tool_calls")
    if not calls:
        return message
    out = dict(message)
    fixed = []
    for n, call in enumerate(calls):
        function = dict(call.get("function") or {})
        if not isinstance(function.get("arguments"), str):
            function["arguments"] = json.dumps(function.get("arguments") or {})
        fixed.append({"id": call.get("id") or f"call_{n}", "type": "function", "function": function})
    out["tool_calls"] = fixed
    return out

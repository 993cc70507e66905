"""Home Assistant's conversation API: Billy forwards a spoken smart-home command and gets HA's answer.

`POST {HA_HOST}/api/conversation/process` with a long-lived access token; Home Assistant
runs the command through its own intents and answers with a sentence to say. Every failure
becomes a `BackendError` with one plain sentence, so the tool can hand it to the model and
the conversation goes on. The token is never logged.
"""

from __future__ import annotations

import logging
from typing import Any

import httpx

from core.config import HomeAssistantSettings
from core.errors import BackendError
from core.state import State, StateChange

log = logging.getLogger(__name__)

PATH = "/api/conversation/process"

_ERROR_CODES = {
    "no_intent_match": "Home Assistant did not understand that command",
    "no_valid_targets": "Home Assistant found no device or area by that name",
    "failed_to_handle": "Home Assistant understood but failed to carry it out",
    "unknown": "Home Assistant could not do that",
}


class HomeAssistantClient:
    """Sends commands to Home Assistant's conversation agent. `transport` is for tests and proxies."""

    def __init__(self, settings: HomeAssistantSettings, transport: httpx.AsyncBaseTransport | None = None):
        self.settings = settings
        self._transport = transport
        self.conversation_id: str | None = None
        """HA's id of the running conversation, sent back so "turn it off" knows what "it" is."""

    @property
    def enabled(self) -> bool:
        return self.settings.enabled

    def new_conversation(self) -> None:
        """Forget HA's conversation context; call it when Billy's session ends."""
        self.conversation_id = None

    def on_state(self, change: StateChange) -> None:
        """State observer: a session that ends (Billy goes idle) ends HA's conversation too,
        so "turn it off" in the next session never refers to a device from the last one."""
        if change.current is State.IDLE:
            self.new_conversation()

    async def process(self, text: str) -> str:
        """HA's spoken answer to `text`; raises BackendError with a sentence to say when it fails."""
        host = self.settings.host.rstrip("/")
        if not self.enabled:
            raise BackendError("Home Assistant is not set up: set HA_HOST and HA_TOKEN in .env.")
        body: dict[str, Any] = {"text": text, "language": self.settings.lang}
        if self.conversation_id:
            body["conversation_id"] = self.conversation_id
        headers = {"Authorization": f"Bearer {self.settings.token}", "Content-Type": "application/json"}
        timeout = httpx.Timeout(self.settings.timeout_seconds, connect=min(self.settings.timeout_seconds, 5.0))
        try:
            async with httpx.AsyncClient(transport=self._transport, timeout=timeout) as client:
                response = await client.post(f"{host}{PATH}", json=body, headers=headers)
        except httpx.TimeoutException as exc:
            raise BackendError(
                f"Home Assistant at {host} did not answer within {self.settings.timeout_seconds:g} seconds; "
                "check that it is running, or raise HA_TIMEOUT_SECONDS."
            ) from exc
        except httpx.HTTPError as exc:
            raise BackendError(
                f"Home Assistant at {host} cannot be reached ({type(exc).__name__}); check HA_HOST and the network."
            ) from exc
        return self._answer(response, host)

    def _answer(self, response: httpx.Response, host: str) -> str:
        if response.status_code == 401:
            raise BackendError(
                "Home Assistant rejected the token: create a long-lived access token and put it in HA_TOKEN."
            )
        if response.status_code == 404:
            raise BackendError(
                f"Home Assistant at {host} has no conversation API; check HA_HOST and that the "
                "conversation integration is enabled."
            )
        if response.status_code >= 400:
            raise BackendError(f"Home Assistant at {host} answered with HTTP error {response.status_code}.")
        try:
            data = response.json()
            answer = data["response"]
        except (ValueError, KeyError, TypeError) as exc:
            raise BackendError(f"Home Assistant at {host} sent an answer Billy cannot read.") from exc
        if isinstance(data.get("conversation_id"), str):
            self.conversation_id = data["conversation_id"]
        speech = _speech(answer)
        if answer.get("response_type") == "error":
            code = (answer.get("data") or {}).get("code", "unknown")
            reason = _ERROR_CODES.get(code, _ERROR_CODES["unknown"])
            log.info("Home Assistant refused a command (%s): %s", code, speech)
            raise BackendError(f"{reason}: {speech}" if speech else f"{reason}.")
        failed = (answer.get("data") or {}).get("failed") or []
        if failed and not speech:
            names = ", ".join(str(t.get("name", t.get("id", "?"))) for t in failed if isinstance(t, dict))
            return f"Home Assistant could not reach: {names}."
        return speech or "Done."


def _speech(answer: dict[str, Any]) -> str:
    try:
        return str(answer["speech"]["plain"]["speech"]).strip()
    except (KeyError, TypeError):
        return ""

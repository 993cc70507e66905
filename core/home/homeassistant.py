"""Home Assistant's conversation API: Billy forwards a spoken smart-home command and gets HA's answer.

`POST {HA_HOST}/api/conversation/process` with a long-lived access token; Home Assistant
runs the command through its own intents and answers with a sentence to say. Every failure
becomes a `BackendError` with one plain sentence, so the tool can hand it to the model and
the conversation goes on. The token is never logged.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
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


@dataclass(frozen=True)
class HomeAnswer:
    """What Home Assistant's conversation agent answered."""

    speech: str
    """The sentence HA says (empty if it said none)."""
    kind: str
    """HA's `response_type`: `action_done`, `query_answer` or `error`."""
    code: str = ""
    """For an error, HA's `data.code`: `no_intent_match`, `no_valid_targets`, `failed_to_handle`, ..."""

    acted: bool = False
    """HA carried out something on a device (its answer names targets that succeeded or failed)."""

    @property
    def answered(self) -> bool:
        """HA did something in the home or answered a question, rather than refusing or only chatting.

        HA's agent also refuses sentences that merely look like commands ("not aware of any device
        called capital of France") and greets back; those are not answers to act on.
        """
        return self.kind == "query_answer" or (self.kind == "action_done" and self.acted)


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
        answer = await self.ask(text)
        if answer.kind == "error":
            reason = _ERROR_CODES.get(answer.code, _ERROR_CODES["unknown"])
            raise BackendError(f"{reason}: {answer.speech}" if answer.speech else f"{reason}.")
        return answer.speech

    async def ask(self, text: str) -> HomeAnswer:
        """HA's answer to `text`, whatever it was (done, an answer, or "no intent matched").

        Raises BackendError only when Home Assistant cannot be asked: unreachable, too slow,
        the token refused, or an answer that is not HA's.
        """
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

    def _answer(self, response: httpx.Response, host: str) -> HomeAnswer:
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
        kind = str(answer.get("response_type") or "action_done")
        if kind == "error":
            code = str((answer.get("data") or {}).get("code", "unknown"))
            log.info("Home Assistant did not do it (%s): %s", code, speech)
            return HomeAnswer(speech, kind, code)
        data = answer.get("data") or {}
        failed = data.get("failed") or []
        if failed and not speech:
            names = ", ".join(str(t.get("name", t.get("id", "?"))) for t in failed if isinstance(t, dict))
            speech = f"Home Assistant could not reach: {names}."
        return HomeAnswer(speech or "Done.", kind, acted=bool(data.get("success") or failed))


def _speech(answer: dict[str, Any]) -> str:
    try:
        return str(answer["speech"]["plain"]["speech"]).strip()
    except (KeyError, TypeError):
        return ""

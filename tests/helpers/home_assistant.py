"""A fake Home Assistant speaking the real conversation REST API on 127.0.0.1.

`POST /api/conversation/process` with `Authorization: Bearer <token>` and JSON
`{"text", "language", "conversation_id"?}`, answered the way Home Assistant answers:
401 for a wrong token, `response_type` `action_done` with speech for commands it knows,
`error` with a `data.code` for ones it cannot do, and a deliberately slow answer for
texts containing "slowly". `GET /api/` answers as HA does when a client checks its token.

    with FakeHomeAssistant(token="secret") as ha:
        ha.url; ha.requests  # every (headers, body) received, in order
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

SLOW_SECONDS = 3.0


class FakeHomeAssistant:
    def __init__(self, token: str = "good-token"):
        self.token = token
        self.requests: list[tuple[dict[str, str], dict[str, Any]]] = []
        self._stopping = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(self))
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    def __enter__(self) -> FakeHomeAssistant:
        return self

    def __exit__(self, *exc: object) -> None:
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=2)

    def answer(self, body: dict[str, Any]) -> dict[str, Any]:
        """HA's answer to one command text."""
        text = body.get("text", "").lower()
        if "slowly" in text:
            self._stopping.wait(SLOW_SECONDS)
        if "light" in text and " on" in f" {text}":
            return _response(
                "Turned on the lights", "action_done", body, success=[{"name": "Kitchen", "id": "kitchen"}]
            )
        if "light" in text and "off" in text:
            return _response(
                "Turned off the lights", "action_done", body, success=[{"name": "Kitchen", "id": "kitchen"}]
            )
        if "unicorn" in text:
            return _response(
                "Sorry, I am not aware of any device called unicorn", "error", body, code="no_valid_targets"
            )
        return _response("Sorry, I couldn't understand that", "error", body, code="no_intent_match")


def _response(speech: str, kind: str, body: dict[str, Any], success=None, code: str = "") -> dict[str, Any]:
    data: dict[str, Any] = (
        {"code": code} if kind == "error" else {"targets": [], "success": success or [], "failed": []}
    )
    return {
        "response": {
            "speech": {"plain": {"speech": speech, "extra_data": None}},
            "card": {},
            "language": body.get("language", "en"),
            "response_type": kind,
            "data": data,
        },
        "conversation_id": body.get("conversation_id") or "01J0FAKECONVERSATION",
    }


def _make_handler(owner: FakeHomeAssistant) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def _send(self, status: int, payload: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def do_GET(self) -> None:
            """`GET /api/`: Home Assistant's "is the token good" endpoint (200 "API running." or 401)."""
            if self.path != "/api/":
                self._send(404, b"404: Not Found", "text/plain")
            elif self.headers.get("Authorization") != f"Bearer {owner.token}":
                self._send(401, b"401: Unauthorized", "text/plain; charset=utf-8")
            else:
                self._send(200, b'{"message": "API running."}', "application/json")

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", 0))
            raw = self.rfile.read(length)
            if self.path != "/api/conversation/process":
                self._send(404, b"404: Not Found", "text/plain")
                return
            if self.headers.get("Authorization") != f"Bearer {owner.token}":
                self._send(401, b"401: Unauthorized", "text/plain; charset=utf-8")
                return
            try:
                body = json.loads(raw)
            except ValueError:
                self._send(400, b'{"message": "Invalid JSON specified."}', "application/json")
                return
            owner.requests.append((dict(self.headers), body))
            self._send(200, json.dumps(owner.answer(body)).encode(), "application/json")

    return Handler

"""The page's security and checks, through Flask's test client with a scripted channel to Billy.

Login, rate limit, cookie flags, CSRF on every POST, input checks before anything reaches
Billy, persona names, the settings editor (secrets, bad values, atomic write with backup),
the live stream's first message, and loopback-only serving without a password.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from dotenv import dotenv_values

from core.config import ROOT, load_settings
from core.web.app import PageContext, create_app
from core.web.auth import LoginLimiter
from core.web.channel import ChannelError
from core.web.hub import Hub

PASSWORD = "correct horse battery"
SECRETS = {
    "OPENAI_API_KEY": "sk-test-secret-0123456789",
    "MQTT_PASSWORD": "mqtt-secret-pw",
    "HA_TOKEN": "ha-token-secret-abcdef",
    "WEB_PASSWORD": PASSWORD,
}


class ScriptedChannel:
    """Stands in for the page's end of the channel: records what would be sent to Billy."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []
        self.connected = True

    def request(self, kind: str, timeout: float = 5.0, **fields: Any) -> dict[str, Any]:
        if not self.connected:
            raise ChannelError("Billy is not running.")
        self.sent.append((kind, fields))
        return {"personas": ["billy", "pirate"], "current": "billy"} if kind.startswith("persona.") else {}


class Page:
    def __init__(self, tmp_path: Path, password: str = PASSWORD, clock=None):
        personas = tmp_path / "personas"
        if not personas.exists():
            shutil.copytree(ROOT / "personas", personas)
        env = tmp_path / ".env"
        lines = [f"PERSONA_DIR={personas}", f"WEB_RUNTIME_DIR={tmp_path / 'rt'}", "RUN_MODE=normal"]
        lines += [f"{k}={v}" for k, v in SECRETS.items() if k != "WEB_PASSWORD"]
        lines += [f"WEB_PASSWORD={password}"] if password else []
        env.write_text("\n".join(lines) + "\n")
        self.env = env
        settings = replace(load_settings(env, {}), env_file=env)
        self.channel = ScriptedChannel()
        self.hub = Hub(tmp_path / "rt", SECRETS.values())
        self.hub.on_event(
            {"type": "hello", "pid": 42, "ready": True, "state": "idle", "persona": {"name": "billy"},
             "personas": ["billy", "pirate"], "songs": [], "logs": [], "last_turn": None}
        )  # fmt: skip
        self.restarts = 0
        limiter = LoginLimiter(clock=clock) if clock else LoginLimiter()
        context = PageContext(
            settings,
            self.hub,
            self.channel,
            start_voice=lambda: "Started Billy (pid 1).",
            restart_page=self.restart,
            limiter=limiter,
        )
        self.app = create_app(context, b"k" * 64)
        self.client = self.app.test_client()

    def restart(self) -> None:
        self.restarts += 1

    def login(self, password: str = PASSWORD):
        token = csrf_of(self.client.get("/login").get_data(as_text=True))
        return self.client.post("/login", data={"password": password, "csrf_token": token})

    def token(self) -> str:
        return csrf_of(self.client.get("/").get_data(as_text=True))

    def post(self, url: str, body: Any = None, token: str | None = None):
        headers = {"X-CSRFToken": self.token() if token is None else token}
        return self.client.post(url, data=json.dumps(body or {}), headers=headers, content_type="application/json")


def csrf_of(html: str) -> str:
    match = re.search(r'(?:name="csrf_token" value|name="csrf-token" content)="([^"]+)"', html)
    assert match, html[:300]
    return match.group(1)


@pytest.fixture
def page(tmp_path) -> Page:
    return Page(tmp_path)


def test_everything_but_the_login_needs_a_session(page):
    response = page.client.get("/")
    assert response.status_code == 302 and response.headers["Location"].endswith("/login")
    for url in ("/api/status", "/api/settings", "/api/personas", "/api/personas/billy", "/events"):
        response = page.client.get(url)
        assert response.status_code == 401, url
        assert response.get_json() == {"error": "Log in first."}
    assert page.client.get("/login").status_code == 200
    assert page.client.get("/static/billy.css").status_code == 200
    token = csrf_of(page.client.get("/login").get_data(as_text=True))
    response = page.client.post("/api/say", json={"text": "hi"}, headers={"X-CSRFToken": token})
    assert response.status_code == 401
    assert page.channel.sent == []


def test_login_sets_a_strict_http_only_cookie_and_logout_ends_it(page):
    response = page.login()
    assert response.status_code == 302 and response.headers["Location"] == "/"
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert page.client.get("/api/status").get_json()["running"] is True
    page.client.post("/logout", data={"csrf_token": page.token()})
    assert page.client.get("/api/status").status_code == 401


def test_wrong_passwords_are_rate_limited(tmp_path):
    now = [1000.0]
    page = Page(tmp_path, clock=lambda: now[0])
    for _ in range(5):
        response = page.login("wrong password")
        assert response.status_code == 401 and "Wrong password." in response.get_data(as_text=True)
    response = page.login(PASSWORD)  # even the right one, until the minute is over
    assert response.status_code == 429
    assert "Too many wrong passwords: wait 60 s" in response.get_data(as_text=True)
    now[0] += 61
    assert page.login(PASSWORD).status_code == 302


def test_a_post_without_the_csrf_token_is_refused(page):
    page.login()
    for token in ("", "forged-token"):
        response = page.post("/api/say", {"text": "hello"}, token=token)
        assert response.status_code == 400
        assert "security token" in response.get_json()["error"]
    assert page.channel.sent == []
    assert page.post("/api/say", {"text": "hello"}).get_json() == {"ok": True}
    assert page.channel.sent == [("say", {"text": "hello"})]


def test_inputs_are_checked_before_they_reach_billy(page):
    page.login()
    bad = [
        ("/api/say", {"text": ""}, "empty"),
        ("/api/say", {"text": "x" * 1001}, "under 1000"),
        ("/api/talk", {"text": {"nested": 1}}, "text"),
        ("/api/command", {"command": "rm -rf /"}, "listen, stop"),
        ("/api/mic", {"on": "yes"}, "true or false"),
        ("/api/song", {}, "text"),
    ]
    for url, body, why in bad:
        response = page.post(url, body)
        assert response.status_code == 400, url
        assert why in response.get_json()["error"], (url, response.get_json())
    response = page.client.post("/api/say", data="not json", headers={"X-CSRFToken": page.token()})
    assert response.status_code == 400
    assert page.channel.sent == []
    page.post("/api/talk", {"text": "Tell me about tides"})
    assert page.channel.sent == [("talk", {"text": "Tell me about tides"})]


def test_persona_names_that_leave_the_folder_are_refused(page):
    page.login()
    for body in ({"name": "../../etc", "source": "billy"}, {"name": "ok", "source": "../billy"}):
        response = page.post("/api/personas", body)
        assert response.status_code == 400 and "not a persona name" in response.get_json()["error"]
    response = page.post("/api/personas/pirate/rename", {"new_name": "../pirate"})
    assert response.status_code == 400
    assert page.post("/api/personas/..%2F..%2Fetc/use").status_code in (400, 404)
    assert page.client.get("/api/personas/%2e%2e").status_code in (400, 404)
    assert page.channel.sent == []
    assert page.post("/api/personas", {"name": "my_billy", "source": "billy"}).status_code == 200
    assert page.channel.sent == [("persona.create", {"name": "my_billy", "source": "billy"})]


def test_a_bad_persona_edit_is_refused_with_its_reason(page):
    page.login()
    traits = dict.fromkeys(["humor", "sarcasm", "honesty", "respectfulness", "optimism", "confidence",
                            "warmth", "curiosity", "verbosity", "formality"], 50)  # fmt: skip
    response = page.post("/api/personas/billy", {"traits": {**traits, "humor": 150}})
    assert response.status_code == 400 and "humor must be a whole number" in response.get_json()["error"]
    response = page.post("/api/personas/billy", {"traits": traits, "display_name": "Billy"})
    assert response.status_code == 200
    edit = {"traits": traits, "display_name": "Billy"}
    assert page.channel.sent == [("persona.save", {"name": "billy", "edit": edit})]


def test_settings_never_send_secrets_and_refuse_bad_values(page):
    page.login()
    payload = page.client.get("/api/settings").get_data(as_text=True)
    index = page.client.get("/").get_data(as_text=True)
    for secret in SECRETS.values():
        assert secret not in payload and secret not in index
    fields = {f["name"]: f for g in json.loads(payload)["groups"] for f in g["fields"]}
    assert fields["OPENAI_API_KEY"] == {**fields["OPENAI_API_KEY"], "value": "", "is_set": True, "secret": True}
    before = page.env.read_text()
    response = page.post("/api/settings", {"values": {"END_SILENCE_MS": "fast", "RUN_MODE": "dory"}})
    assert response.status_code == 400
    body = response.get_json()
    assert body["errors"] == {
        "END_SILENCE_MS": "END_SILENCE_MS='fast' is not allowed: use a whole number from 100 to 3000."
    }
    assert body["error"] == "Nothing was saved: 1 value is not allowed."
    assert page.env.read_text() == before


def test_settings_are_saved_atomically_with_a_backup(page):
    page.login()
    before = page.env.read_text()
    response = page.post(
        "/api/settings",
        {"values": {"RUN_MODE": "dory", "OPENAI_API_KEY": "", "PERSONA": "pirate"}, "clear": ["HA_TOKEN"]},
    )
    body = response.get_json()
    assert response.status_code == 200, body
    assert body["saved"] == ["HA_TOKEN", "PERSONA", "RUN_MODE"]
    assert body["restart"] == ["HA_TOKEN", "RUN_MODE"] and body["page_restarts"] is False
    values = dotenv_values(page.env)
    assert values["RUN_MODE"] == "dory" and values["PERSONA"] == "pirate" and values["HA_TOKEN"] == ""
    assert values["OPENAI_API_KEY"] == SECRETS["OPENAI_API_KEY"]  # an empty secret field keeps it
    assert (page.env.parent / ".env.bak").read_text() == before
    assert ("persona.use", {"name": "pirate"}) in page.channel.sent  # applied at once
    assert page.restarts == 0
    response = page.post("/api/settings", {"values": {"FLASK_PORT": "8181"}})
    assert response.get_json()["page_restarts"] is True and page.restarts == 1
    response = page.post("/api/settings", {"values": {"SHELL": "/bin/sh"}})
    assert response.status_code == 400 and "not a setting" in response.get_json()["error"]


def test_the_live_stream_starts_with_a_snapshot(page):
    page.login()
    page.hub.on_event({"type": "log", "time": 1.0, "level": "INFO", "name": "x", "message": "hello"})
    response = page.client.get("/events", buffered=False)
    assert response.mimetype == "text/event-stream"
    chunks = iter(response.response)
    assert next(chunks).startswith(b"retry:")
    snapshot = json.loads(next(chunks).decode().removeprefix("data: "))
    assert snapshot["type"] == "snapshot" and snapshot["state"] == "idle" and snapshot["connected"] is True
    assert snapshot["logs"][-1]["message"] == "hello"
    page.hub.on_event({"type": "state", "state": "thinking", "previous": "idle", "reason": "", "now": 1.0})
    assert json.loads(next(chunks).decode().removeprefix("data: "))["state"] == "thinking"
    response.close()
    assert page.hub.followers == 0


def test_billy_down_is_said_plainly(page):
    page.login()
    page.channel.connected = False
    page.hub.on_event({"type": "gone"})
    assert page.client.get("/api/status").get_json() == {
        "running": False, "starting": False, "state": "offline", "pid": None
    }  # fmt: skip
    response = page.post("/api/say", {"text": "hello?"})
    assert response.status_code == 503 and response.get_json()["error"] == "Billy is not running."
    assert page.post("/api/start").get_json() == {"ok": True, "message": "Started Billy (pid 1)."}


def test_without_a_password_only_loopback_host_names_are_served(tmp_path):
    page = Page(tmp_path, password="")
    assert page.client.get("/", headers={"Host": "127.0.0.1:8080"}).status_code == 200
    assert page.client.get("/", headers={"Host": "localhost:8080"}).status_code == 200
    assert page.client.get("/", headers={"Host": "evil.example:8080"}).status_code == 400
    assert page.client.get("/login").status_code == 302

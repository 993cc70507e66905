"""The doctor's look at the services on the network, each tried with Billy's own address and credentials."""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
import uuid
from typing import Any

import httpx

from core.config import Settings
from core.dev.check import Line, no, off, ok

NETWORK_TIMEOUT_S = 5.0
"""Longest wait (seconds) for any one service: broker, Home Assistant, Ollama, the cloud."""


def _tag(model: str) -> str:
    return model if ":" in model else f"{model}:latest"


async def check_ollama(settings: Settings) -> Line:
    import ollama

    m = settings.models
    fallback = "meanwhile the embedded brain answers"
    try:
        listed = await ollama.AsyncClient(host=m.local_llm_host, timeout=NETWORK_TIMEOUT_S).list()
    except ollama.ResponseError as exc:
        return no("ollama", f"{m.local_llm_host} answered HTTP {exc.status_code} ({exc.error}): is it Ollama?")
    except Exception:
        return no(
            "ollama",
            f"not answering at {m.local_llm_host}: start it (`ollama serve`) or set LOCAL_LLM_HOST; {fallback}",
        )
    names = [model.model or "" for model in listed.models]
    if _tag(m.local_llm_model) not in {_tag(n) for n in names}:
        has = ", ".join(names) or "none"
        return no(
            "ollama",
            f"{m.local_llm_host} has no {m.local_llm_model} (it has: {has}): run `ollama pull {m.local_llm_model}` "
            f"or set LOCAL_LLM_MODEL; {fallback}",
        )
    return ok("ollama", f"{m.local_llm_model} at {m.local_llm_host}")


async def _get(url: str, token: str) -> httpx.Response:
    timeout = httpx.Timeout(NETWORK_TIMEOUT_S)
    async with httpx.AsyncClient(timeout=timeout) as client:
        return await client.get(url, headers={"Authorization": f"Bearer {token}"})


async def check_cloud(settings: Settings) -> Line:
    m = settings.models
    if not m.openai_api_key:
        return off("cloud", "OPENAI_API_KEY is not set: no cloud fallback (Billy stays local)")
    base = m.openai_base_url
    try:
        response = await _get(f"{base}/models", m.openai_api_key)
    except httpx.TimeoutException:
        return no(
            "cloud", f"{base} did not answer within {NETWORK_TIMEOUT_S:g} s: check OPENAI_BASE_URL and the network"
        )
    except httpx.HTTPError as exc:
        return no("cloud", f"{base} cannot be reached ({type(exc).__name__}): check OPENAI_BASE_URL and the network")
    status = response.status_code
    if status in (401, 403):
        return no("cloud", f"{base} rejected the key (HTTP {status}): check OPENAI_API_KEY")
    if status == 429:
        return no("cloud", f"{base} is rate-limiting or out of quota (HTTP 429): check the account")
    if status == 404:
        return no("cloud", f"{base}/models does not exist (HTTP 404): check OPENAI_BASE_URL (it usually ends in /v1)")
    if status != 200:
        return no("cloud", f"{base} answered HTTP {status}: check OPENAI_BASE_URL, or try again later")
    try:
        listed = {item["id"] for item in response.json()["data"]}
    except (ValueError, KeyError, TypeError):
        listed = set()
    note = "" if not listed or m.openai_model in listed else f"; it does not list {m.openai_model}: check OPENAI_MODEL"
    return ok("cloud", f"{base} accepts the key{note}")


def check_mqtt(settings: Settings) -> Line:
    """Connect to the broker with Billy's credentials and wait for its answer (CONNACK)."""
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    s = settings.mqtt
    if not s.enabled:
        return off("mqtt", "MQTT_HOST is not set: no Home Assistant device")
    where = f"{s.host}:{s.port}"
    who = f"user {s.username!r}" if s.username else "anonymous clients"
    client = paho.Client(
        CallbackAPIVersion.VERSION2, client_id=f"billy-check-{uuid.uuid4().hex[:8]}", protocol=paho.MQTTv311
    )
    client.connect_timeout = NETWORK_TIMEOUT_S
    if s.username:
        client.username_pw_set(s.username, s.password or None)
    answer: list[Any] = []
    answered = threading.Event()

    def on_connect(_client: Any, _userdata: Any, _flags: Any, reason: Any, _properties: Any) -> None:
        answer.append(reason)
        answered.set()

    client.on_connect = on_connect
    try:
        if s.tls:
            client.tls_set(ca_certs=str(s.ca_cert) if s.ca_cert else None)
        client.connect(s.host, s.port, keepalive=10)
    except ssl.SSLError as exc:
        return no("mqtt", f"TLS with {where} failed ({exc}): check MQTT_TLS and MQTT_CA_CERT")
    except socket.gaierror:
        return no("mqtt", f"{s.host} is not a known host name: check MQTT_HOST")
    except ConnectionRefusedError:
        return no("mqtt", f"nothing listens at {where}: check MQTT_HOST and MQTT_PORT, and that the broker runs")
    except (OSError, ValueError) as exc:
        return no("mqtt", f"cannot reach {where} ({exc}): check MQTT_HOST, MQTT_PORT and the network")
    client.loop_start()
    try:
        answered.wait(NETWORK_TIMEOUT_S)
    finally:
        with contextlib.suppress(Exception):
            client.disconnect()
        client.loop_stop()
    if not answer:
        return no("mqtt", f"{where} did not answer within {NETWORK_TIMEOUT_S:g} s: is it an MQTT broker (MQTT_PORT)?")
    reason = answer[0]
    if not reason.is_failure:
        return ok("mqtt", f"the broker at {where} accepts {who}" + (" over TLS" if s.tls else ""))
    text = str(reason)
    if "authori" in text.lower() or "user name or password" in text.lower():
        fix = "check MQTT_USERNAME and MQTT_PASSWORD" if s.username else "set MQTT_USERNAME and MQTT_PASSWORD"
        return no("mqtt", f"the broker at {where} refused {who} ({text}): {fix}")
    return no("mqtt", f"the broker at {where} refused the connection ({text})")


async def check_home_assistant(settings: Settings) -> Line:
    """`GET /api/` with the token: Home Assistant answers 200 "API running." or 401."""
    s = settings.home_assistant
    if not s.host and not s.token:
        return off("home assistant", "HA_HOST and HA_TOKEN are not set: no smart-home commands")
    if not s.token:
        return no("home assistant", "HA_HOST is set but HA_TOKEN is empty: make a long-lived access token")
    if not s.host:
        return no(
            "home assistant", "HA_TOKEN is set but HA_HOST is empty: set it, like http://homeassistant.local:8123"
        )
    try:
        response = await _get(f"{s.host}/api/", s.token)
    except httpx.TimeoutException:
        return no("home assistant", f"{s.host} did not answer within {NETWORK_TIMEOUT_S:g} s: check HA_HOST")
    except httpx.HTTPError as exc:
        return no("home assistant", f"{s.host} cannot be reached ({type(exc).__name__}): check HA_HOST and the network")
    if response.status_code == 401:
        return no(
            "home assistant",
            f"{s.host} rejected the token (HTTP 401): make a new long-lived access token "
            "(your Home Assistant profile, Security tab) and put it in HA_TOKEN",
        )
    if response.status_code == 404:
        return no("home assistant", f"{s.host} has no /api/ (HTTP 404): is HA_HOST Home Assistant's address?")
    if response.status_code != 200:
        return no("home assistant", f"{s.host} answered HTTP {response.status_code}: check HA_HOST")
    return ok("home assistant", f"{s.host} accepts the token")

"""`python main.py check`: does this machine have what Billy needs? One line per part."""

from __future__ import annotations

import asyncio

from core.config import Settings
from core.errors import BillyError


async def check(settings: Settings) -> int:
    from core.brains.ollama import OllamaBrain

    problems = 0

    def line(ok: bool, part: str, detail: str) -> None:
        nonlocal problems
        problems += 0 if ok else 1
        print(f"{'ok ' if ok else 'NO '} {part:<14} {detail}")

    print("settings: .env parsed and valid")
    m = settings.models
    ollama = OllamaBrain(m.local_llm_host, m.local_llm_model, m.local_llm_keep_alive, m.request_timeout_seconds)
    healthy = await ollama.healthy()
    line(
        healthy,
        "ollama",
        f"{m.local_llm_model} at {m.local_llm_host}" + ("" if healthy else " (the embedded brain will answer instead)"),
    )
    for part, build in (("speech to text", "build_transcriber"), ("voice", "build_synthesizer")):
        try:
            from core import app

            await asyncio.get_running_loop().run_in_executor(None, getattr(app, build), settings)
            line(True, part, "model loads")
        except BillyError as exc:
            line(False, part, str(exc))
    try:
        from core.audio.portaudio import find_device

        find_device("input", settings.audio.mic_preference)
        find_device("output", settings.audio.speaker_preference)
        line(True, "sound card", "mic and speaker found")
    except BillyError as exc:
        line(False, "sound card", f"{exc} (Billy would run with simulated audio)")
    # Optional parts: reported, never counted as problems.
    print(f"--  {'mqtt':<14} {settings.mqtt.host or 'MQTT_HOST not set: no Home Assistant device'}")
    print(
        f"--  {'home assistant':<14} {settings.home_assistant.host or 'HA_HOST/HA_TOKEN not set: no smart-home tool'}"
    )
    return 0 if problems == 0 else 1

"""Whole turns through the real firmware in simulation: real Whisper, piper, endpointing,
gpiozero mock pins, and an Ollama-API server driven through the real `ollama` client.

Each test runs `simulate` (the same code as `python main.py simulate`) and checks its
output files: what Billy heard, said and played, and when.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from core.audio.wav import read_wav
from core.config import ROOT, load_settings
from core.dev.simulate import simulate
from tests.helpers.ollama_server import FakeOllama, Reply
from tests.helpers.speech import noise, silence, speech_16k, with_pause, write_wav

pytestmark = pytest.mark.slow

MODEL = "qwen2.5:1.5b"
WARM = Reply.text("ok")
"""Start-up primes the model with the system prompt: that request takes the first scripted reply."""


@pytest.fixture(scope="module")
def wavs(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("inputs")
    lead = silence(0.4)
    clips = {
        "capital": np.concatenate([lead, speech_16k("What is the capital of France?"), silence(0.3)]),
        "joke": np.concatenate([lead, speech_16k("Please tell me a funny joke."), silence(0.3)]),
        "paused": np.concatenate(
            [lead, with_pause("I would like to know", "the weather in Paris tomorrow.", 700), silence(0.3)]
        ),
        "noise": noise("pink", 3.0, -35.0, seed=3),
    }
    paths = {}
    for name, pcm in clips.items():
        paths[name] = folder / f"{name}.wav"
        write_wav(paths[name], pcm)
    return paths


def settings_for(tmp_path: Path, host: str, **extra: str):
    env = {
        "LOCAL_LLM_HOST": host,
        "LOCAL_LLM_MODEL": MODEL,
        "MIC_TIMEOUT_SECONDS": "3",
        "REQUEST_TIMEOUT_SECONDS": "5",
        "PERSONA_DIR": str(ROOT / "personas"),
        **extra,
    }
    settings = load_settings(tmp_path / "absent.env", env)
    # Generated wake-up clips go to the test's folder, not the checkout.
    from dataclasses import replace

    return replace(settings, cache_dir=tmp_path / "cache")


def run_sim(settings, inputs: list[Path], out: Path, wake: bool = False) -> int:
    return asyncio.run(simulate(settings, inputs, out, wake=wake))


def read_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def words(text: str) -> set[str]:
    return set(re.findall(r"[a-z]+", text.lower()))


def test_normal_turn_then_follow_up(tmp_path, wavs):
    with FakeOllama(models=[MODEL]) as server:
        server.script(
            WARM,
            Reply.text("Paris, of course. Even a fish knows that!"),
            Reply.text("Why did the fish blush? It saw the ocean's bottom."),
        )
        settings = settings_for(tmp_path, server.url)
        out = tmp_path / "out"
        assert run_sim(settings, [wavs["capital"], wavs["joke"]], out) == 0
        chats = [r for r in server.requests if r.get("messages", [{}])[-1].get("role") == "user"]

    turns = read_lines(out / "turns.jsonl")
    assert len(turns) == 2
    assert {"capital", "france"} <= words(turns[0]["transcript"])
    assert {"funny", "joke"} <= words(turns[1]["transcript"])
    assert turns[0]["reply"] == "Paris, of course. Even a fish knows that!"
    assert turns[0]["backends"] == {"stt": "faster-whisper", "llm": "ollama", "tts": "piper"}
    for turn in turns:
        for key in ("endpoint", "stt", "llm_first_sentence", "tts_first_audio", "end_of_speech_to_first_audio"):
            assert turn["latency_ms"][key] >= 0, key
    # The follow-up turn carries the first exchange as history, after the system prompt.
    last = chats[-1]["messages"]
    assert last[0]["role"] == "system"
    assert any(m["role"] == "assistant" and "Paris" in m["content"] for m in last)
    assert last[-1]["content"] == turns[1]["transcript"]

    events = read_lines(out / "events.jsonl")
    states = [e["state"] for e in events]
    assert states.count("speaking") >= 2  # wake-up clip is played while listening, answers while speaking
    for a, b in itertools.pairwise(events):
        assert a["time"] <= b["time"]
    assert states[-1] == "idle"

    # The answer is on the play clock: heard after the question ended, in the speaker file.
    pcm, rate = read_wav(out / "speaker.wav")
    speaking_at = next(e["time"] for e in events if e["state"] == "speaking")
    start = int(speaking_at * rate)
    assert np.abs(pcm[start : start + 3 * rate].astype(np.int32)).max() > 2000
    motion = read_lines(out / "motion.jsonl")
    assert any(m["motor"] == "mouth" and m["value"] != 0 for m in motion)


def test_the_wake_word_starts_a_session_without_the_button(tmp_path, wavs):
    """Dory mode, so each question needs its own wake word: the second one proves the detector
    listens again once the first session is over."""
    question = read_wav(wavs["capital"])[0]
    woken = np.concatenate([silence(0.5), speech_16k("Hey Jarvis!"), silence(2.6), question])
    path = tmp_path / "woken.wav"
    write_wav(path, woken)
    with FakeOllama(models=[MODEL]) as server:
        server.script(WARM, Reply.text("Paris."), Reply.text("Still Paris."))
        settings = settings_for(tmp_path, server.url, WAKE_WORD_ENABLED="true", RUN_MODE="dory")
        out = tmp_path / "out"
        assert run_sim(settings, [path, path], out, wake=True) == 0
    turns = read_lines(out / "turns.jsonl")
    assert [t["reply"] for t in turns] == ["Paris.", "Still Paris."]
    for turn in turns:
        assert {"capital", "france"} <= words(turn["transcript"]) and "jarvis" not in words(turn["transcript"])
    reasons = [e["reason"] for e in read_lines(out / "events.jsonl")]
    assert reasons.count("wake word") == 2 and "button" not in reasons


def test_simulate_wake_without_the_wake_word_enabled_is_refused(tmp_path, wavs, caplog):
    settings = settings_for(tmp_path, "http://127.0.0.1:9")
    assert run_sim(settings, [wavs["capital"]], tmp_path / "out", wake=True) == 2
    assert "WAKE_WORD_ENABLED=true" in caplog.text


def test_dory_mode_ends_the_session_after_one_answer(tmp_path, wavs):
    with FakeOllama(models=[MODEL]) as server:
        server.script(WARM, Reply.text("Paris."), Reply.text("A joke? Later."))
        settings = settings_for(tmp_path, server.url, RUN_MODE="dory")
        out = tmp_path / "out"
        assert run_sim(settings, [wavs["capital"], wavs["joke"]], out) == 0
    turns = read_lines(out / "turns.jsonl")
    assert [t["reply"] for t in turns] == ["Paris.", "A joke? Later."]
    states = [e["state"] for e in read_lines(out / "events.jsonl")]
    # idle between the two answers: two separate sessions, each started by a press.
    first_idle_after_speaking = states.index("idle", states.index("speaking"))
    assert "speaking" in states[first_idle_after_speaking:]


def test_noise_only_input_yields_no_turn(tmp_path, wavs):
    with FakeOllama(models=[MODEL]) as server:
        settings = settings_for(tmp_path, server.url)
        out = tmp_path / "out"
        assert run_sim(settings, [wavs["noise"]], out) == 0
        assert not any(r.get("messages", [{}])[-1].get("role") == "user" for r in server.requests)
    assert read_lines(out / "turns.jsonl") == []


@pytest.mark.parametrize("end_silence_ms", ["500", "300"])
def test_mid_sentence_pause_of_700ms_is_one_turn(tmp_path, wavs, end_silence_ms):
    """With a 300 ms end silence the first half's answer is ready long before the user goes on:
    it must be dropped unspoken, and the model must see the whole sentence once."""
    with FakeOllama(models=[MODEL]) as server:
        server.script(WARM, Reply.text("Sunny, with a chance of fish."), Reply.text("Sunny, with a chance of fish."))
        settings = settings_for(tmp_path, server.url, END_SILENCE_MS=end_silence_ms)
        out = tmp_path / "out"
        assert run_sim(settings, [wavs["paused"]], out) == 0
        last_chat = [r for r in server.requests if r.get("messages")][-1]
    turns = read_lines(out / "turns.jsonl")
    assert len(turns) == 1
    assert {"know", "weather"} <= words(turns[0]["transcript"])  # both halves, one turn
    users = [m["content"] for m in last_chat["messages"] if m["role"] == "user"]
    assert len(users) == 1 and "weather" in users[0].lower()


def test_dead_ollama_falls_back_to_the_embedded_brain(tmp_path, wavs):
    with FakeOllama(models=[MODEL]) as server:
        url = server.url
    settings = settings_for(tmp_path, url)  # nothing listens there any more
    out = tmp_path / "out"
    assert run_sim(settings, [wavs["capital"]], out) == 0
    turns = read_lines(out / "turns.jsonl")
    assert len(turns) == 1
    assert turns[0]["backends"]["llm"] == "embedded"
    assert turns[0]["reply"].strip()
    pcm, _ = read_wav(out / "speaker.wav")
    assert np.abs(pcm.astype(np.int32)).max() > 2000


def test_barge_in_interrupts_billy_and_listens_again(tmp_path, wavs):
    from core.app import Billy, make_devices
    from core.state import State

    long_reply = " ".join(["Let me tell you a very long story about the sea and all its fish."] * 8)
    seen: list[State] = []
    records: list = []

    async def scenario(settings) -> float:
        devices = make_devices(settings, simulate=True)
        billy = Billy(settings, devices)
        billy.on_state(lambda change: seen.append(change.current))
        await billy.start()
        session = billy.session
        session.hooks.on_turn.append(records.append)
        try:
            billy.press()
            await wait_for(lambda: session.awaiting_speech, 20)
            devices.mic.feed(*read_wav(wavs["capital"]))
            await wait_for(lambda: billy.state.state is State.SPEAKING, 60)
            await asyncio.sleep(0.8)
            pressed = time.monotonic()
            billy.press()
            await wait_for(lambda: billy.state.state is State.LISTENING, 2)
            silent_after = devices.speaker.heard_until - pressed
            await wait_for(lambda: session.awaiting_speech, 10)
            devices.mic.feed(*read_wav(wavs["joke"]))
            await wait_for(lambda: len(records) == 2 and not devices.speaker.is_playing, 60)
            return silent_after
        finally:
            await billy.close()

    with FakeOllama(models=[MODEL]) as server:
        server.script(WARM, Reply.text(long_reply, chunk_words=2, delay_s=0.01), Reply.text("Short answer."))
        silent_after = asyncio.run(scenario(settings_for(tmp_path, server.url)))
    assert silent_after < 0.5, "Billy kept talking after the press"
    assert State.SPEAKING in seen
    assert records[-1].reply == "Short answer."
    assert {"funny", "joke"} <= words(records[-1].transcript)


async def wait_for(condition, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(0.02)


def test_cli_simulate_with_embedded_brain(tmp_path, wavs):
    """The documented command, as a user runs it: no Ollama anywhere, the embedded brain answers."""
    out = tmp_path / "out"
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(Path.home()),
        "LOCAL_LLM_HOST": "http://127.0.0.1:9",
        "MIC_TIMEOUT_SECONDS": "3",
    }
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "main.py"),
            "--env",
            str(tmp_path / "none.env"),
            "simulate",
            "--input",
            str(wavs["joke"]),
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=240,
        env=env,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    turns = read_lines(out / "turns.jsonl")
    assert len(turns) == 1 and turns[0]["backends"]["llm"] == "embedded"
    for name in ("speaker.wav", "events.jsonl", "motion.jsonl"):
        assert (out / name).stat().st_size > 0


# --- the end of a turn, decided by meaning as well as by silence --------------------------


def test_a_whole_question_is_heard_answered_sooner_than_the_pause_tolerance_allowed(tmp_path):
    """Before, every answer waited END_SILENCE_MS + the rest of PAUSE_TOLERANCE_MS + 160 ms after
    speech ended (860 ms), so with a 150 ms sound card nothing was heard before 1010 ms. A whole
    question may be answered once the end silence has passed."""
    path = tmp_path / "age.wav"
    write_wav(path, np.concatenate([silence(0.4), speech_16k("How old are you?"), silence(1.5)]))
    with FakeOllama(models=[MODEL]) as server:
        server.script(WARM, Reply.text("Older than the toaster."))
        settings = settings_for(tmp_path, server.url, RUN_MODE="dory")
        out = tmp_path / "out"
        assert run_sim(settings, [path], out) == 0
    (turn,) = read_lines(out / "turns.jsonl")
    assert turn["reply"] == "Older than the toaster."
    assert turn["latency_ms"]["hold"] < 400  # at most the end silence, never the pause tolerance
    assert turn["latency_ms"]["end_of_speech_to_first_audio"] < 400 + 460 + 150


def test_a_phrase_cut_off_by_a_600ms_pause_is_one_turn(tmp_path):
    path = tmp_path / "crab.wav"
    clip = with_pause("Tell me about the crab that lives next to the", "big rock in the harbour.", 600)
    write_wav(path, np.concatenate([silence(0.4), clip, silence(0.3)]))
    with FakeOllama(models=[MODEL]) as server:
        server.script(WARM, *[Reply.text("His name is Gus and he pinches.")] * 3)
        settings = settings_for(tmp_path, server.url, RUN_MODE="dory")
        out = tmp_path / "out"
        assert run_sim(settings, [path], out) == 0
        last_chat = [r for r in server.requests if r.get("messages")][-1]
    (turn,) = read_lines(out / "turns.jsonl")
    assert {"crab", "rock", "harbour"} <= words(turn["transcript"]) or {"crab", "rock", "harbor"} <= words(
        turn["transcript"]
    )
    users = [m["content"] for m in last_chat["messages"] if m["role"] == "user"]
    assert len(users) == 1 and "rock" in users[0].lower()


def test_an_answer_prepared_for_half_a_command_is_dropped_and_nothing_acts(tmp_path):
    """ "Turn on the ... kitchen lights": the first half is heard as cut off mid-way, so nothing is
    sent to Home Assistant until the whole command is in; HA gets it once, whole, and the
    conversation history holds it once."""
    from tests.helpers.home_assistant import FakeHomeAssistant

    path = tmp_path / "lights.wav"
    write_wav(
        path, np.concatenate([silence(0.4), with_pause("Turn on the", "kitchen lights, please.", 600), silence(0.3)])
    )
    with FakeOllama(models=[MODEL]) as server, FakeHomeAssistant() as ha:
        server.script(WARM)
        settings = settings_for(tmp_path, server.url, RUN_MODE="dory", HA_HOST=ha.url, HA_TOKEN="good-token")
        out = tmp_path / "out"
        assert run_sim(settings, [path], out) == 0
        chats = [r for r in server.requests if r.get("messages", [{}])[-1].get("role") == "user"]
        commands = [body["text"] for _, body in ha.requests]
    (turn,) = read_lines(out / "turns.jsonl")
    assert len(commands) == 1 and {"kitchen", "lights"} <= words(commands[0])
    assert chats == []  # Home Assistant handled it: no model was asked
    assert turn["decided_by"] == "home assistant" and turn["reply"] == "Turned on the lights"
    assert turn["tool_calls"][0]["name"] == "smart_home_command"
    assert turn["tool_calls"][0]["arguments"] == {"prompt": commands[0]}
    events = read_lines(out / "events.jsonl")
    assert [e["state"] for e in events].count("speaking") == 1  # nothing was said for the first half

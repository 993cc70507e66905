"""The conversation logic, fast: the real `Session` with scripted models, the real listener and
endpointer (an energy detector instead of Silero), and the simulated mic and speaker in real time.

Each test drives the session as a user would (presses, a tone for speech into the mic) and
checks only what can be observed: the states, the published turns, what the speaker played
and what the fakes were given. The slow end-to-end versions are in `test_session_e2e.py`.
"""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np

from core.audio.wav import read_wav
from core.config import ROOT
from core.errors import BackendError
from core.interfaces import BrainDone, TextDelta, ToolCall, ToolRecord, Transcript
from core.state import State
from tests.helpers.fakes import (
    RATE,
    SYSTEM_PROMPT,
    Rig,
    ToneSynthesizer,
    make_session,
    reply,
    running,
    silence,
    speech,
    utterance,
)

LATENCY_KEYS = ("endpoint", "stt", "llm_first_sentence", "tts_first_audio", "end_of_speech_to_first_audio")
_error_pcm, ERROR_WAV_RATE = read_wav(ROOT / "sounds" / "error.wav")
ERROR_WAV_SECONDS = len(_error_pcm) / ERROR_WAV_RATE


def run(scenario) -> None:
    """Run one async scenario with an overall bound, so a hang fails instead of stalling the suite."""
    asyncio.run(asyncio.wait_for(scenario, 30))


async def answered(rig: Rig, count: int, timeout: float = 10.0) -> None:
    """Wait until `count` turns are published and their audio has been heard."""
    await rig.wait_for(lambda: len(rig.records) >= count and not rig.speaker.is_playing, timeout, f"{count} turn(s)")


def test_press_and_one_question_is_answered_and_billy_listens_again(tmp_path):
    async def scenario():
        rig = make_session(tmp_path, ["What is the capital of France?"], [reply("Paris, of course. Fish know.")])
        async with running(rig):
            rig.session.press()
            asked = await rig.ask()
            await answered(rig, 1)
            await rig.wait_for(lambda: rig.state.state is State.LISTENING, 5, "listening again")
            assert rig.states[:4] == [State.LISTENING, State.THINKING, State.SPEAKING, State.LISTENING]
            (record,) = rig.records
            assert record.transcript == "What is the capital of France?"
            assert record.reply == "Paris, of course. Fish know."
            assert record.error == ""
            assert record.backends == {"stt": "scripted-stt", "llm": "scripted-brain", "tts": "tone-tts"}
            for key in LATENCY_KEYS:
                assert record.latency_ms[key] >= 0, key
            assert " ".join(rig.synthesizer.texts) == "Paris, of course. Fish know."
            # Every word was heard, after the question ended.
            words = rig.synthesizer.seconds_for(record.reply)
            assert rig.played.sound_seconds(after=asked.ended_at) >= words - 0.02
            assert rig.played.sound_seconds(before=asked.ended_at) == 0
            assert rig.brain.calls[0][0] == {"role": "system", "content": SYSTEM_PROMPT}
            assert rig.brain.user_messages() == ["What is the capital of France?"]
            (stt,) = rig.transcriber.calls
            assert 0.3 < stt.seconds < 1.0 and stt.sample_rate == RATE

    run(scenario())


def test_follow_up_carries_the_first_exchange_as_history(tmp_path):
    async def scenario():
        rig = make_session(
            tmp_path,
            ["What is the capital of France?", "Tell me a joke."],
            [reply("Paris."), reply("Why did the fish blush? The sea weed.")],
        )
        async with running(rig):
            rig.session.press()
            await rig.ask()
            await answered(rig, 1)
            await rig.ask()
            await answered(rig, 2)
            assert [r.reply for r in rig.records] == ["Paris.", "Why did the fish blush? The sea weed."]
            assert rig.brain.calls[1] == [
                {"role": "system", "content": SYSTEM_PROMPT},
                {"role": "user", "content": "What is the capital of France?"},
                {"role": "assistant", "content": "Paris."},
                {"role": "user", "content": "Tell me a joke."},
            ]
            assert rig.session.busy

    run(scenario())


def test_dory_mode_answers_once_then_goes_idle(tmp_path):
    async def scenario():
        rig = make_session(tmp_path, ["What is the capital of France?"], [reply("Paris.")], RUN_MODE="dory")
        async with running(rig):
            rig.session.press()
            await rig.ask()
            await answered(rig, 1)
            await rig.idle(timeout=2)  # no mic timeout needed: the session ends right after the answer
            assert rig.states == [State.LISTENING, State.THINKING, State.SPEAKING, State.IDLE]
            assert len(rig.brain.calls) == 1 and len(rig.transcriber.calls) == 1

    run(scenario())


def test_barge_in_press_silences_billy_at_once_and_he_listens_again(tmp_path):
    long_story = " ".join(["Let me tell you a very long story about the sea."] * 5)

    async def scenario():
        rig = make_session(
            tmp_path,
            ["Tell me a story.", "Stop. What time is it?"],
            [reply(long_story, delay=0.005), reply("Short answer.")],
        )
        async with running(rig):
            started = time.monotonic()
            rig.session.press()
            await rig.ask()
            await rig.wait_for(lambda: rig.state.state is State.SPEAKING, 10, "speaking")
            await asyncio.sleep(max(0.2, started + 0.7 - time.monotonic()))  # well clear of a double press
            assert rig.speaker.is_playing
            pressed = time.monotonic()
            rig.session.press()
            assert rig.speaker.heard_until - pressed < 0.2, "the speaker kept its queue after the press"
            await rig.wait_for(lambda: not rig.speaker.is_playing, 0.5, "speaker silent")
            await rig.wait_for(lambda: rig.state.state is State.LISTENING, 2, "listening after the press")
            assert rig.played.sound_seconds(after=pressed + 0.15) == 0
            (interrupted,) = rig.records
            assert interrupted.error.startswith("interrupted (barge-in)")
            assert interrupted.transcript == "Tell me a story."
            await rig.ask()
            await answered(rig, 2)
            assert rig.records[1].reply == "Short answer." and rig.records[1].error == ""
            assert rig.session.busy

    run(scenario())


def test_double_press_ends_the_session(tmp_path):
    async def scenario():
        rig = make_session(tmp_path, MIC_TIMEOUT_SECONDS="10")
        async with running(rig):
            first = time.monotonic()
            rig.session.press()
            await rig.wait_for(lambda: rig.session.awaiting_speech, 5, "listening")
            await asyncio.sleep(max(0.0, first + 0.65 - time.monotonic()))  # not a double press with the first
            rig.session.press()  # a press while listening, with no turn to interrupt: nothing happens
            assert rig.session.busy
            rig.session.press()
            await rig.idle(timeout=2)
            assert rig.states == [State.LISTENING, State.IDLE]
            assert rig.brain.calls == [] and rig.records == []

    run(scenario())


def test_resumed_speech_after_a_pause_is_one_turn(tmp_path):
    """Paused longer than END_SILENCE_MS, shorter than PAUSE_TOLERANCE_MS: the answer to the
    first half may be prepared, but it is dropped unheard and the whole sentence is one turn."""

    def transcript(seconds: float) -> str:
        return "I would like to know the weather in Paris." if seconds > 0.9 else "I would like to know"

    def answer(messages) -> list:
        return reply("Sunny, with fish." if "weather" in messages[-1]["content"] else "Know what?")

    async def scenario():
        rig = make_session(tmp_path, [transcript], [answer], END_SILENCE_MS="400", PAUSE_TOLERANCE_MS="700")
        async with running(rig):
            rig.session.press()
            clip = np.concatenate([silence(0.06), speech(0.22), silence(0.55), speech(0.22)])
            handle = await rig.ask(clip)
            await answered(rig, 1)
            (record,) = rig.records
            assert record.transcript == "I would like to know the weather in Paris."
            assert record.reply == "Sunny, with fish." and record.error == ""
            # The final transcript was of the whole utterance: both halves and the pause.
            assert rig.transcriber.calls[-1].seconds > 0.22 + 0.55 + 0.22
            assert any(c.seconds < 0.8 for c in rig.transcriber.calls), "the first half was never taken as an end"
            # The brain saw the user's words once, whole, after the system prompt.
            assert rig.brain.calls[-1] == [
                {"role": "system", "content": SYSTEM_PROMPT},
                {"role": "user", "content": "I would like to know the weather in Paris."},
            ]
            # Nothing was heard before the user had finished the second half.
            assert rig.played.sound_seconds(before=handle.ended_at) == 0
            assert rig.played.first_sound() is not None

    run(scenario())


def test_tool_round_then_words_then_end_conversation(tmp_path):
    async def scenario():
        rig = make_session(
            tmp_path,
            ["Goodbye Billy."],
            [[ToolCall("end_conversation", {}, id="c1")], reply("Goodbye, friend.")],
        )
        async with running(rig):
            rig.session.press()
            await rig.ask()
            await answered(rig, 1)
            await rig.idle(timeout=2)
            (record,) = rig.records
            assert record.reply == "Goodbye, friend."
            assert record.tool_calls == [ToolRecord("end_conversation", {}, "bye")]
            assert [c.name for c in rig.tools.calls] == ["end_conversation"]
            second = rig.brain.calls[1]
            assert second[0]["role"] == "system"
            assert second[-2]["role"] == "assistant" and second[-2]["tool_calls"][0]["id"] == "c1"
            assert second[-1] == {"role": "tool", "content": "bye", "tool_call_id": "c1", "name": "end_conversation"}
            assert rig.synthesizer.texts == ["Goodbye, friend."]
            # Answered in words, heard, then over: no further listening.
            speaking = rig.when(State.SPEAKING)
            assert speaking is not None and rig.states[-2:] == [State.SPEAKING, State.IDLE]

    run(scenario())


def test_song_tool_plays_the_song_after_the_answer(tmp_path):
    async def scenario():
        rig = make_session(
            tmp_path,
            ["Sing me something."],
            [[TextDelta("Here it comes! "), ToolCall("play_song", {"song": "reef"}, id="s1")], [BrainDone()]],
            RUN_MODE="dory",
        )
        async with running(rig):
            rig.session.press()
            await rig.ask()
            await rig.idle(timeout=5)
            assert rig.body.performed == ["Reef Shuffle"]
            assert rig.states == [State.LISTENING, State.THINKING, State.SPEAKING, State.PLAYING_SONG, State.IDLE]
            (record,) = rig.records
            assert record.reply == "Here it comes!"
            assert record.tool_calls == [ToolRecord("play_song", {"song": "reef"}, "Playing Reef Shuffle.")]
            # Words were said with the call, so the brain gets the tool result and may add more (here nothing).
            assert (
                rig.brain.calls[1][-1]["role"] == "tool"
                and rig.brain.calls[1][-1]["content"] == "Playing Reef Shuffle."
            )

    run(scenario())


def test_stt_or_brain_failure_plays_the_error_cue_then_idle(tmp_path):
    """Two sessions side by side (error.wav is 3 s long): speech to text fails in one, the brain
    fails mid-answer in the other. Each publishes the error, plays error.wav whole, and ends idle."""

    async def stt_fails():
        rig = make_session(tmp_path, [BackendError("Whisper is dead.")])
        async with running(rig):
            rig.session.press()
            asked = await rig.ask()
            await rig.wait_for(lambda: len(rig.records) == 1, 5, "turn recorded")
            await rig.idle(timeout=ERROR_WAV_SECONDS + 3)
            (record,) = rig.records
            assert record.error == "Whisper is dead."
            assert rig.states == [State.LISTENING, State.THINKING, State.ERROR, State.IDLE]
            assert rig.brain.calls == []
            # error.wav (its own rate, unlike the voice) was heard whole, after the question, before idle.
            error_at = rig.when(State.ERROR)
            assert rig.played.sound_seconds(after=asked.ended_at, sample_rate=ERROR_WAV_RATE) > ERROR_WAV_SECONDS * 0.8
            assert rig.when(State.IDLE, after=error_at) - error_at >= ERROR_WAV_SECONDS * 0.9

    async def brain_fails():
        rig = make_session(
            tmp_path,
            ["Tell me about whales."],
            [[TextDelta("Whales are big fish. "), 0.05, BackendError("Ollama went away.")]],
        )
        async with running(rig):
            rig.session.press()
            await rig.ask()
            await rig.wait_for(lambda: len(rig.records) == 1, 5, "turn recorded")
            await rig.idle(timeout=ERROR_WAV_SECONDS + 3)
            (record,) = rig.records
            assert record.error == "Ollama went away."
            assert record.transcript == "Tell me about whales."
            assert State.ERROR in rig.states and rig.states[-1] is State.IDLE
            assert rig.states.index(State.ERROR) < rig.states.index(State.IDLE)
            assert rig.played.sound_seconds(sample_rate=ERROR_WAV_RATE) > ERROR_WAV_SECONDS * 0.8

    async def both():
        await asyncio.gather(stt_fails(), brain_fails())

    run(both())


def test_nothing_heard_twice_ends_the_session(tmp_path):
    async def scenario():
        rig = make_session(tmp_path, ["", Transcript("", rejected_reason="noise")], FOLLOW_UP_RETRY_LIMIT="1")
        async with running(rig):
            rig.session.press()
            await rig.ask()
            await rig.wait_for(lambda: len(rig.transcriber.calls) == 1, 5, "first transcript")
            assert rig.session.busy  # one miss is allowed
            await rig.ask()
            await rig.idle(timeout=3)
            assert len(rig.transcriber.calls) == 2
            assert rig.brain.calls == [] and rig.records == [] and rig.played.first_sound() is None

    run(scenario())


def test_silence_for_the_mic_timeout_ends_the_session(tmp_path):
    async def scenario():
        rig = make_session(tmp_path, MIC_TIMEOUT_SECONDS="0.5")
        async with running(rig):
            pressed = time.monotonic()
            rig.session.press()
            await rig.idle(timeout=4)
            waited = rig.when(State.IDLE) - pressed
            assert 0.45 <= waited < 2.0, waited
            assert rig.states == [State.LISTENING, State.IDLE]
            assert rig.transcriber.calls == []

    run(scenario())


def test_announcement_is_spoken_and_a_prompt_announcement_asks_the_brain(tmp_path):
    async def scenario():
        rig = make_session(tmp_path, [], [reply("Why? To get to the other tide.")])
        async with running(rig):
            await asyncio.wait_for(rig.session.say("Hello there. Dinner is served."), 5)
            assert rig.states == [State.SPEAKING, State.IDLE]
            assert " ".join(rig.synthesizer.texts) == "Hello there. Dinner is served."
            assert rig.played.sound_seconds() >= rig.synthesizer.seconds_for("Hello there. Dinner is served.") - 0.02
            assert rig.brain.calls == [] and not rig.session.busy

            await asyncio.wait_for(rig.session.say("Tell a joke about fish.", prompt=True), 5)
            assert rig.brain.calls == [
                [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": "Tell a joke about fish."}]
            ]
            (record,) = rig.records
            assert record.transcript == "Tell a joke about fish."
            assert record.reply == "Why? To get to the other tide."
            assert " ".join(rig.synthesizer.texts[-2:]) == "Why? To get to the other tide."
            assert rig.state.state is State.IDLE and not rig.session.busy
            assert rig.transcriber.calls == []

    run(scenario())


def test_sing_plays_an_installed_song_and_refuses_an_unknown_one(tmp_path):
    async def scenario():
        rig = make_session(tmp_path)
        async with running(rig):
            assert await asyncio.wait_for(rig.session.sing("Never Heard Of It"), 2) is False
            assert rig.states == [] and rig.body.performed == []
            assert await asyncio.wait_for(rig.session.sing("reef"), 5) is True
            assert rig.body.performed == ["Reef Shuffle"]
            assert rig.states == [State.PLAYING_SONG, State.IDLE]
            assert rig.played.sound_seconds() >= rig.body.song_seconds - 0.02

    run(scenario())


def test_billy_does_not_hear_himself_half_duplex(tmp_path):
    """Speech fed into the mic while Billy speaks is ignored: no transcript, no second turn."""
    long_answer = "The sea is deep and wide and full of fish, and the fish are happy in it."  # 0.64 s

    async def scenario():
        rig = make_session(tmp_path, ["Tell me about the sea."], [reply(long_answer)])
        async with running(rig):
            rig.session.press()
            await rig.ask()
            await rig.wait_for(lambda: rig.state.state is State.SPEAKING, 10, "speaking")
            echo = await rig.say_into_mic(utterance(0.25, lead=0.03))
            assert rig.speaker.is_playing, "the answer ended before the echo did: make it longer"
            assert echo.ended_at < rig.speaker.heard_until
            # Had the echo been heard, its turn would have started by the time Billy listens again.
            await rig.wait_for(lambda: rig.session.awaiting_speech, 5, "listening again")
            await asyncio.sleep(0.3)
            assert rig.session.awaiting_speech
            assert len(rig.records) == 1 and len(rig.transcriber.calls) == 1 and len(rig.brain.calls) == 1
            assert rig.states == [State.LISTENING, State.THINKING, State.SPEAKING, State.LISTENING]

    run(scenario())


class KeptTalking(AssertionError):
    """Billy's voice went on after a barge-in press."""


class SpeechMeetsPress(ToneSynthesizer):
    """Speaks `trigger`'s sentence as one long chunk (as piper does) that reaches the loop in the same
    iteration as a button press: the loop is busy for 50 ms (any slow callback) while the TTS thread
    hands over the chunk and the button thread the press, both through `call_soon_threadsafe`."""

    def __init__(self, trigger: str):
        super().__init__()
        self.trigger = trigger
        self.loop: asyncio.AbstractEventLoop | None = None
        self.press = lambda: None
        self.pressed_at: float | None = None

    def synthesize(self, text: str):
        if self.trigger not in text:
            yield from super().synthesize(text)
            return
        self.texts.append(text)
        assert self.loop is not None
        busy = threading.Event()

        def slow_callback() -> None:
            busy.set()
            time.sleep(0.05)

        self.loop.call_soon_threadsafe(slow_callback)
        busy.wait(2)
        yield speech(0.5, freq=440, amplitude=6000)  # handed to the loop while it is busy
        self.pressed_at = time.monotonic()
        self.loop.call_soon_threadsafe(self.press)  # the button thread, a moment later


def test_barge_in_silences_a_chunk_that_arrives_with_the_press(tmp_path):
    async def scenario():
        synth = SpeechMeetsPress("Second")
        steps = [TextDelta("First sentence is here. "), 0.25, TextDelta("Second sentence is here. "), 3.0]
        rig = make_session(
            tmp_path, ["Tell me three things."], [[*steps, TextDelta("Third."), BrainDone()]], synthesizer=synth
        )
        synth.loop = asyncio.get_running_loop()
        synth.press = rig.session.press
        async with running(rig):
            rig.session.press()
            await rig.ask()
            await rig.wait_for(lambda: len(rig.records) == 1, 5, "the barge-in recorded")
            assert rig.records[0].error.startswith("interrupted (barge-in)")
            assert synth.pressed_at is not None
            await rig.wait_for(lambda: not rig.speaker.is_playing, 3, "speaker silent")
            late = rig.played.sound_seconds(after=synth.pressed_at + 0.15)
            if late > 0:
                raise KeptTalking(f"{late:.2f} s of Billy's voice was heard after the press")

    run(scenario())

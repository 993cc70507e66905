"""Scripted stand-ins for Billy's models, and a builder for a real `Session` around them.

Everything here is small and observable: each fake records what it was given, and the
session runs with the real listener, endpointer (with an energy detector instead of Silero),
simulated mic and speaker on the play clock, so gating, holding and barge-in are the real
code. No Whisper, piper or llama model is loaded.

Speech is a loud amplitude-modulated 1 kHz tone (`speech(seconds)`), silence is zeros.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import math
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from core.audio.simulated import InputHandle, SimulatedMicrophone, SimulatedSpeaker
from core.config import ROOT, Settings, load_settings
from core.errors import BackendError
from core.interfaces import (
    BrainDone,
    Message,
    PlayedBlock,
    Speaker,
    TextDelta,
    ToolCall,
    ToolOutcome,
    ToolSchema,
    Transcript,
    TurnRecord,
)
from core.listen.endpoint import Endpointer
from core.state import State, StateChange, StateOwner
from core.talk.session import Session
from core.talk.turn import SessionHooks

RATE = 16000
"""Rate (hertz) of the mic, the fake voice and everything fed in."""
SYSTEM_PROMPT = "You are Billy, a talking fish."

# --- audio ------------------------------------------------------------------------------


def silence(seconds: float) -> np.ndarray:
    return np.zeros(round(seconds * RATE), dtype=np.int16)


def speech(seconds: float, freq: float = 1000.0, amplitude: float = 8000.0) -> np.ndarray:
    """A stand-in for a voice: a 1 kHz tone, amplitude-modulated at 4 Hz like syllables,
    never quieter than -22 dBFS, well above the 250 Hz high-pass the endpointer measures on."""
    t = np.arange(round(seconds * RATE)) / RATE
    envelope = 0.75 + 0.25 * np.sin(2 * np.pi * 4 * t)
    return (amplitude * envelope * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def utterance(seconds: float = 0.18, lead: float = 0.04) -> np.ndarray:
    """Silence (so the endpointer learns its floor) then `seconds` of speech."""
    return np.concatenate([silence(lead), speech(seconds)])


class EnergyVad:
    """A voice detector for tones: probability 1 when a window's RMS is above `threshold_dbfs`."""

    def __init__(self, threshold_dbfs: float = -35.0):
        self.threshold_dbfs = threshold_dbfs

    def __call__(self, window: np.ndarray) -> float:
        x = window.astype(np.float64)
        rms = math.sqrt(float(np.mean(x * x))) if x.size else 0.0
        level = 20 * math.log10(rms / 32768.0 + 1e-12)
        return 1.0 if level > self.threshold_dbfs else 0.0

    def reset(self) -> None:
        pass


# --- speech to text ---------------------------------------------------------------------

TranscriptStep = Transcript | str | BaseException | Callable[[float], "Transcript | str"]
"""A scripted answer: a transcript, its text, an exception to raise, or a function of the
utterance's length (seconds) returning either."""


@dataclass(frozen=True)
class SttCall:
    seconds: float
    """Length of the audio it was given."""
    sample_rate: int
    text: str
    """What it answered ("" when it raised)."""


class ScriptedTranscriber:
    """Answers each `transcribe` with the next step of its script; records every call.

    Runs on the listener's STT thread, hence the lock. When the script is used up it raises
    AssertionError (and sets `overrun`), so an unexpected extra call shows."""

    def __init__(self, script: Sequence[TranscriptStep] = (), name: str = "scripted-stt"):
        self.name = name
        self._script = list(script)
        self._lock = threading.Lock()
        self.calls: list[SttCall] = []
        self.overrun = False

    @property
    def last_used(self) -> str:
        return self.name

    def transcribe(self, pcm: np.ndarray, sample_rate: int) -> Transcript:
        seconds = len(pcm) / sample_rate
        with self._lock:
            if not self._script:
                self.overrun = True
                self.calls.append(SttCall(seconds, sample_rate, ""))
                raise AssertionError(f"ScriptedTranscriber: no scripted transcript left for {seconds:.2f} s of audio")
            step = self._script[0]
            if not callable(step) or isinstance(step, BaseException):
                self._script.pop(0)
        if callable(step) and not isinstance(step, BaseException):
            step = step(seconds)  # a function answers every remaining call
        if isinstance(step, BaseException):
            with self._lock:
                self.calls.append(SttCall(seconds, sample_rate, ""))
            raise step
        transcript = Transcript(step) if isinstance(step, str) else step
        with self._lock:
            self.calls.append(SttCall(seconds, sample_rate, transcript.text))
        return transcript


# --- the brain --------------------------------------------------------------------------

BrainStep = TextDelta | ToolCall | BrainDone | BaseException | float
"""One item of a scripted stream: an event to yield, an exception to raise there, or a delay (seconds)."""
BrainReply = Sequence[BrainStep] | Callable[[list[Message]], Sequence[BrainStep]]


def reply(text: str, words_per_delta: int = 2, delay: float = 0.0) -> list[BrainStep]:
    """A streamed answer in words: TextDelta pieces of `words_per_delta` words, then BrainDone."""
    words = text.split(" ")
    steps: list[BrainStep] = []
    for i in range(0, len(words), words_per_delta):
        piece = " ".join(words[i : i + words_per_delta])
        if delay:
            steps.append(delay)
        steps.append(TextDelta(piece if i + words_per_delta >= len(words) else piece + " "))
    steps.append(BrainDone(prompt_tokens=10, eval_tokens=len(words)))
    return steps


class ScriptedBrain:
    """Streams the next scripted reply on each `chat`; records the messages of every call.

    A reply is a list of steps or a function of the messages returning one; a function
    stays and answers every later call. With the script used up, `chat` raises AssertionError."""

    def __init__(self, replies: Sequence[BrainReply] = (), name: str = "scripted-brain"):
        self.name = name
        self._replies = list(replies)
        self.calls: list[list[Message]] = []
        self.tools_seen: list[list[ToolSchema]] = []
        self.warmed: list[str] = []

    @property
    def last_used(self) -> str:
        return self.name

    def user_messages(self, call: int = -1) -> list[str]:
        return [m["content"] for m in self.calls[call] if m["role"] == "user"]

    async def chat(self, messages: list[Message], tools: list[ToolSchema]) -> AsyncIterator[Any]:
        self.calls.append(copy.deepcopy(messages))
        self.tools_seen.append(tools)
        if not self._replies:
            raise AssertionError(f"ScriptedBrain: no scripted reply left for call {len(self.calls)}")
        step = self._replies[0]
        steps = step(messages) if callable(step) else self._replies.pop(0)
        for item in steps:
            if isinstance(item, BaseException):
                raise item
            if isinstance(item, int | float):
                await asyncio.sleep(item)
                continue
            yield item

    async def warm(self, system_prompt: str, tools: list[ToolSchema]) -> None:
        self.warmed.append(system_prompt)

    async def healthy(self) -> bool:
        return True


# --- text to speech ---------------------------------------------------------------------


class ToneSynthesizer:
    """Speaks each word as `word_ms` of a 440 Hz tone, one chunk per word; records every text."""

    def __init__(
        self,
        word_ms: int = 40,
        sample_rate: int = RATE,
        fail_on: str | None = None,
        name: str = "tone-tts",
    ):
        self.name = name
        self.sample_rate = sample_rate
        self.word_ms = word_ms
        self.fail_on = fail_on
        """Raise BackendError for a text containing this."""
        self._lock = threading.Lock()
        self.texts: list[str] = []

    @property
    def last_used(self) -> str:
        return self.name

    def seconds_for(self, text: str) -> float:
        return len(text.split()) * self.word_ms / 1000

    def synthesize(self, text: str) -> Iterator[np.ndarray]:
        with self._lock:
            self.texts.append(text)
        if self.fail_on is not None and self.fail_on in text:
            raise BackendError(f"ToneSynthesizer was told to fail on {self.fail_on!r}.")
        n = round(self.word_ms * self.sample_rate / 1000)
        t = np.arange(n) / self.sample_rate
        word = (6000 * np.sin(2 * np.pi * 440 * t)).astype(np.int16)
        for _ in text.split():
            yield word.copy()


# --- tools, songs, body -----------------------------------------------------------------


def _schema(name: str, description: str, properties: dict[str, Any] | None = None) -> ToolSchema:
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": description,
            "parameters": {"type": "object", "properties": properties or {}, "required": list(properties or {})},
        },
    }


DEFAULT_OUTCOMES: dict[str, ToolOutcome] = {
    "end_conversation": ToolOutcome("bye", end_conversation=True),
    "play_song": ToolOutcome("Playing Reef Shuffle.", song="Reef Shuffle"),
    "get_time": ToolOutcome("It is noon."),
}


class FakeTools:
    """The Tools protocol with fixed outcomes per tool name; records every call."""

    def __init__(self, outcomes: dict[str, ToolOutcome] | None = None):
        self.outcomes = dict(DEFAULT_OUTCOMES if outcomes is None else outcomes)
        self.calls: list[ToolCall] = []

    def names(self) -> list[str]:
        return list(self.outcomes)

    def schemas(self) -> list[ToolSchema]:
        props = {"play_song": {"song": {"type": "string", "description": "title"}}}
        return [_schema(name, f"The {name} tool.", props.get(name)) for name in self.outcomes]

    async def call(self, call: ToolCall) -> ToolOutcome:
        self.calls.append(call)
        outcome = self.outcomes.get(call.name)
        if outcome is None:
            return ToolOutcome(f"There is no tool called {call.name}.", error=True)
        return outcome


@dataclass(frozen=True)
class FakeSong:
    title: str


class FakeSongs:
    def __init__(self, titles: Sequence[str] = ("Reef Shuffle",)):
        self._songs = [FakeSong(t) for t in titles]

    def titles(self) -> list[str]:
        return [s.title for s in self._songs]

    def find(self, name: str) -> FakeSong | None:
        wanted = name.lower().strip()
        return next((s for s in self._songs if wanted and wanted in s.title.lower()), None)


class FakeBody:
    """Records motor commands; `perform` plays `song_seconds` of a 200 Hz tone and waits until heard."""

    def __init__(self, song_seconds: float = 0.15):
        self.song_seconds = song_seconds
        self.stops = 0
        self.finished: list[float] = []
        self.performed: list[str] = []

    def stop(self) -> None:
        self.stops += 1

    def speech_finished(self, heard_until: float) -> None:
        self.finished.append(heard_until)

    async def perform(self, song: Any, speaker: Speaker) -> None:
        self.performed.append(song.title)
        t = np.arange(round(self.song_seconds * RATE)) / RATE
        speaker.play((5000 * np.sin(2 * np.pi * 200 * t)).astype(np.int16), RATE)
        try:
            while speaker.is_playing:
                await asyncio.sleep(0.01)
        except asyncio.CancelledError:
            speaker.clear()
            raise


# --- what the speaker played ------------------------------------------------------------


@dataclass(frozen=True)
class Played:
    time: float
    """Play-clock time its first sample is heard."""
    seconds: float
    sample_rate: int
    loud: bool
    """Holds a non-zero sample."""


class SpeakerLog:
    """A speaker listener keeping every played block (on the audio thread, hence the lock)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._blocks: list[Played] = []

    def __call__(self, block: PlayedBlock) -> None:
        played = Played(block.time, len(block.pcm) / block.sample_rate, block.sample_rate, bool(np.any(block.pcm)))
        with self._lock:
            self._blocks.append(played)

    def blocks(self) -> list[Played]:
        with self._lock:
            return list(self._blocks)

    def sound_seconds(self, after: float = 0.0, before: float = math.inf, sample_rate: int | None = None) -> float:
        """Seconds of non-silent audio heard between `after` and `before` (play clock)."""
        return sum(
            b.seconds
            for b in self.blocks()
            if b.loud and after <= b.time < before and (sample_rate is None or b.sample_rate == sample_rate)
        )

    def first_sound(self, after: float = 0.0) -> float | None:
        return next((b.time for b in self.blocks() if b.loud and b.time >= after), None)


# --- the rig ----------------------------------------------------------------------------

DEFAULT_ENV = {
    "MIC_TIMEOUT_SECONDS": "2",
    "END_SILENCE_MS": "250",
    "PAUSE_TOLERANCE_MS": "250",
    "MIN_SPEECH_MS": "100",
    "HALF_DUPLEX_TAIL_MS": "100",
    "FOLLOW_UP_RETRY_LIMIT": "1",
}
"""Short waits so each test takes seconds; the resume test sets the tolerance it needs."""


@dataclass
class Rig:
    """A real Session around fakes, and what it did."""

    settings: Settings
    session: Session
    state: StateOwner
    mic: SimulatedMicrophone
    speaker: SimulatedSpeaker
    transcriber: ScriptedTranscriber
    brain: ScriptedBrain
    synthesizer: ToneSynthesizer
    tools: FakeTools
    songs: FakeSongs
    body: FakeBody
    played: SpeakerLog
    changes: list[StateChange] = field(default_factory=list)
    records: list[TurnRecord] = field(default_factory=list)

    @property
    def states(self) -> list[State]:
        return [c.current for c in self.changes]

    def states_since(self, index: int) -> list[State]:
        return [c.current for c in self.changes[index:]]

    def when(self, state: State, after: float = 0.0) -> float | None:
        """Play-clock time of the first change into `state` at or after `after`."""
        return next((c.time for c in self.changes if c.current is state and c.time >= after), None)

    def describe(self) -> str:
        return " -> ".join(f"{c.current.value}({c.reason})" for c in self.changes)

    # --- driving it ---------------------------------------------------------------------

    async def wait_for(self, condition: Callable[[], bool], timeout: float, what: str = "") -> None:
        """Poll `condition` until true; fail with the state history after `timeout` seconds."""

        async def poll() -> None:
            while not condition():
                await asyncio.sleep(0.01)

        try:
            await asyncio.wait_for(poll(), timeout)
        except TimeoutError:
            raise AssertionError(
                f"not met within {timeout} s: {what or condition}; states: {self.describe()}"
            ) from None

    async def say_into_mic(self, pcm: np.ndarray, timeout: float = 10.0) -> InputHandle:
        """Feed `pcm` into the mic and return once its last sample has been captured."""
        handle = self.mic.feed(pcm, RATE)
        await self.wait_for(handle.done.is_set, timeout, "mic clip captured")
        return handle

    async def ask(self, pcm: np.ndarray | None = None, timeout: float = 10.0) -> InputHandle:
        """Wait until Billy listens with nobody talking, then speak `pcm` (a short question by default)."""
        await self.wait_for(lambda: self.session.awaiting_speech, timeout, "session awaiting speech")
        return await self.say_into_mic(utterance() if pcm is None else pcm, timeout)

    async def idle(self, timeout: float = 10.0) -> None:
        await self.wait_for(lambda: not self.session.busy and self.state.state is State.IDLE, timeout, "idle")

    async def close(self) -> None:
        try:
            await asyncio.wait_for(self.session.close(), 5)
        finally:
            self.speaker.stop()
            self.mic.stop()


def make_session(
    tmp_path: Path,
    transcripts: Sequence[TranscriptStep] = (),
    replies: Sequence[BrainReply] = (),
    *,
    tools: FakeTools | None = None,
    synthesizer: ToneSynthesizer | None = None,
    body: FakeBody | None = None,
    songs: FakeSongs | None = None,
    speaker_latency: float = 0.05,
    understanding: Any = None,
    **env: str,
) -> Rig:
    """A real Session with scripted fakes, the real endpointer (energy detector) and simulated devices.

    `env` overrides settings by variable name (e.g. `RUN_MODE="dory"`) over `DEFAULT_ENV`.
    Build it inside the test's event loop, then `await start(rig)`.
    """
    settings = load_settings(tmp_path / "absent.env", {**DEFAULT_ENV, **env})
    state = StateOwner()
    mic = SimulatedMicrophone(RATE)
    speaker = SimulatedSpeaker(latency_s=speaker_latency, block_ms=10, record_rate=RATE)
    transcriber = ScriptedTranscriber(transcripts)
    brain = ScriptedBrain(replies)
    synthesizer = synthesizer or ToneSynthesizer()
    tools = tools or FakeTools()
    songs = songs or FakeSongs()
    body = body or FakeBody()
    played = SpeakerLog()
    speaker.add_listener(played)
    hooks = SessionHooks()
    session = Session(
        settings,
        state,
        mic,
        speaker,
        transcriber,
        brain,
        synthesizer,
        tools,
        lambda: SYSTEM_PROMPT,
        lambda: None,
        ROOT / "sounds",
        body=body,
        songs=songs,
        hooks=hooks,
        endpointer=Endpointer(settings.endpoint, RATE, vad=EnergyVad()),
        understanding=understanding,
    )
    rig = Rig(settings, session, state, mic, speaker, transcriber, brain, synthesizer, tools, songs, body, played)
    state.subscribe(rig.changes.append)
    hooks.on_turn.append(rig.records.append)
    return rig


async def start(rig: Rig) -> Rig:
    rig.speaker.start()
    await rig.session.start()
    return rig


@contextlib.asynccontextmanager
async def running(rig: Rig) -> AsyncIterator[Rig]:
    """Start the rig's session and devices; close them all on the way out."""
    await start(rig)
    try:
        yield rig
    finally:
        await rig.close()

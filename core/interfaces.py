"""The messages and interfaces between the stages of a turn.

Data flows one way: mic → endpoint → STT → brain → TTS → speaker → motors. Every clock
value in Billy is on one clock, `time.monotonic()` seconds (the *play clock*): the mic
stamps frames with it and the speaker reports when each block will be heard on it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

# --- audio ------------------------------------------------------------------------------


@dataclass(frozen=True)
class AudioFrame:
    """A block of mono PCM16 samples from the mic, in capture order.

    `pcm` is int16 at the mic's sample rate (hertz); `time` is the play-clock time (seconds)
    at which its first sample was captured.
    """

    pcm: np.ndarray
    time: float


@dataclass(frozen=True)
class PlayedBlock:
    """A block of samples as it leaves the speaker.

    `pcm` is int16 mono at the speaker's `sample_rate` (the rate `play()` was given);
    `time` is the play-clock time (seconds) at which its first sample is *heard* (PortAudio's
    output DAC time, or the simulated speaker's clock plus its latency). Blocks of silence
    are reported too, so observers see a continuous timeline while audio plays.
    """

    pcm: np.ndarray
    time: float
    sample_rate: int


FrameHandler = Callable[[AudioFrame], None]
PlayedHandler = Callable[[PlayedBlock], None]


class Microphone(Protocol):
    sample_rate: int
    """Rate (hertz) of the frames handed out, 16000."""

    def start(self, on_frame: FrameHandler) -> None:
        """Start capturing; `on_frame` runs on the audio thread and must only hand over."""

    def stop(self) -> None: ...


class Speaker(Protocol):
    sample_rate: int
    """Rate (hertz) of the samples `play` takes; the device may run at another."""

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def play(self, pcm: np.ndarray, sample_rate: int) -> None:
        """Queue int16 mono samples; returns at once. They are resampled if needed."""

    def clear(self) -> None:
        """Drop everything queued and fall silent now (barge-in)."""

    def add_listener(self, on_played: PlayedHandler) -> None:
        """`on_played` runs on the audio thread for every block as it is played."""

    @property
    def is_playing(self) -> bool:
        """True while queued samples remain or have not yet been heard."""

    @property
    def heard_until(self) -> float:
        """Play-clock time (seconds) at which the last queued sample will have been heard."""


# --- speech to text ---------------------------------------------------------------------


@dataclass(frozen=True)
class Transcript:
    """What a transcriber heard. `text` is empty when the audio held no real speech."""

    text: str
    language: str = "en"
    rejected_reason: str = ""
    """Why a candidate transcript was thrown away (hallucination on noise, ...), for logs."""


@runtime_checkable
class Transcriber(Protocol):
    name: str

    @property
    def last_used(self) -> str:
        """The backend that answered last (a hybrid's choice; a single backend's own name)."""

    def transcribe(self, pcm: np.ndarray, sample_rate: int) -> Transcript:
        """Blocking; run it in an executor thread, never on the loop or an audio thread."""


# --- the brain --------------------------------------------------------------------------


@dataclass(frozen=True)
class TextDelta:
    """A piece of the reply as the model streams it."""

    text: str


@dataclass(frozen=True)
class ToolCall:
    """The model asks for a tool. `arguments` is what it sent: a dict when it parsed, else the raw text."""

    name: str
    arguments: dict[str, Any] | str
    id: str = ""


@dataclass(frozen=True)
class BrainDone:
    """Last event of a stream; `prompt_tokens` and `eval_tokens` when the backend says."""

    prompt_tokens: int = 0
    eval_tokens: int = 0


BrainEvent = TextDelta | ToolCall | BrainDone

Message = dict[str, Any]
"""A chat message in Ollama/OpenAI form: role, content, and tool_calls / tool_call_id."""

ToolSchema = dict[str, Any]
"""A tool in OpenAI function form: {"type": "function", "function": {name, description, parameters}}."""


@runtime_checkable
class Brain(Protocol):
    name: str

    @property
    def last_used(self) -> str:
        """The backend that answered last (a hybrid's choice; a single backend's own name)."""

    def chat(self, messages: list[Message], tools: list[ToolSchema]) -> AsyncIterator[BrainEvent]:
        """Stream one assistant step: text deltas and tool calls, then BrainDone.

        Raises BackendError when the service is dead or answers garbage.
        """

    async def warm(self, system_prompt: str, tools: list[ToolSchema]) -> None:
        """Load the model and prime its prompt cache with the constant system prompt."""

    async def healthy(self) -> bool:
        """Cheap check that the backend can answer now."""


# --- text to speech ---------------------------------------------------------------------


@runtime_checkable
class Synthesizer(Protocol):
    name: str

    @property
    def sample_rate(self) -> int:
        """Rate (hertz) of the chunks it yields (a hybrid: of the backend that yielded the last chunk)."""

    @property
    def last_used(self) -> str:
        """The backend that answered last (a hybrid's choice; a single backend's own name)."""

    def synthesize(self, text: str) -> Iterator[np.ndarray]:
        """Blocking; yields int16 mono chunks as they are made. Run it in an executor."""


# --- what the brain's tools, the body, the songs and the wake word offer the session ----------


@dataclass(frozen=True)
class ToolOutcome:
    """What a tool did. `result` goes back to the model as the tool message.

    `end_conversation`: True when the model asked to end the session, else None (no opinion).
    `song`: the title to play, for the session to hand to the song player.
    `persona_changed`: the persona changed, so rebuild the system prompt (and re-prime the cache).
    `error`: the call failed; `result` says why in a sentence for the model.
    """

    result: str
    end_conversation: bool | None = None
    song: str | None = None
    persona_changed: bool = False
    error: bool = False


class Tools(Protocol):
    def names(self) -> list[str]: ...

    def schemas(self) -> list[ToolSchema]:
        """Every tool in OpenAI function form, in a fixed order (the prompt cache depends on it)."""

    async def call(self, call: ToolCall) -> ToolOutcome:
        """Run one call; every failure comes back as an error outcome, never raised."""


class Song(Protocol):
    title: str


class SongBook(Protocol):
    def titles(self) -> list[str]: ...

    def find(self, name: str) -> Song | None:
        """The installed song a spoken or written name (title, folder or keyword) means, else None."""


class Body(Protocol):
    def stop(self) -> None:
        """All motors off now; idempotent, any thread."""

    def speech_finished(self, heard_until: float) -> None:
        """The answer's last sample is heard at play-clock `heard_until`."""

    async def perform(self, song: Song, speaker: Speaker) -> None:
        """Play `song` on `speaker` and dance to it; cancelling stops both at once."""


class WakeWord(Protocol):
    def process(self, frame: AudioFrame) -> bool:
        """Blocking; True when the wake word ends in this frame. Run it in an executor."""


# --- a turn, as recorded ----------------------------------------------------------------


@dataclass
class ToolRecord:
    name: str
    arguments: dict[str, Any] | str
    result: str
    decided_by: str = "brain"
    """Who chose this call: `templates`, `home assistant` or `brain`."""


@dataclass
class TurnRecord:
    """One line of `turns.jsonl` and one `billy/turn` message. Latencies in milliseconds."""

    transcript: str
    reply: str = ""
    tool_calls: list[ToolRecord] = field(default_factory=list)
    backends: dict[str, str] = field(default_factory=dict)
    latency_ms: dict[str, float] = field(default_factory=dict)
    error: str = ""
    decided_by: str = ""
    """Who answered: `templates`, `home assistant` or `brain` (empty for a plain announcement)."""
    guard: list[str] = field(default_factory=list)
    """Sentences the reply guard kept from being spoken, each with the reason."""

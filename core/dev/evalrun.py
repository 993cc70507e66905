"""Runs the tool evaluation's cases through Billy's real turn, with nothing played and nothing kept.

The parts are the app's own (`build_talk_parts`, `build_brain`, `Thinker`, `Responder`): the
turn understands, asks Home Assistant and the brain, guards every sentence and records
itself exactly as it does on the fish. Only the edges are stand-ins: a voice that keeps the
sentences instead of speaking them, a body that notes the song instead of playing it, a
commit with nobody to wait for. Side effects stay inside the evaluation: a temporary copy
of the personas (restored before each case), a temporary songs folder, and a simulated Home
Assistant (`core/dev/home_sim.py`, reset before each case) that Billy's real client reaches
over HTTP. `--spoken` first says each case with piper and runs it on what Whisper heard.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from core.body.songs import SongLibrary
from core.config import HomeAssistantSettings, PersonaSettings, Settings
from core.dev.home_sim import SimulatedHomeAssistant
from core.dev.tooleval import CASES_PATH, EvalCase, EvalReport, Observed, load_cases, score
from core.errors import BillyError
from core.home.homeassistant import HomeAssistantClient
from core.interfaces import TurnRecord
from core.persona.store import PersonaStore
from core.state import StateOwner
from core.talk.history import History
from core.talk.parts import TalkParts, build_talk_parts
from core.talk.speech import FirstSound
from core.talk.think import Thinker
from core.talk.turn import Outcome, Responder, SessionHooks
from core.talk.understand import BRAIN, TEMPLATES
from core.voice.sentences import SentenceSplitter

log = logging.getLogger(__name__)

CASE_TIMEOUT_S = 120.0
"""Longest wait (seconds) for one case; a brain that hangs fails the case, not the run."""
RATE = 16000
"""Rate (hertz) of the audio Whisper is given, as the mic gives it."""
SONGS = {
    "fish_sticks": ("Fish Sticks", "fish fingers"),
    "take_me_to_the_river": ("Take Me to the River", "river, al green"),
    "dont_worry_be_happy": ("Don't Worry, Be Happy", "be happy, bobby mcferrin"),
}
"""Songs the evaluation installs (folder: title, keywords), besides a copy of an installed one."""


class TextSpeech:
    """Billy's voice with nothing to say it with: keeps the sentences a turn would speak."""

    def __init__(self) -> None:
        self.first_sound = FirstSound()
        self.sentences: list[str] = []

    async def speak(self, sentences: asyncio.Queue[str | None], record: TurnRecord, before_first_audio) -> None:
        """Commit once, before the first sentence (as the real voice does), then collect until None."""
        while (sentence := await sentences.get()) is not None:
            if not self.sentences:
                await before_first_audio()
            self.sentences.append(sentence)

    async def play_file(self, path: Path) -> None:
        """The error sound: nothing to play it on."""


class _Speaker:
    """The speaker a turn clears after an error; nothing is ever queued on it."""

    def clear(self) -> None:
        pass


class SongNoter:
    """A body that notes which song the turn starts, and dances to nothing."""

    def __init__(self) -> None:
        self.song: str | None = None

    def stop(self) -> None:
        pass

    def speech_finished(self, heard_until: float) -> None:
        pass

    async def perform(self, song: Any, speaker: Any) -> None:
        self.song = song.title


class _Commit:
    """Nobody is talking, so a turn may act at once; notes when it first asked (the brain's tool calls ask)."""

    def __init__(self) -> None:
        self.first: float | None = None

    async def __call__(self, *args: Any, **kwargs: Any) -> None:
        if self.first is None:
            self.first = time.monotonic()


class EvalBench:
    """The real conversation parts over throwaway personas, songs and home; `run` plays one case."""

    def __init__(self, settings: Settings, home: bool = True):
        self.settings = settings
        self._tmp = tempfile.TemporaryDirectory(prefix="billy-eval-")
        root = Path(self._tmp.name)
        shutil.copytree(settings.persona.directory, root / "personas")
        self.personas = PersonaStore(PersonaSettings(settings.persona.name, root / "personas", allow_update_ini=True))
        self._persona_text = self.personas.path.read_bytes()
        self._stamp = time.time_ns()
        self.songs = SongLibrary(make_songs(root / "songs", settings.sounds_dir / "songs"))
        self.ha = SimulatedHomeAssistant() if home else None
        self.client = None
        if self.ha is not None:
            self.client = HomeAssistantClient(HomeAssistantSettings(host=self.ha.url, token=self.ha.token, lang="en"))
        self.parts: TalkParts = build_talk_parts(self.personas, self.songs, self.client)
        self.brain: Any = None

    def close(self) -> None:
        if self.ha is not None:
            self.ha.close()
        self._tmp.cleanup()

    async def load_brain(self, build: Callable[..., Any]) -> None:
        """The brain the app would build (`build_brain(settings, card)`), warmed with the app's prompt."""
        loop = asyncio.get_running_loop()
        self.brain = await loop.run_in_executor(None, build, self.settings, self.parts.card)
        await self.brain.warm(self.parts.system_prompt(), self.parts.tools.schemas())

    def reset(self) -> None:
        """Persona file, home and HA conversation as they were at the start."""
        path = self.personas.path
        path.write_bytes(self._persona_text)
        self._stamp += 1_000_000
        os.utime(path, ns=(self._stamp, self._stamp))  # the store sees a new file, whatever the clock
        self.personas.current()
        if self.ha is not None:
            self.ha.home.reset()
        if self.client is not None:
            self.client.new_conversation()

    async def run(self, text: str) -> Observed:
        """One fresh conversation of one turn on `text`, observed."""
        self.reset()
        speech, body = TextSpeech(), SongNoter()
        history = History(self.settings.session.history_max_tokens)
        parts = self.parts
        thinker = Thinker(
            self.brain, parts.tools, parts.system_prompt, history, parts.guard, parts.fallback, self.songs
        )
        # The text voice and the noting body stand in for `Speech` and `Body`: same calls, nothing heard.
        responder = Responder(
            StateOwner(),
            _Speaker(),
            speech,
            parts.understanding,
            thinker,
            SessionHooks(),
            self.settings.sounds_dir,
            body,
        )
        seen = Observed(text=text, traits_before=dict(self.personas.current().traits))
        seen.home_before = self.ha.home.states() if self.ha is not None else None
        record = TurnRecord(transcript=text)
        commit = _Commit()
        t0 = time.monotonic()
        try:
            outcome = await asyncio.wait_for(responder.respond(text, record, t0, commit, lambda: None), CASE_TIMEOUT_S)
        except TimeoutError:
            outcome, record.error = Outcome.CONTINUE, f"no answer within {CASE_TIMEOUT_S:.0f} s"
        except Exception as exc:  # a bug in the turn fails this case, not the whole evaluation
            log.exception("the turn on %r failed", text)
            outcome, record.error = Outcome.CONTINUE, f"the turn raised {type(exc).__name__}: {exc}"
        seen.decided_by = record.decided_by
        seen.calls = [asdict(call) for call in record.tool_calls]
        seen.reply = record.reply or " ".join(speech.sentences)
        seen.guard = list(record.guard)
        seen.decision_ms = decision_ms(record, None if commit.first is None else (commit.first - t0) * 1000)
        seen.traits_after = dict(self.personas.current().traits)
        seen.song = body.song
        seen.ended = outcome is Outcome.END and not record.error
        seen.home_after = self.ha.home.states() if self.ha is not None else None
        seen.leaks = leaks(parts, seen.reply)
        seen.error = record.error
        return seen


def decision_ms(record: TurnRecord, committed_ms: float | None) -> float | None:
    """Milliseconds from the words to the decision: templates' recognition, else the first words ready to say
    (Home Assistant's answer, the brain's first sentence), or the brain's tool call when it came first."""
    if record.decided_by == TEMPLATES:
        return record.latency_ms.get("understand")
    first = record.latency_ms.get("llm_first_sentence")
    if record.decided_by == BRAIN and committed_ms is not None and record.tool_calls:
        return committed_ms if first is None else min(first, round(committed_ms, 1))
    return first


def leaks(parts: TalkParts, reply: str) -> list[str]:
    """Sentences of a final reply that the guard's own checks reject (prompt, tool or meta text)."""
    splitter = SentenceSplitter()
    found = []
    for sentence in [*splitter.feed(reply), *splitter.flush()]:
        reason = parts.guard.check(sentence)
        if reason is not None and reason != "no words":
            found.append(f"{reason}: {sentence}")
    return found


def make_songs(folder: Path, installed: Path) -> Path:
    """A songs folder for the evaluation: the first installed song, plus `SONGS` made from its audio."""
    source = next(iter(SongLibrary(installed).songs()), None)
    if source is None:
        raise BillyError(f"The evaluation needs one installed song to copy, and {installed} has none.")
    shutil.copytree(source.folder, folder / source.name)
    for name, (title, keywords) in SONGS.items():
        (folder / name).mkdir(parents=True)
        for wav in ("full.wav", "vocals.wav", "drums.wav"):
            try:
                (folder / name / wav).symlink_to(source.folder / wav)
            except OSError:
                shutil.copyfile(source.folder / wav, folder / name / wav)
        (folder / name / "metadata.ini").write_text(
            f"[SONG]\ntitle = {title}\nkeywords = {keywords}\nbpm = {source.bpm:g}\n", encoding="utf-8"
        )
    return folder


class Ears:
    """Says a case with piper and hears it with Billy's Whisper; the audio is cached per text and voice."""

    def __init__(self, settings: Settings, build_transcriber: Callable[[Settings], Any]):
        from core.voice.tts import PiperSynthesizer

        self.voice = PiperSynthesizer(settings.models.local_tts_voice)
        self.transcriber = build_transcriber(settings)
        self.cache = settings.cache_dir / "eval"
        self.cache.mkdir(parents=True, exist_ok=True)

    def audio(self, text: str) -> np.ndarray:
        """`text` as piper says it, at 16 kHz, with a little silence around it as the mic would give it."""
        from core.audio.transforms import resample
        from core.audio.wav import read_wav, write_wav

        key = hashlib.sha1(f"{self.voice.voice_path.name}\n{text}".encode()).hexdigest()[:16]
        path = self.cache / f"{key}.wav"
        if path.is_file():
            return read_wav(path)[0]
        chunks = list(self.voice.synthesize(text))
        pcm = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int16)
        pad = np.zeros(RATE // 4, dtype=np.int16)
        pcm = np.concatenate([pad, resample(pcm, self.voice.sample_rate, RATE), pad])
        write_wav(path, pcm, RATE)
        return pcm

    def hear(self, text: str) -> str:
        return self.transcriber.transcribe(self.audio(text), RATE).text


async def run_eval(
    settings: Settings,
    build_brain: Callable[..., Any],
    build_transcriber: Callable[[Settings], Any] | None = None,
    home: bool = True,
    cases_path: Path = CASES_PATH,
    limit: int = 0,
    on_case: Callable[[str], None] | None = None,
) -> EvalReport:
    """Every case through the real turn (spoken first when `build_transcriber` is given), scored.

    `on_case` gets each case's report line as soon as it is scored.
    """
    cases: list[EvalCase] = load_cases(cases_path)[: limit or None]
    started = time.monotonic()
    loop = asyncio.get_running_loop()
    bench = EvalBench(settings, home)
    try:
        ears = await loop.run_in_executor(None, Ears, settings, build_transcriber) if build_transcriber else None
        await bench.load_brain(build_brain)
        report = EvalReport(brain="", home=home, spoken=ears is not None)
        if on_case is not None:
            on_case(report.title(len(cases)))
        for case in cases:
            text = await loop.run_in_executor(None, ears.hear, case.say) if ears else case.say
            result = score(case, await bench.run(text), home)
            report.results.append(result)
            if on_case is not None:
                on_case(report.format_case(result))
        states = getattr(bench.brain, "breaker_states", {})
        ready = ", ".join(name for name, state in states.items() if state == "closed") or "none"
        report.brain = f"{bench.brain.last_used or 'none'} answered (brains ready, in order: {ready})"
    finally:
        bench.close()
    report.seconds = time.monotonic() - started
    return report

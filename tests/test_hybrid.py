"""Fallback between backends within a turn, and circuit breakers across turns."""

import asyncio
import contextlib

import numpy as np
import pytest

from core.brains.ollama import OllamaBrain
from core.errors import BackendError
from core.hybrid import CircuitBreaker, HybridBrain, HybridSynthesizer, HybridTranscriber
from core.interfaces import Brain, BrainDone, Synthesizer, TextDelta, Transcriber, Transcript
from tests.helpers.ollama_server import FakeOllama, Reply

MODEL = "qwen2.5:1.5b"
HI = [{"role": "user", "content": "Hello fish"}]


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


class LocalBrain:
    """A second brain that answers from a list, standing in for the embedded one."""

    name = "embedded"

    def __init__(self, text="Blub. I am here.", fail=False):
        self.text, self.fail, self.calls, self.closed = text, fail, 0, 0

    async def chat(self, messages, tools):
        self.calls += 1
        if self.fail:
            raise BackendError("embedded model file is missing.")
        try:
            for word in self.text.split(" "):
                yield TextDelta(word + " ")
            yield BrainDone(1, 2)
        finally:
            self.closed += 1

    async def warm(self, system_prompt, tools):
        if self.fail:
            raise BackendError("embedded model file is missing.")

    async def healthy(self):
        return not self.fail


def run(coro, timeout=10.0):
    return asyncio.run(asyncio.wait_for(coro, timeout))


async def collect(brain):
    return [event async for event in brain.chat(HI, [])]


def text_of(events):
    return "".join(e.text for e in events if isinstance(e, TextDelta))


@pytest.fixture
def server():
    with FakeOllama(models=[MODEL]) as fake:
        yield fake


def test_breaker_opens_then_half_opens_after_cooldown():
    clock = Clock()
    breaker = CircuitBreaker(30.0, clock)
    assert breaker.state == "closed" and breaker.is_allowed
    breaker.record_failure()
    assert breaker.state == "open" and not breaker.is_allowed
    clock.now += 29.9
    assert breaker.state == "open"
    clock.now += 0.2
    assert breaker.state == "half-open" and breaker.is_allowed
    breaker.record_failure()
    assert breaker.state == "open"
    clock.now += 31
    breaker.record_success()
    assert breaker.state == "closed"


def test_dead_ollama_falls_back_in_the_same_turn(server):
    server.stop()
    local = LocalBrain()
    hybrid = HybridBrain([OllamaBrain(server.url, MODEL, timeout_s=2), local], 60.0)
    assert isinstance(hybrid, Brain)
    events = run(collect(hybrid))
    assert text_of(events) == "Blub. I am here. " and events[-1] == BrainDone(1, 2)
    assert hybrid.last_used == "embedded"
    assert hybrid.breaker_states == {"ollama": "open", "embedded": "closed"}


def test_breaker_skips_the_failed_backend_then_recovers(server):
    clock = Clock()
    local = LocalBrain()
    hybrid = HybridBrain([OllamaBrain(server.url, MODEL), local], 60.0, clock=clock)
    server.script(Reply.error(500, "model runner crashed"))
    assert text_of(run(collect(hybrid))) == "Blub. I am here. "
    assert len(server.requests) == 1

    clock.now += 30  # second turn, breaker still open: Ollama gets no request at all
    run(collect(hybrid))
    assert len(server.requests) == 1 and hybrid.last_used == "embedded" and local.calls == 2

    clock.now += 31  # cool-down over: one trial, it works, Ollama answers again
    server.script(Reply.text("I'm back."))
    assert text_of(run(collect(hybrid))) == "I'm back."
    assert len(server.requests) == 2 and hybrid.last_used == "ollama" and local.calls == 2
    assert hybrid.breaker_states["ollama"] == "closed"


def test_failure_mid_stream_is_raised_not_replaced(server):
    local = LocalBrain()
    hybrid = HybridBrain([OllamaBrain(server.url, MODEL), local], 60.0)
    server.script(Reply.drop(2, "one two three"))
    received = []

    async def consume():
        async for event in hybrid.chat(HI, []):
            received.append(event)

    with pytest.raises(BackendError, match="dropped"):
        run(consume())
    assert received == [TextDelta("one"), TextDelta(" two")]
    assert local.calls == 0 and hybrid.last_used == "ollama"


def test_every_backend_failing_names_each_error(server):
    server.stop()
    hybrid = HybridBrain([OllamaBrain(server.url, MODEL), LocalBrain(fail=True)], 60.0)
    with pytest.raises(BackendError, match=r"Every brain backend failed: Ollama is not answering.*\| embedded model"):
        run(collect(hybrid))
    # every breaker is open now: they are all tried again rather than failing without trying
    with pytest.raises(BackendError, match="Every brain backend failed"):
        run(collect(hybrid))


def test_consumer_stopping_early_closes_the_backend_stream():
    local = LocalBrain()
    hybrid = HybridBrain([local], 60.0)

    async def first_only():
        async with contextlib.aclosing(hybrid.chat(HI, [])) as events:
            async for event in events:
                return event

    assert run(first_only()) == TextDelta("Blub. ")
    assert local.closed == 1


def test_warm_and_health_open_breakers_of_dead_backends(server):
    server.stop()
    local = LocalBrain()
    hybrid = HybridBrain([OllamaBrain(server.url, MODEL), local], 60.0)
    run(hybrid.warm("You are Billy.", []))
    assert hybrid.breaker_states == {"ollama": "open", "embedded": "closed"}
    assert run(hybrid.healthy()) is True
    with pytest.raises(BackendError):
        run(HybridBrain([OllamaBrain(server.url, MODEL)], 60.0).warm("You are Billy.", []))
    assert run(HybridBrain([LocalBrain(fail=True)], 60.0).healthy()) is False


class NamedTranscriber:
    def __init__(self, name, text="", fail=False):
        self.name, self.text, self.fail, self.calls = name, text, fail, 0

    def transcribe(self, pcm, sample_rate):
        self.calls += 1
        if self.fail:
            raise BackendError(f"{self.name} is down.")
        return Transcript(self.text)


def test_transcriber_falls_back_and_skips_while_open():
    clock = Clock()
    cloud, local = NamedTranscriber("openai", fail=True), NamedTranscriber("whisper", "hello billy")
    hybrid = HybridTranscriber([cloud, local], 60.0, clock=clock)
    assert isinstance(hybrid, Transcriber)
    pcm = np.zeros(1600, dtype=np.int16)
    assert hybrid.transcribe(pcm, 16000).text == "hello billy" and hybrid.last_used == "whisper"
    hybrid.transcribe(pcm, 16000)
    assert cloud.calls == 1
    local.fail = True
    with pytest.raises(BackendError, match="Every transcriber backend failed"):
        hybrid.transcribe(pcm, 16000)


class ToneSynthesizer:
    def __init__(self, name, sample_rate, fail_after=None):
        self.name, self.sample_rate, self.fail_after = name, sample_rate, fail_after

    def synthesize(self, text):
        for i in range(3):
            if self.fail_after is not None and i >= self.fail_after:
                raise BackendError(f"{self.name} voice crashed.")
            yield np.full(self.sample_rate // 100, i + 1, dtype=np.int16)


def test_synthesizer_falls_back_before_first_chunk_with_its_own_rate():
    hybrid = HybridSynthesizer([ToneSynthesizer("piper", 22050, fail_after=0), ToneSynthesizer("openai", 24000)], 60.0)
    assert isinstance(hybrid, Synthesizer)
    seen = []
    for chunk in hybrid.synthesize("Hello."):
        seen.append((len(chunk), hybrid.sample_rate))
    assert seen == [(240, 24000)] * 3 and hybrid.last_used == "openai" and hybrid.last_sample_rate == 24000


def test_synthesizer_failure_mid_sentence_is_raised():
    hybrid = HybridSynthesizer([ToneSynthesizer("piper", 22050, fail_after=1), ToneSynthesizer("openai", 24000)], 60.0)
    chunks = []
    with pytest.raises(BackendError, match="piper voice crashed"):
        for chunk in hybrid.synthesize("Hello."):
            chunks.append(chunk)
    assert len(chunks) == 1 and hybrid.sample_rate == 22050 and hybrid.breaker_states["piper"] == "open"

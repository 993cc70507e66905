"""Fall back from one backend to the next without dropping the turn, and stop retrying dead ones.

Each stage (brain, transcriber, synthesizer) gets a list of backends in order of preference.
A backend that raises `BackendError` before it produced anything is skipped for this turn
and the next one is tried at once; its circuit breaker then opens, so the following turns do
not wait on a dead service again until the cool-down has passed (then one trial call is let
through: success closes the breaker, failure opens it for another cool-down). A backend that
fails after it has started answering cannot be replaced without repeating what was already
said, so that error goes up to the session. When every breaker is open, all backends are tried
anyway: there is nothing left to protect.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import aclosing
from typing import Generic, TypeVar

import numpy as np

from core.errors import BackendError
from core.interfaces import Brain, BrainEvent, Message, Synthesizer, ToolSchema, Transcriber, Transcript

log = logging.getLogger(__name__)

B = TypeVar("B")


class CircuitBreaker:
    """Closed (use it), open (skip it for `cooldown_s` seconds after a failure), then half-open (try once)."""

    def __init__(self, cooldown_s: float, clock: Callable[[], float] = time.monotonic):
        self.cooldown_s = cooldown_s
        self._clock = clock
        self._opened_at: float | None = None

    @property
    def state(self) -> str:
        """`closed`, `open` or `half-open`."""
        if self._opened_at is None:
            return "closed"
        return "open" if self._clock() - self._opened_at < self.cooldown_s else "half-open"

    @property
    def is_allowed(self) -> bool:
        """True when a call may go through now (closed or half-open)."""
        return self.state != "open"

    def record_success(self) -> None:
        self._opened_at = None

    def record_failure(self) -> None:
        self._opened_at = self._clock()


class _Fallback(Generic[B]):
    """The ordered backends and their breakers, shared by the three hybrid stages."""

    def __init__(self, backends: Sequence[B], cooldown_s: float, clock: Callable[[], float], stage: str):
        if not backends:
            raise ValueError(f"a hybrid {stage} needs at least one backend")
        self.backends = list(backends)
        self.breakers = [CircuitBreaker(cooldown_s, clock) for _ in self.backends]
        self.stage = stage

    def candidates(self) -> list[tuple[B, CircuitBreaker]]:
        """Backends whose breaker lets a call through, in order; all of them when every breaker is open."""
        pairs = list(zip(self.backends, self.breakers, strict=True))
        allowed = [(b, br) for b, br in pairs if br.is_allowed]
        return allowed or pairs

    def failed(self, backend: object, breaker: CircuitBreaker, exc: BackendError, fell_through: bool) -> None:
        breaker.record_failure()
        name = getattr(backend, "name", "?")
        if fell_through:
            log.warning("%s %s failed, trying the next one: %s", self.stage, name, exc)
        else:
            log.warning("%s %s failed mid-answer: %s", self.stage, name, exc)

    def all_failed(self, errors: list[str]) -> BackendError:
        return BackendError(f"Every {self.stage} backend failed: {' | '.join(errors)}")

    def states(self) -> dict[str, str]:
        pairs = zip(self.backends, self.breakers, strict=True)
        return {getattr(b, "name", str(i)): br.state for i, (b, br) in enumerate(pairs)}


class HybridBrain:
    """A `Brain` that answers with the first backend that works; `last_used` names the one that answered."""

    name = "hybrid"

    def __init__(
        self,
        brains: Sequence[Brain],
        breaker_cooldown_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self._fallback = _Fallback(brains, breaker_cooldown_s, clock, "brain")
        self.last_used = ""

    @property
    def breaker_states(self) -> dict[str, str]:
        """Backend name → `closed` / `open` / `half-open`, for logs and status."""
        return self._fallback.states()

    async def chat(self, messages: list[Message], tools: list[ToolSchema]) -> AsyncIterator[BrainEvent]:
        errors: list[str] = []
        for brain, breaker in self._fallback.candidates():
            started = False
            try:
                async with aclosing(brain.chat(messages, tools)) as events:
                    async for event in events:
                        if not started:
                            started = True
                            self.last_used = brain.name
                        yield event
            except BackendError as exc:
                self._fallback.failed(brain, breaker, exc, fell_through=not started)
                if started:
                    raise
                errors.append(str(exc))
                continue
            breaker.record_success()
            return
        raise self._fallback.all_failed(errors)

    async def warm(self, system_prompt: str, tools: list[ToolSchema]) -> None:
        """Warm every backend; one that fails is logged and its breaker opened. Raises only if all fail."""
        errors: list[str] = []
        for brain, breaker in zip(self._fallback.backends, self._fallback.breakers, strict=True):
            try:
                await brain.warm(system_prompt, tools)
            except BackendError as exc:
                breaker.record_failure()
                log.warning("brain %s could not be warmed: %s", brain.name, exc)
                errors.append(str(exc))
            else:
                breaker.record_success()
        if len(errors) == len(self._fallback.backends):
            raise self._fallback.all_failed(errors)

    async def healthy(self) -> bool:
        """Check every backend at once; an unhealthy one gets its breaker opened. True if any can answer."""
        backends, breakers = self._fallback.backends, self._fallback.breakers
        results = await asyncio.gather(*(b.healthy() for b in backends), return_exceptions=True)
        for brain, breaker, ok in zip(backends, breakers, results, strict=True):
            if ok is True:
                if breaker.state == "half-open":
                    breaker.record_success()
            else:
                log.info("brain %s is not healthy: %s", brain.name, ok if isinstance(ok, BaseException) else "no")
                breaker.record_failure()
        return any(ok is True for ok in results)


class HybridTranscriber:
    """A `Transcriber` that falls through to the next backend when one raises `BackendError`."""

    name = "hybrid"

    def __init__(
        self,
        transcribers: Sequence[Transcriber],
        breaker_cooldown_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self._fallback = _Fallback(transcribers, breaker_cooldown_s, clock, "transcriber")
        self.last_used = ""

    @property
    def breaker_states(self) -> dict[str, str]:
        return self._fallback.states()

    def transcribe(self, pcm: np.ndarray, sample_rate: int) -> Transcript:
        """Blocking, like every transcriber: run it in an executor."""
        errors: list[str] = []
        for transcriber, breaker in self._fallback.candidates():
            try:
                transcript = transcriber.transcribe(pcm, sample_rate)
            except BackendError as exc:
                self._fallback.failed(transcriber, breaker, exc, fell_through=True)
                errors.append(str(exc))
                continue
            breaker.record_success()
            self.last_used = transcriber.name
            return transcript
        raise self._fallback.all_failed(errors)


class HybridSynthesizer:
    """A `Synthesizer` that falls through to the next voice if one fails before its first chunk.

    Backends may have different sample rates. `synthesize()` sets `sample_rate` (and its alias
    `last_sample_rate`) to the rate of the backend that answers *before it yields that backend's
    first chunk*, so a consumer reads `sample_rate` after receiving a chunk and always gets the
    rate of that chunk. Call it from one thread at a time (sentences are synthesized in order).
    """

    name = "hybrid"

    def __init__(
        self,
        synthesizers: Sequence[Synthesizer],
        breaker_cooldown_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self._fallback = _Fallback(synthesizers, breaker_cooldown_s, clock, "synthesizer")
        self.last_used = ""
        self.last_sample_rate = self._fallback.backends[0].sample_rate

    @property
    def sample_rate(self) -> int:
        """Rate (hertz) of the chunks the current or last `synthesize()` yielded."""
        return self.last_sample_rate

    @property
    def breaker_states(self) -> dict[str, str]:
        return self._fallback.states()

    def synthesize(self, text: str) -> Iterator[np.ndarray]:
        """Blocking; yields int16 mono chunks at `sample_rate`. Run it in an executor."""
        errors: list[str] = []
        for synthesizer, breaker in self._fallback.candidates():
            started = False
            chunks = synthesizer.synthesize(text)
            try:
                for chunk in chunks:
                    if not started:
                        started = True
                        self.last_used = synthesizer.name
                        self.last_sample_rate = synthesizer.sample_rate
                    yield chunk
            except BackendError as exc:
                self._fallback.failed(synthesizer, breaker, exc, fell_through=not started)
                if started:
                    raise
                errors.append(str(exc))
                continue
            finally:
                close = getattr(chunks, "close", None)
                if close is not None:
                    close()
            breaker.record_success()
            return
        raise self._fallback.all_failed(errors)

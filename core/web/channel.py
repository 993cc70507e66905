"""Both ends of the channel of `core.web.protocol`: Billy's server and the page's client.

Billy's end runs on his asyncio loop and never waits for a page: `publish` only puts an
event in each page's bounded queue, and a page that falls `MAX_QUEUED` events behind is
disconnected. Threads (the speaker, the motion thread, logging) hand events over with
`publish_threadsafe`. The page's end is a thread that keeps reconnecting while Billy is
down, so the page learns at once when he comes back.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import socket
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from core.errors import BillyError
from core.web.protocol import MAX_LINE, MAX_QUEUED, ProtocolError, Request, decode, encode, parse_request, reply

log = logging.getLogger(__name__)

Handler = Callable[[Request], Awaitable[dict[str, Any]]]
"""Carries out one request; returns the reply's data, raises BillyError with the sentence for the page."""


class ChannelServer:
    """Billy's end of the channel: a Unix socket on his loop, one bounded queue per page."""

    def __init__(self, path: Path, handle: Handler, hello: Callable[[], dict[str, Any]]):
        self.path = Path(path)
        self._handle = handle
        self._hello = hello
        self._server: asyncio.AbstractServer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queues: dict[asyncio.StreamWriter, asyncio.Queue[dict[str, Any]]] = {}
        self._tasks: set[asyncio.Task] = set()
        self._serving: set[asyncio.Task] = set()

    @property
    def has_pages(self) -> bool:
        """True while a page is connected (taps skip their work otherwise)."""
        return bool(self._queues)

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.path.unlink(missing_ok=True)  # a socket left by a killed Billy (the voice lock says he is gone)
        self._server = await asyncio.start_unix_server(self._serve, path=str(self.path), limit=MAX_LINE + 1)
        os.chmod(self.path, 0o600)
        log.debug("page channel listening on %s", self.path)

    async def close(self) -> None:
        """Hang up on every page and stop listening; each connection's task ends by itself."""
        if self._server is not None:
            self._server.close()
        for writer in list(self._queues):
            writer.close()
        for task in list(self._tasks):
            task.cancel()
        if self._serving:
            await asyncio.wait(list(self._serving), timeout=1.0)
        self._queues.clear()
        with contextlib.suppress(OSError):
            self.path.unlink(missing_ok=True)

    def publish(self, message: dict[str, Any]) -> None:
        """Send an event to every page; on the loop only. A page too far behind is disconnected."""
        if not self._queues:
            return
        message = {**message, "now": round(time.monotonic(), 4)}
        for writer, queue in list(self._queues.items()):
            try:
                queue.put_nowait(message)
            except asyncio.QueueFull:
                log.warning("the page fell %d events behind: disconnected it (it reconnects)", MAX_QUEUED)
                self._drop(writer)

    def publish_threadsafe(self, message: dict[str, Any]) -> None:
        """`publish` from any thread: hands the event to the loop and returns."""
        if self._loop is None or not self._queues:
            return
        with contextlib.suppress(RuntimeError):  # the loop is closed: Billy is stopping
            self._loop.call_soon_threadsafe(self.publish, message)

    def _drop(self, writer: asyncio.StreamWriter) -> None:
        self._queues.pop(writer, None)
        writer.close()

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(MAX_QUEUED)
        queue.put_nowait({**self._hello(), "type": "hello", "now": round(time.monotonic(), 4)})
        self._queues[writer] = queue
        sender = asyncio.create_task(self._send(writer, queue), name="page channel sender")
        serving = asyncio.current_task()
        if serving is not None:
            self._serving.add(serving)
        try:
            while True:
                try:
                    line = await reader.readline()
                except ValueError:  # over the limit: the rest of the line cannot be told from the next
                    log.warning("page channel: a line over %d bytes; disconnected the page", MAX_LINE)
                    break
                if not line:
                    break
                if line.strip():
                    self._spawn(self._answer(line, queue))
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            sender.cancel()
            self._drop(writer)
            self._serving.discard(serving)  # type: ignore[arg-type]

    async def _send(self, writer: asyncio.StreamWriter, queue: asyncio.Queue[dict[str, Any]]) -> None:
        try:
            while True:
                writer.write(encode(await queue.get()))
                await writer.drain()
        except (ConnectionError, RuntimeError):
            self._drop(writer)

    async def _answer(self, line: bytes, queue: asyncio.Queue[dict[str, Any]]) -> None:
        request_id = None
        try:
            request = parse_request(decode(line))
            request_id = request.id
            answer = reply(request_id, **await self._handle(request))
        except ProtocolError as exc:
            log.warning("page channel: refused a request: %s", exc)
            answer = reply(exc.request_id, str(exc))
        except BillyError as exc:
            answer = reply(request_id, str(exc))
        except Exception:
            log.exception("page channel: request %s failed", request_id)
            answer = reply(request_id, "Billy failed to do that; his log says why.")
        with contextlib.suppress(asyncio.QueueFull):
            queue.put_nowait({**answer, "now": round(time.monotonic(), 4)})


class ChannelError(BillyError, RuntimeError):
    """Billy is not there, did not answer in time, or said no; the message says which."""


class ChannelClient:
    """The page's end: a thread that stays connected to Billy (reconnecting while he is down).

    `on_event(message)` gets every event, on the client's thread, and `{"type": "gone"}` when
    the connection is lost. `request()` may be called from any thread.
    """

    def __init__(self, path: Path, on_event: Callable[[dict[str, Any]], None], retry_s: float = 0.5):
        self.path = Path(path)
        self._on_event = on_event
        self._retry_s = retry_s
        self._ids = itertools.count(1)
        self._pending: dict[int, list[Any]] = {}
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="billy-channel", daemon=True)

    @property
    def connected(self) -> bool:
        return self._sock is not None

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._stopping.set()
        sock = self._sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        self._thread.join(timeout=2)

    def request(self, kind: str, timeout: float = 5.0, **fields: Any) -> dict[str, Any]:
        """Send one request and wait for its reply; returns the reply's data or raises ChannelError."""
        request_id = next(self._ids)
        done = threading.Event()
        slot: list[Any] = [done, None]
        with self._lock:
            sock = self._sock
            if sock is None:
                raise ChannelError("Billy is not running.")
            self._pending[request_id] = slot
            try:
                sock.sendall(encode({"type": kind, "id": request_id, **fields}))
            except OSError:
                self._pending.pop(request_id, None)
                raise ChannelError("Billy is not running.") from None
        if not done.wait(timeout):
            with self._lock:
                self._pending.pop(request_id, None)
            raise ChannelError(f"Billy did not answer within {timeout:g} s.")
        answer = slot[1]
        if not answer.get("ok"):
            raise ChannelError(str(answer.get("error") or "Billy said no."))
        return answer.get("data") or {}

    def _run(self) -> None:
        while not self._stopping.is_set():
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.connect(str(self.path))
            except OSError:
                sock.close()
                self._stopping.wait(self._retry_s)
                continue
            with self._lock:
                self._sock = sock
            try:
                self._read(sock)
            finally:
                with self._lock:
                    self._sock = None
                    pending, self._pending = self._pending, {}
                for slot in pending.values():
                    slot[1] = {"ok": False, "error": "Billy went away before answering."}
                    slot[0].set()
                sock.close()
                self._deliver({"type": "gone"})

    def _read(self, sock: socket.socket) -> None:
        with sock.makefile("rb") as lines:
            while not self._stopping.is_set():
                try:
                    line = lines.readline(MAX_LINE + 1)
                except OSError:
                    return
                if not line or not line.endswith(b"\n"):
                    return
                try:
                    message = decode(line)
                except ProtocolError as exc:
                    log.warning("channel: ignored a message from Billy: %s", exc)
                    continue
                if message["type"] == "reply":
                    with self._lock:
                        slot = self._pending.pop(message.get("id"), None)  # type: ignore[arg-type]
                    if slot is not None:
                        slot[1] = message
                        slot[0].set()
                    continue
                self._deliver(message)

    def _deliver(self, message: dict[str, Any]) -> None:
        try:
            self._on_event(message)
        except Exception:
            log.exception("channel: the page failed to take an event")

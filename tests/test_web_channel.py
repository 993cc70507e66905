"""The voice ↔ page channel: its JSON-lines protocol, and both ends over a real Unix socket."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from core.errors import BillyError
from core.web.channel import ChannelClient, ChannelError, ChannelServer
from core.web.protocol import MAX_LINE, MAX_QUEUED, ProtocolError, Request, decode, encode, parse_request

WAIT = 5.0


# --- the protocol: pure functions --------------------------------------------------------


def test_a_message_is_one_json_line_and_back():
    message = {"type": "say", "id": 1, "text": "Hallo, Fisch! ünïcode"}
    line = encode(message)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert decode(line) == message


@pytest.mark.parametrize(
    ("line", "why"),
    [
        (b"\xff\xfe\n", "not a JSON line"),
        (b"[1, 2]\n", "JSON object"),
        (b'{"id": 1}\n', '"type"'),
        (b"x" * (MAX_LINE + 1), "over the"),
    ],
)
def test_malformed_lines_are_refused_with_the_reason(line, why):
    with pytest.raises(ProtocolError, match=why):
        decode(line)


def test_requests_are_checked_field_by_field():
    assert parse_request({"type": "talk", "id": 7, "text": "  hello  "}) == Request(7, "talk", {"text": "hello"})
    assert parse_request({"type": "mic.meter", "id": 1, "on": True}).args == {"on": True}
    bad = [
        ({"type": "talk", "text": "hi"}, "integer"),
        ({"type": "talk", "id": True, "text": "hi"}, "integer"),
        ({"type": "rm -rf", "id": 1}, "unknown request"),
        ({"type": "talk", "id": 1}, "missing field"),
        ({"type": "talk", "id": 1, "text": "hi", "shell": "x"}, "unexpected field"),
        ({"type": "talk", "id": 1, "text": ""}, "empty"),
        ({"type": "talk", "id": 1, "text": "bell\x07"}, "control character"),
        ({"type": "talk", "id": 1, "text": "a" * 1001}, "under 1000"),
        ({"type": "talk", "id": 1, "text": 5}, "text"),
        ({"type": "command", "id": 1, "command": "reboot"}, "listen, stop"),
        ({"type": "mic.meter", "id": 1, "on": "yes"}, "true or false"),
        ({"type": "persona.save", "id": 1, "name": "x", "edit": []}, "JSON object"),
    ]
    for message, why in bad:
        with pytest.raises(ProtocolError, match=why) as caught:
            parse_request(message)
        if isinstance(message.get("id"), int) and not isinstance(message.get("id"), bool):
            assert caught.value.request_id == 1


# --- both ends over a real socket --------------------------------------------------------


class Voice:
    """A ChannelServer on its own loop thread, with a scripted handler."""

    def __init__(self, path: Path):
        self.requests: list[Request] = []
        self.loop = asyncio.new_event_loop()
        self.server = ChannelServer(path, self.handle, lambda: {"pid": 1, "ready": True, "state": "idle"})
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.run(self.server.start())

    def run(self, coro, timeout: float = WAIT):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    async def handle(self, request: Request) -> dict:
        self.requests.append(request)
        if request.type == "say" and request.args["text"] == "fail":
            raise BillyError("Billy is busy.")
        if request.type == "say" and request.args["text"] == "crash":
            raise RuntimeError("a bug")
        return {"echo": request.args.get("text")}

    def publish(self, message: dict) -> None:
        self.loop.call_soon_threadsafe(self.server.publish, message)

    def close(self) -> None:
        self.run(self.server.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(WAIT)
        self.loop.close()


class Events:
    def __init__(self):
        self.items: list[dict] = []
        self.changed = threading.Condition()

    def __call__(self, message: dict) -> None:
        with self.changed:
            self.items.append(message)
            self.changed.notify_all()

    def wait_for(self, check, what: str) -> None:
        with self.changed:
            assert self.changed.wait_for(lambda: check(self.items), WAIT), f"no {what}; got {self.items}"

    def types(self) -> list[str]:
        with self.changed:
            return [m["type"] for m in self.items]


@contextmanager
def channel(tmp_path: Path) -> Iterator[tuple[Voice, ChannelClient, Events]]:
    voice = Voice(tmp_path / "rt" / "billy.sock")
    events = Events()
    client = ChannelClient(voice.server.path, events, retry_s=0.05)
    client.start()
    try:
        events.wait_for(lambda items: any(m["type"] == "hello" for m in items), "hello")
        yield voice, client, events
    finally:
        client.close()
        voice.close()


def test_events_flow_in_order_and_requests_get_their_reply(tmp_path):
    with channel(tmp_path) as (voice, client, events):
        assert (voice.server.path.stat().st_mode & 0o777) == 0o600
        for i in range(50):
            voice.publish({"type": "motion", "t": i, "motor": "mouth", "value": 0.5})
        events.wait_for(lambda items: sum(m["type"] == "motion" for m in items) == 50, "50 motion events")
        motion = [m for m in events.items if m["type"] == "motion"]
        assert [m["t"] for m in motion] == list(range(50))
        assert all(isinstance(m["now"], float) for m in motion)
        assert client.request("say", text="hello") == {"echo": "hello"}
        with pytest.raises(ChannelError, match="Billy is busy"):
            client.request("say", text="fail")
        with pytest.raises(ChannelError, match="his log says why"):
            client.request("say", text="crash")
        with pytest.raises(ChannelError, match="unknown request"):
            client.request("format-disk")
        assert client.request("say", text="still here") == {"echo": "still here"}


def test_a_malformed_line_gets_an_error_and_the_connection_stays(tmp_path):
    with channel(tmp_path) as (voice, _client, _events), socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as raw:
        raw.settimeout(WAIT)
        raw.connect(str(voice.server.path))
        lines = raw.makefile("rb")
        assert json.loads(lines.readline())["type"] == "hello"
        raw.sendall(b"\xff\xfe not json\n")
        assert "not a JSON line" in json.loads(lines.readline())["error"]
        raw.sendall(b'{"type": "say", "id": 9, "text": "after"}\n')
        answer = json.loads(lines.readline())
        assert answer == {"type": "reply", "id": 9, "ok": True, "data": {"echo": "after"}, "now": answer["now"]}
        raw.sendall(b"x" * (MAX_LINE + 10) + b"\n")  # over the limit: the page is disconnected
        assert lines.readline() == b""


def test_a_page_that_stops_reading_is_dropped_and_billy_never_waits(tmp_path):
    with channel(tmp_path) as (voice, _client, events), socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as stuck:
        stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stuck.connect(str(voice.server.path))  # connects, then never reads

        async def flood() -> float:
            await asyncio.sleep(0.2)
            took = 0.0
            for burst in range(6):  # a burst at a time, as speech would: a page that reads keeps up
                start = time.perf_counter()
                for i in range(MAX_QUEUED // 2):
                    t = burst * (MAX_QUEUED // 2) + i
                    voice.server.publish({"type": "motion", "t": t, "motor": "mouth", "value": 1.0, "pad": "x" * 200})
                took += time.perf_counter() - start
                await asyncio.sleep(0.2)
            return took

        took = voice.run(flood())
        assert took < 1.0, f"publishing to a stuck page took {took:.2f} s"
        # The stuck page was dropped; the healthy one got everything, in order.
        events.wait_for(lambda items: sum(m["type"] == "motion" for m in items) == 3 * MAX_QUEUED, "all events")
        stuck.settimeout(WAIT)
        received = b""
        while chunk := stuck.recv(65536):
            received += chunk
        assert 0 < received.count(b"\n") < 3 * MAX_QUEUED


def test_the_page_end_reconnects_when_billy_comes_back(tmp_path):
    path = tmp_path / "rt" / "billy.sock"
    events = Events()
    client = ChannelClient(path, events, retry_s=0.05)
    client.start()
    try:
        with pytest.raises(ChannelError, match="not running"):
            client.request("say", text="anyone?")
        first = Voice(path)
        events.wait_for(lambda items: "hello" in [m["type"] for m in items], "hello")
        first.close()
        events.wait_for(lambda items: items[-1]["type"] == "gone", "gone")
        second = Voice(path)
        try:
            events.wait_for(lambda items: [m["type"] for m in items].count("hello") == 2, "a second hello")
            assert client.request("say", text="back") == {"echo": "back"}
        finally:
            second.close()
    finally:
        client.close()

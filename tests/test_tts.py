"""Text to speech: the bundled piper voice, speakable(), and the OpenAI client against a local server."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from core.errors import BackendError
from core.interfaces import Synthesizer
from core.listen.stt import normalize_words
from core.voice.tts import OpenAISynthesizer, PiperSynthesizer, speakable
from tests.helpers.http import base_url, serving


@pytest.fixture(scope="module")
def piper() -> PiperSynthesizer:
    synthesizer = PiperSynthesizer()
    synthesizer.warm()
    return synthesizer


@pytest.mark.slow
def test_piper_speaks_with_plausible_length_and_level(piper: PiperSynthesizer) -> None:
    assert isinstance(piper, Synthesizer)
    assert piper.sample_rate == 22050
    text = "Hello, I am Billy the singing fish. What can I do for you today?"
    started = time.monotonic()
    chunks = list(piper.synthesize(text))
    elapsed = time.monotonic() - started
    assert len(chunks) == 2  # one chunk per sentence, as piper makes them
    assert all(c.dtype == np.int16 and c.ndim == 1 for c in chunks)
    audio = np.concatenate(chunks)
    seconds = len(audio) / piper.sample_rate
    assert 2.5 < seconds < 8.0  # 13 words at 2-4 words per second
    rms_dbfs = 20 * np.log10(np.sqrt(np.mean(audio.astype(np.float64) ** 2)) / 32768)
    assert rms_dbfs > -30
    assert elapsed < seconds  # faster than real time, even on a loaded box


@pytest.mark.slow
def test_piper_first_chunk_comes_before_the_whole_reply(piper: PiperSynthesizer) -> None:
    text = "Short one. " + "This second sentence is a good deal longer, so it takes piper longer to make. " * 3
    started = time.monotonic()
    stream = piper.synthesize(text)
    first = next(stream)
    first_at = time.monotonic() - started
    rest = list(stream)
    total = time.monotonic() - started
    assert len(first) / piper.sample_rate < 1.5
    assert rest and first_at < total / 2


@pytest.mark.slow
def test_piper_round_trip_through_whisper(piper: PiperSynthesizer) -> None:
    from core.listen.stt import WhisperTranscriber, resolve_whisper_model
    from tests.helpers.speech import resample, word_errors

    audio = np.concatenate(list(piper.synthesize("**Turn on** the lights 💡")))
    heard = WhisperTranscriber(resolve_whisper_model("")).transcribe(resample(audio, piper.sample_rate), 16000)
    # Piper samples noise in its voice, so a word may be misheard; the markup and the emoji are never spoken.
    assert len(normalize_words(heard.text).split()) == 4
    assert word_errors("turn on the lights", heard.text) <= 1, heard.text


@pytest.mark.slow
def test_piper_says_nothing_for_nothing(piper: PiperSynthesizer) -> None:
    assert list(piper.synthesize("")) == []
    assert list(piper.synthesize(" 🐟 ** ")) == []


def test_missing_voice_names_the_path_and_the_setting(tmp_path) -> None:
    missing = tmp_path / "nobody.onnx"
    with pytest.raises(BackendError, match=r"nobody\.onnx is missing.*LOCAL_TTS_VOICE"):
        PiperSynthesizer(str(missing))
    missing.write_bytes(b"not a model")
    with pytest.raises(BackendError, match=r"nobody\.onnx\.json is missing"):
        PiperSynthesizer(str(missing))


@pytest.mark.parametrize(
    ("text", "spoken"),
    [
        ("**Hello** there! 🐟🎣", "Hello there!"),
        ("Read https://example.com/a?b=1 now.", "Read a link now."),
        ("See [the docs](https://x.io).", "See the docs."),
        ("# Shopping\n- milk\n- eggs", "Shopping. milk. eggs."),
        ("It's   a\n\tfine   day", "It's a fine day"),
        ("1. Milk\n2. Eggs\n\nThat is all", "1. Milk. 2. Eggs. That is all"),
        ("snake_case and don't stay", "snake_case and don't stay"),
        ("2*3 is six, #1 fish", "2 times 3 is six, number 1 fish"),
        ("> _quiet_ and __bold__ `code`", "quiet and bold code."),
        ("Thumbs 👍🏽 and flag 🇺🇸!", "Thumbs and flag !"),
        ("3.14 and Mr. Bass", "3.14 and Mr. Bass"),
        ("", ""),
    ],
)
def test_speakable(text: str, spoken: str) -> None:
    assert speakable(text) == spoken


# --- the OpenAI-compatible client, against a real HTTP server on 127.0.0.1 -------------------


class _Server(ThreadingHTTPServer):
    requests: list[dict]
    status: int
    pcm: bytes


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.requests.append(
            {"path": self.path, "authorization": self.headers.get("Authorization"), "json": body}
        )
        if self.server.status != 200:
            answer = b'{"error": {"message": "nope"}}'
            self.send_response(self.server.status)
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)
            return
        self.send_response(200)
        self.send_header("Content-Type", "audio/pcm")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        data = self.server.pcm
        for i in range(0, len(data), 999):  # odd sizes: samples split across chunks
            piece = data[i : i + 999]
            self.wfile.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def server() -> Iterator[_Server]:
    srv = _Server(("127.0.0.1", 0), _Handler)
    srv.requests, srv.status = [], 200
    srv.pcm = (np.sin(np.arange(24000) / 7) * 9000).astype("<i2").tobytes()
    with serving(srv):
        yield srv


def test_openai_synthesizer_streams_pcm(server: _Server) -> None:
    synthesizer = OpenAISynthesizer(base_url(server), "sk-test", "tts-1", "onyx", timeout=5)
    assert isinstance(synthesizer, Synthesizer) and synthesizer.sample_rate == 24000
    chunks = list(synthesizer.synthesize("**Hi** there 🐟"))
    assert len(chunks) > 1
    assert np.array_equal(np.concatenate(chunks), np.frombuffer(server.pcm, dtype="<i2"))
    (request,) = server.requests
    assert request["path"] == "/v1/audio/speech"
    assert request["authorization"] == "Bearer sk-test"
    assert request["json"] == {"model": "tts-1", "voice": "onyx", "input": "Hi there", "response_format": "pcm"}


def test_openai_synthesizer_errors(server: _Server) -> None:
    synthesizer = OpenAISynthesizer(base_url(server), "sk-wrong", timeout=5)
    server.status = 401
    with pytest.raises(BackendError, match=r"refused the API key.*OPENAI_API_KEY"):
        list(synthesizer.synthesize("Hello"))
    server.status = 503
    with pytest.raises(BackendError, match=r"HTTP 503"):
        list(synthesizer.synthesize("Hello"))
    assert list(synthesizer.synthesize("  ")) == []
    with pytest.raises(BackendError, match=r"unreachable.*OPENAI_BASE_URL"):
        list(OpenAISynthesizer("http://127.0.0.1:9/v1", "sk", timeout=2).synthesize("Hello"))

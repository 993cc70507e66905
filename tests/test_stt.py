"""Speech to text: the bundled tiny.en on real piper speech, the hallucination gate, the OpenAI client."""

from __future__ import annotations

import email.parser
import email.policy
import io
import json
import time
import wave
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from core.errors import BackendError
from core.interfaces import Transcriber
from core.listen.cloud import OpenAITranscriber
from core.listen.stt import (
    SegmentScore,
    WhisperTranscriber,
    gate,
    normalize_words,
    repeats_itself,
    resolve_whisper_model,
)
from tests.helpers.http import base_url, serving
from tests.helpers.speech import SAMPLE_RATE, mix, noise, resample, silence, speech_16k, word_errors

GOLDEN = "Turn on the kitchen lights please, and tell me a joke."


@pytest.fixture(scope="module")
def whisper() -> WhisperTranscriber:
    transcriber = WhisperTranscriber(resolve_whisper_model(""))
    transcriber.warm()
    return transcriber


@pytest.fixture(scope="module")
def short_whisper() -> WhisperTranscriber:
    transcriber = WhisperTranscriber(resolve_whisper_model(""), short_window=True)
    transcriber.warm()
    return transcriber


def test_resolve_empty_gives_the_bundled_tiny_en() -> None:
    folder = resolve_whisper_model("")
    assert folder.endswith("model")
    assert (Path(folder) / "model.bin").is_file()


def test_resolve_a_folder_and_refuse_a_missing_one(tmp_path) -> None:
    bundled = resolve_whisper_model("")
    assert resolve_whisper_model(bundled) == bundled
    with pytest.raises(BackendError, match=r"no model.bin"):
        resolve_whisper_model(str(tmp_path))
    with pytest.raises(BackendError, match=r"no such folder"):
        resolve_whisper_model(str(tmp_path / "nope"))


def test_resolve_a_name_not_on_disk_never_downloads() -> None:
    name = "Systran/faster-whisper-billy-test-absent"
    with pytest.raises(BackendError, match=r"is not on this machine.*download it once"):
        resolve_whisper_model(name)


@pytest.mark.slow
def test_golden_transcript_and_speed(whisper: WhisperTranscriber) -> None:
    assert isinstance(whisper, Transcriber)
    pcm = speech_16k(GOLDEN)
    started = time.monotonic()
    result = whisper.transcribe(pcm, SAMPLE_RATE)
    elapsed = time.monotonic() - started
    assert result.rejected_reason == ""
    assert word_errors(GOLDEN, result.text) <= 1, result.text
    assert elapsed < 5.0  # about 0.5 s on 2 shared cores; generous for a loaded CI box


SHORT_SENTENCES = [
    "What is the capital of France?",
    "Could you play a song for me, Billy?",
    "Remind me what the weather will be like in Paris tomorrow afternoon.",
]


@pytest.mark.slow
@pytest.mark.parametrize("text", SHORT_SENTENCES)
@pytest.mark.parametrize("snr_db", [None, 10])
def test_the_short_window_hears_what_the_30_s_window_hears(
    whisper: WhisperTranscriber, text: str, snr_db: float | None
) -> None:
    pcm = np.concatenate([silence(0.3), speech_16k(text), silence(0.1)])
    if snr_db is not None:
        pcm = mix(pcm, noise("pink", len(pcm) / SAMPLE_RATE, -40, seed=1), snr_db)
    audio = pcm.astype(np.float32) / 32768
    short = whisper._decode_short(audio)
    assert short is not None
    full = whisper._decode_full(audio, vad_filter=False)
    assert word_errors(" ".join(seg.text for seg in full), short.text) <= 1
    assert short.no_speech_prob < 0.5 and short.avg_logprob > -1.0 and short.compression_ratio < 2.4


@pytest.mark.slow
def test_a_looping_short_window_falls_back_to_30_s(short_whisper: WhisperTranscriber, monkeypatch) -> None:
    """With no padding at all tiny.en repeats this sentence until the length bound stops it."""
    monkeypatch.setattr("core.listen.stt.SHORT_CONTEXT_SECONDS", 0)
    voice = np.concatenate([silence(0.3), speech_16k("Tell me a joke about fish."), silence(0.1)])
    noisy = mix(voice, noise("pink", len(voice) / SAMPLE_RATE, -40, seed=1), 10)
    assert short_whisper._decode_short(noisy.astype(np.float32) / 32768) is None
    heard = normalize_words(short_whisper.transcribe(noisy, SAMPLE_RATE).text)
    assert heard.startswith("tell me a joke about") and len(heard.split()) == 6


def test_repeats_itself() -> None:
    assert repeats_itself("Tell me a joke about this. Tell me a")
    assert repeats_itself("Why is the sky blue? Why is the sky blue? Why is")
    assert not repeats_itself("No, no, no, that is not a fish.")
    assert not repeats_itself("Turn on the kitchen lights please, and tell me a joke.")
    assert not repeats_itself("I would like to know, I would like to know the weather.")


@pytest.mark.slow
def test_the_short_window_transcribes_through_the_gate(short_whisper: WhisperTranscriber) -> None:
    assert word_errors(GOLDEN, short_whisper.transcribe(speech_16k(GOLDEN), SAMPLE_RATE).text) <= 1
    for kind in ("silence", "pink", "slams"):
        assert short_whisper.transcribe(noise(kind, 2.0, -30, seed=2), SAMPLE_RATE).text == "", kind


def test_audio_longer_than_the_short_window_limit_takes_the_30_s_path(whisper: WhisperTranscriber) -> None:
    assert whisper._decode_short(np.zeros(29 * SAMPLE_RATE, dtype=np.float32)) is None


@pytest.mark.slow
def test_other_rates_and_noisy_speech(whisper: WhisperTranscriber) -> None:
    pcm = speech_16k("What time is it?")
    at_22k = resample(pcm, SAMPLE_RATE, 22050)
    assert normalize_words(whisper.transcribe(at_22k, 22050).text) == "what time is it"
    noisy = mix(pcm, noise("pink", 2.5, -40, seed=4), 15, offset=4000)
    assert normalize_words(whisper.transcribe(noisy, SAMPLE_RATE).text) == "what time is it"


@pytest.mark.slow
def test_a_clear_thank_you_is_kept(whisper: WhisperTranscriber) -> None:
    assert normalize_words(whisper.transcribe(speech_16k("Thank you."), SAMPLE_RATE).text) == "thank you"


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["silence", "white", "pink", "hum", "fan", "slams"])
@pytest.mark.parametrize("level", [-50, -20])
def test_silence_and_noise_give_nothing(whisper: WhisperTranscriber, kind: str, level: float) -> None:
    result = whisper.transcribe(noise(kind, 2.5, level, seed=1), SAMPLE_RATE)
    assert result.text == ""
    assert result.rejected_reason


@pytest.mark.slow
def test_empty_audio_gives_nothing(whisper: WhisperTranscriber) -> None:
    result = whisper.transcribe(np.zeros(0, dtype=np.int16), SAMPLE_RATE)
    assert result.text == "" and result.rejected_reason == "no audio"


@pytest.mark.slow
def test_gate_rejects_what_the_real_model_invents_on_noise(whisper: WhisperTranscriber) -> None:
    """With Whisper's own no-speech cut disabled, tiny.en says "you" on loud white noise: the gate drops it."""
    audio = noise("white", 3, -20, seed=1).astype(np.float32) / 32768
    segments, _ = whisper._model.transcribe(
        audio, language="en", beam_size=1, no_speech_threshold=None, log_prob_threshold=None, without_timestamps=True
    )
    raw = [SegmentScore(s.text, s.no_speech_prob, s.avg_logprob, s.compression_ratio) for s in segments]
    assert normalize_words(" ".join(s.text for s in raw))  # the model did invent something
    result = gate(raw, -20.0)
    assert result.text == "" and result.rejected_reason


def test_gate_rules() -> None:
    sure = dict(no_speech_prob=0.05, avg_logprob=-0.2, compression_ratio=1.0)
    assert gate([SegmentScore(" Thanks for watching!", 0.4, -0.5, 1.0)], -20).rejected_reason.startswith(
        "known hallucination"
    )
    assert gate([SegmentScore(" Thank you.", 0.05, -0.1, 0.6)], -15).text == "Thank you."
    assert gate([SegmentScore(" Thank you.", 0.05, -0.1, 0.6)], -50).text == ""  # too faint to trust
    assert gate([SegmentScore(" [Music]", **sure)], -20).rejected_reason == "only a sound tag"
    assert gate([SegmentScore(" ♪ ♪", **sure)], -20).text == ""
    assert gate([SegmentScore(" Hello there.", 0.9, -0.3, 1.0)], -20).rejected_reason.startswith("no speech")
    assert gate([SegmentScore(" Hello there.", 0.1, -1.5, 1.0)], -20).rejected_reason.startswith("unsure")
    assert gate([SegmentScore(" la la la la la la la la", 0.1, -0.3, 3.1)], -20).rejected_reason.startswith(
        "repetitive"
    )
    kept = gate([SegmentScore(" Turn on the light", **sure), SegmentScore(" you", 0.95, -1.5, 0.3)], -20)
    assert kept.text == "Turn on the light"


# --- the OpenAI-compatible client, against a real HTTP server on 127.0.0.1 -------------------


class _Server(ThreadingHTTPServer):
    requests: list[dict]
    status: int
    answer: bytes


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            f"Content-Type: {self.headers['Content-Type']}\r\n\r\n".encode() + body
        )
        parts = {part.get_param("name", header="content-disposition"): part for part in message.iter_parts()}
        self.server.requests.append(
            {
                "path": self.path,
                "authorization": self.headers.get("Authorization"),
                "fields": {k: v.get_content() for k, v in parts.items() if k != "file"},
                "file": parts["file"].get_payload(decode=True) if "file" in parts else None,
                "filename": parts["file"].get_filename() if "file" in parts else None,
            }
        )
        self.send_response(self.server.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(self.server.answer)))
        self.end_headers()
        self.wfile.write(self.server.answer)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def server() -> Iterator[_Server]:
    srv = _Server(("127.0.0.1", 0), _Handler)
    srv.requests, srv.status, srv.answer = [], 200, json.dumps({"text": " Hello there."}).encode()
    with serving(srv):
        yield srv


def test_openai_transcriber_posts_a_wav(server: _Server) -> None:
    pcm = (np.sin(np.arange(8000) / 5) * 8000).astype(np.int16)
    transcriber = OpenAITranscriber(base_url(server), "sk-test", "whisper-1", timeout=5)
    assert isinstance(transcriber, Transcriber)
    assert transcriber.transcribe(pcm, SAMPLE_RATE).text == "Hello there."
    (request,) = server.requests
    assert request["path"] == "/v1/audio/transcriptions"
    assert request["authorization"] == "Bearer sk-test"
    assert request["fields"]["model"] == "whisper-1"
    assert request["filename"].endswith(".wav")
    with wave.open(io.BytesIO(request["file"])) as wav:
        assert wav.getframerate() == SAMPLE_RATE and wav.getnchannels() == 1 and wav.getsampwidth() == 2
        assert np.array_equal(np.frombuffer(wav.readframes(wav.getnframes()), dtype=np.int16), pcm)


def test_openai_transcriber_skips_silence(server: _Server) -> None:
    transcriber = OpenAITranscriber(base_url(server), "sk-test", timeout=5)
    assert transcriber.transcribe(silence(1), SAMPLE_RATE).text == ""
    assert transcriber.transcribe(np.zeros(0, dtype=np.int16), SAMPLE_RATE).text == ""
    assert server.requests == []


def test_openai_transcriber_bad_key_and_garbage(server: _Server) -> None:
    pcm = (np.sin(np.arange(8000) / 5) * 8000).astype(np.int16)
    transcriber = OpenAITranscriber(base_url(server), "sk-wrong", timeout=5)
    server.status, server.answer = 401, b'{"error": {"message": "Incorrect API key"}}'
    with pytest.raises(BackendError, match=r"refused the API key.*OPENAI_API_KEY"):
        transcriber.transcribe(pcm, SAMPLE_RATE)
    server.status, server.answer = 200, b"<html>not json</html>"
    with pytest.raises(BackendError, match=r"without a text field"):
        transcriber.transcribe(pcm, SAMPLE_RATE)
    server.status, server.answer = 500, b"upstream down"
    with pytest.raises(BackendError, match=r"HTTP 500: upstream down"):
        transcriber.transcribe(pcm, SAMPLE_RATE)


def test_openai_transcriber_dead_service() -> None:
    with pytest.raises(BackendError, match=r"unreachable.*OPENAI_BASE_URL"):
        OpenAITranscriber("http://127.0.0.1:9/v1", "sk", timeout=2).transcribe(
            (np.ones(4000) * 5000).astype(np.int16), SAMPLE_RATE
        )

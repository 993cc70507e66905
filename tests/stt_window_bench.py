"""Word errors and time of Whisper's 30 s window against the short window (`STT_SHORT_WINDOW`).

Run: `.venv/bin/python -m tests.stt_window_bench`. Twenty questions spoken by the bundled
voice, each clean and in pink noise (10 dB SNR), each ending right at the last word and
100 ms after it (as the endpointer cuts it): 80 utterances.
"""

from __future__ import annotations

import time

import numpy as np

from core.dev import bench
from core.listen.stt import WhisperTranscriber, normalize_words, resolve_whisper_model
from tests.helpers.speech import SAMPLE_RATE, mix, noise, silence, speech_16k, trimmed, word_errors

QUESTIONS = (
    *bench.QUESTIONS,
    "Turn on the kitchen lights please.",
    "Set your humor to ninety percent.",
    "Could you play a song for me, Billy?",
    "Remind me what the weather will be like in Paris tomorrow afternoon.",
    "I would like to know about the history of the Roman empire.",
    "Switch off the living room fan.",
    "Be more sarcastic from now on.",
    "Sing me something nice.",
    "Goodbye Billy, see you later.",
    "What time is it in Tokyo?",
    "Open the garage door.",
    "Do you like music?",
    "Tell me about your favourite river.",
    "Set the thermostat to twenty one degrees.",
    "Who wrote Romeo and Juliet?",
)


def utterances() -> list[tuple[str, np.ndarray]]:
    out = []
    for i, text in enumerate(QUESTIONS):
        voice = trimmed(speech_16k(text))
        for tail in (0.0, 0.1):
            pcm = np.concatenate([silence(0.3), voice, silence(tail)])
            out.append((text, pcm))
            out.append((text, mix(pcm, noise("pink", len(pcm) / SAMPLE_RATE, -40, seed=i), 10)))
    return out


def main() -> None:
    cases = utterances()
    words = sum(len(normalize_words(text).split()) for text, _ in cases)
    print(f"{len(cases)} utterances, {words} words")
    for short in (False, True):
        whisper = WhisperTranscriber(resolve_whisper_model(""), short_window=short)
        whisper.warm()
        errors, seconds = 0, []
        for text, pcm in cases:
            started = time.monotonic()
            heard = whisper.transcribe(pcm, SAMPLE_RATE).text
            seconds.append(time.monotonic() - started)
            errors += word_errors(text, heard)
        name = "short window" if short else "30 s window"
        print(
            f"{name:>12}: {errors} words wrong ({100 * errors / words:.1f}%), "
            f"median {1000 * float(np.median(seconds)):.0f} ms per utterance"
        )


if __name__ == "__main__":
    main()

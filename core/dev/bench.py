"""`python main.py bench`: latency (and lip-sync) figures from real simulated sessions.

It speaks a set of questions with the bundled voice (or takes your WAVs), runs them through
`simulate` exactly as a user turn would go, and prints the median and worst of every
latency figure in turns.jsonl, plus the orchestration overhead: end of speech to first
audio, minus the time inside the models, the end-silence wait and the output latency.
"""

from __future__ import annotations

import json
import logging
import statistics
import tempfile
from pathlib import Path

import numpy as np

from core.config import Settings

log = logging.getLogger(__name__)

QUESTIONS = (
    "What is the capital of France?",
    "Tell me a joke about fish.",
    "How are you doing today?",
    "What should I cook for dinner tonight?",
    "Why is the sky blue?",
)
FIGURES = ("endpoint", "stt", "llm_first_sentence", "tts_first_audio", "output_latency", "end_of_speech_to_first_audio")
MODEL_FIGURES = ("endpoint", "stt", "llm_first_sentence", "tts_first_audio", "output_latency")


def make_utterances(settings: Settings, folder: Path) -> list[Path]:
    """Speak the bench questions with the local voice into 16 kHz WAVs (cached in `folder`)."""
    from core.audio.transforms import resample
    from core.audio.wav import write_wav
    from core.voice.tts import PiperSynthesizer

    folder.mkdir(parents=True, exist_ok=True)
    synthesizer = None
    paths = []
    for i, question in enumerate(QUESTIONS):
        path = folder / f"q{i}.wav"
        if not path.exists():
            synthesizer = synthesizer or PiperSynthesizer(settings.models.local_tts_voice)
            pcm = np.concatenate(list(synthesizer.synthesize(question)))
            pcm = resample(pcm, synthesizer.sample_rate, 16000)
            pad = np.zeros(8000, dtype=np.int16)
            write_wav(path, np.concatenate([pad, pcm, pad]), 16000)
        paths.append(path)
    return paths


def summarize(turns: list[dict]) -> list[tuple[str, float, float]]:
    """(figure, median ms, worst ms) for each latency figure and the overhead."""
    rows = []
    for name in FIGURES:
        values = [t["latency_ms"][name] for t in turns if name in t.get("latency_ms", {})]
        if values:
            rows.append((name, statistics.median(values), max(values)))
    overheads = [overhead(t["latency_ms"]) for t in turns if "end_of_speech_to_first_audio" in t.get("latency_ms", {})]
    if overheads:
        rows.append(("overhead", statistics.median(overheads), max(overheads)))
    return rows


def overhead(latency: dict[str, float]) -> float:
    """Time to first audio not spent in a model, the end-silence wait or the sound card's buffer."""
    return latency["end_of_speech_to_first_audio"] - sum(latency.get(k, 0.0) for k in MODEL_FIGURES)


def format_table(rows: list[tuple[str, float, float]], count: int) -> str:
    lines = [f"{'figure (ms)':<30} {'median':>8} {'worst':>8}   over {count} turns"]
    lines += [f"{name:<30} {median:>8.0f} {worst:>8.0f}" for name, median, worst in rows]
    return "\n".join(lines)


async def run_bench(settings: Settings, inputs: list[Path], rounds: int, out: Path | None) -> int:
    from core.dev.simulate import simulate

    work = out or Path(tempfile.mkdtemp(prefix="billy-bench-"))
    utterances = inputs or make_utterances(settings, settings.cache_dir / "bench")
    turns: list[dict] = []
    lipsync: list[tuple[float, float]] = []
    for r in range(max(1, rounds)):
        run_dir = work / f"round{r}"
        code = await simulate(settings, list(utterances), run_dir, naive_motion=True)
        if code != 0:
            print(f"bench: the simulation failed (exit {code}); see the log above")
            return code
        with (run_dir / "turns.jsonl").open() as f:
            turns += [json.loads(line) for line in f if line.strip()]
        offsets = lipsync_offsets(run_dir)
        if offsets is not None:
            lipsync.append(offsets)
    answered = [t for t in turns if t.get("reply")]
    print()
    print(format_table(summarize(answered), len(answered)))
    backends = sorted({json.dumps(t.get("backends", {}), sort_keys=True) for t in answered})
    print("backends used: " + "; ".join(backends))
    if lipsync:
        played = statistics.median(a for a, _ in lipsync)
        naive = statistics.median(b for _, b in lipsync)
        print(
            f"lip sync offset (ms, mouth vs heard audio): play-clock design {played:+.1f}"
            f"   naive (queue time) {naive:+.1f}"
        )
    print(f"outputs: {work}")
    return 0


def lipsync_offsets(run_dir: Path) -> tuple[float, float] | None:
    """(offset of Billy's mouth, offset a queue-time mouth would have) for one run, in ms."""
    from core.dev.lipsync_bench import lipsync_offset

    motion, speaker = run_dir / "motion.jsonl", run_dir / "speaker.wav"
    if not motion.exists() or motion.stat().st_size == 0:
        return None
    return lipsync_offset(motion, speaker), lipsync_offset(run_dir / "motion_naive.jsonl", speaker)

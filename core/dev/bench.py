"""`python main.py bench`: latency (and lip-sync) figures from real simulated sessions.

It speaks two sets with the bundled voice (or takes your WAVs) and runs them through
`simulate` exactly as user turns go: the five short questions of the first bench, and a
second set of requests of every kind (commands, Home Assistant commands and questions,
chit-chat, long requests, and phrases cut off by a pause then finished) from
`bench_requests.jsonl`. Home Assistant is simulated on loopback, trait changes land in a
temporary copy of the personas. It prints the median, 90th percentile and worst of every
latency figure, per kind of request, plus the orchestration overhead (end of speech to first
audio, minus the models, the end-silence wait, the hold and the output latency) and the
cut-offs: a paused request answered in pieces, or whose turn lost its end.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import shutil
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
REQUESTS = Path(__file__).with_name("bench_requests.jsonl")
FIGURES = (
    "endpoint",
    "stt",
    "llm_first_sentence",
    "tts_first_audio",
    "hold",
    "output_latency",
    "end_of_speech_to_first_audio",
)
MODEL_FIGURES = ("endpoint", "stt", "llm_first_sentence", "tts_first_audio", "hold", "output_latency")
KEY = "end_of_speech_to_first_audio"


@dataclasses.dataclass(frozen=True)
class Request:
    kind: str
    parts: tuple[str, ...]
    pause_ms: int = 0

    @property
    def text(self) -> str:
        return " ".join(self.parts)


def load_requests(path: Path = REQUESTS) -> list[Request]:
    """The second set; a bad line raises ValueError naming the file and line."""
    requests = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            data = json.loads(line)
            say = data["say"]
            parts = tuple(say) if isinstance(say, list) else (say,)
            requests.append(Request(data["kind"], parts, int(data.get("pause_ms", 0))))
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{path}:{number} is not a valid request ({exc}).") from exc
    return requests


def make_utterances(settings: Settings, requests: list[Request], folder: Path) -> list[Path]:
    """Speak each request with the local voice into a 16 kHz WAV (cached in `folder` by its words)."""
    from core.audio.transforms import resample
    from core.audio.wav import write_wav
    from core.voice.tts import PiperSynthesizer

    folder.mkdir(parents=True, exist_ok=True)
    synthesizer = None
    paths = []
    for request in requests:
        name = re.sub(r"[^a-z0-9]+", "_", f"{request.text} {request.pause_ms}".lower()).strip("_")[:80]
        path = folder / f"{name}.wav"
        if not path.exists():
            synthesizer = synthesizer or PiperSynthesizer(settings.models.local_tts_voice)
            pieces = []
            for i, part in enumerate(request.parts):
                if i:
                    pieces.append(np.zeros(int(16000 * request.pause_ms / 1000), dtype=np.int16))
                pcm = np.concatenate(list(synthesizer.synthesize(part)))
                pieces.append(resample(pcm, synthesizer.sample_rate, 16000))
            pad = np.zeros(8000, dtype=np.int16)
            write_wav(path, np.concatenate([pad, *pieces, pad]), 16000)
        paths.append(path)
    return paths


def overhead(latency: dict[str, float]) -> float:
    """Time to first audio not spent in a model, the end-silence wait, the hold or the sound card's buffer."""
    return latency[KEY] - sum(latency.get(k, 0.0) for k in MODEL_FIGURES)


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def summarize(turns: list[dict]) -> list[tuple[str, float, float, float]]:
    """(figure, median, p90, worst) in ms for each latency figure and the overhead."""
    rows = []
    for name in FIGURES:
        values = [t["latency_ms"][name] for t in turns if name in t.get("latency_ms", {})]
        if values:
            rows.append((name, statistics.median(values), _percentile(values, 0.9), max(values)))
    overheads = [overhead(t["latency_ms"]) for t in turns if KEY in t.get("latency_ms", {})]
    if overheads:
        rows.append(("overhead", statistics.median(overheads), _percentile(overheads, 0.9), max(overheads)))
    return rows


def format_table(rows: list[tuple[str, float, float, float]], count: int) -> str:
    lines = [f"{'figure (ms)':<30} {'median':>8} {'p90':>8} {'worst':>8}   over {count} turns"]
    lines += [f"{name:<30} {median:>8.0f} {p90:>8.0f} {worst:>8.0f}" for name, median, p90, worst in rows]
    return "\n".join(lines)


def cut_offs(requests: list[Request], turns: list[dict]) -> list[str]:
    """Each paused request not answered as one whole turn: what went wrong."""
    problems = []
    for index, request in enumerate(requests):
        if request.kind != "pause":
            continue
        mine = [t for t in turns if t.get("input") == index]
        last_word = re.findall(r"[a-z]+", request.parts[-1].lower())[-1]
        answered = [t for t in mine if not t.get("error")]
        if len(answered) != 1:
            problems.append(f"{request.text!r}: {len(answered)} turns ({[t['transcript'] for t in mine]})")
        elif last_word not in answered[0]["transcript"].lower():
            problems.append(f"{request.text!r}: the turn heard only {answered[0]['transcript']!r}")
    return problems


async def run_bench(settings: Settings, inputs: list[Path], rounds: int, out: Path | None) -> int:
    from core.dev.home_sim import SimulatedHomeAssistant
    from core.dev.simulate import simulate

    work = out or Path(tempfile.mkdtemp(prefix="billy-bench-"))
    cache = settings.cache_dir / "bench"
    sets: list[tuple[str, list[Request], list[Path]]] = []
    if inputs:
        sets.append(("your inputs", [Request("input", (p.name,)) for p in inputs], list(inputs)))
    else:
        questions = [Request("question", (q,)) for q in QUESTIONS]
        requests = load_requests()
        sets.append(("first set", questions, make_utterances(settings, questions, cache)))
        sets.append(("second set", requests, make_utterances(settings, requests, cache)))
    personas = work / "personas"
    lipsync: list[tuple[float, float]] = []
    report: list[str] = []
    with SimulatedHomeAssistant() as home:
        for title, requests, paths in sets:
            turns: list[dict] = []
            for r in range(max(1, rounds)):
                shutil.rmtree(personas, ignore_errors=True)
                shutil.copytree(settings.persona.directory, personas)
                run_settings = dataclasses.replace(
                    settings,
                    persona=dataclasses.replace(settings.persona, directory=personas),
                    home_assistant=dataclasses.replace(settings.home_assistant, host=home.url, token=home.token),
                )
                run_dir = work / f"{title.replace(' ', '_')}_round{r}"
                code = await simulate(run_settings, paths, run_dir, naive_motion=True)
                if code != 0:
                    print(f"bench: the simulation failed (exit {code}); see the log above")
                    return code
                with (run_dir / "turns.jsonl").open() as f:
                    round_turns = [json.loads(line) for line in f if line.strip()]
                turns += round_turns
                report += [f"round {r}: {problem}" for problem in cut_offs(requests, round_turns)]
                offsets = lipsync_offsets(run_dir)
                if offsets is not None:
                    lipsync.append(offsets)
            _print_set(title, requests, turns)
    print("cut-offs on the paused requests: " + (f"{len(report)}\n  " + "\n  ".join(report) if report else "none"))
    if lipsync:
        played = statistics.median(a for a, _ in lipsync)
        naive = statistics.median(b for _, b in lipsync)
        print(
            f"lip sync offset (ms, mouth vs heard audio): play-clock design {played:+.1f}"
            f"   naive (queue time) {naive:+.1f}"
        )
    print(f"outputs: {work}")
    return 0


def _print_set(title: str, requests: list[Request], turns: list[dict]) -> None:
    answered = [t for t in turns if t.get("reply") and KEY in t.get("latency_ms", {})]
    print(f"\n== {title}: {len(requests)} requests ==")
    print(format_table(summarize(answered), len(answered)))
    kinds = sorted({r.kind for r in requests})
    if len(kinds) > 1:
        print(
            f"\n{'kind':<10} {'turns':>5} {'median':>8} {'p90':>8} {'overhead':>9}   (end of speech to first audio, ms)"
        )
        for kind in kinds:
            mine = [t for t in answered if requests[t["input"]].kind == kind]
            values = [t["latency_ms"][KEY] for t in mine]
            if values:
                over = statistics.median(overhead(t["latency_ms"]) for t in mine)
                median, p90 = statistics.median(values), _percentile(values, 0.9)
                print(f"{kind:<10} {len(values):>5} {median:>8.0f} {p90:>8.0f} {over:>9.0f}")
    decided = {}
    for t in answered:
        decided[t.get("decided_by") or "?"] = decided.get(t.get("decided_by") or "?", 0) + 1
    print("decided by: " + ", ".join(f"{k} {v}" for k, v in sorted(decided.items())))
    backends = sorted({json.dumps(t.get("backends", {}), sort_keys=True) for t in answered})
    print("backends used: " + "; ".join(backends))


def lipsync_offsets(run_dir: Path) -> tuple[float, float] | None:
    """(offset of Billy's mouth, offset a queue-time mouth would have) for one run, in ms."""
    from core.dev.lipsync_bench import lipsync_offset

    motion, speaker = run_dir / "motion.jsonl", run_dir / "speaker.wav"
    if not motion.exists() or motion.stat().st_size == 0:
        return None
    return lipsync_offset(motion, speaker), lipsync_offset(run_dir / "motion_naive.jsonl", speaker)

"""`StreamResampler` (core/audio/transforms.py) against python-soxr's `ResampleStream`.

Run: `.venv/bin/python -m tests.resampler_bench` (needs `pip install soxr==1.1.0`; not a test,
not a dependency). For each rate pair Billy uses and each implementation it prints one row:

  cpu ms   CPU time (time.process_time, median of RUNS) to stream 60 s of speech-like audio
           in 20 ms chunks (xRT: times faster than real time); +peek: the same with the
           `peek_flush()` playback.py calls after every `process()` (StreamResampler only).
  hold ms  output withheld while streaming (mean of ideal count so far - samples returned):
           what waits for the next chunk, i.e. what `peek_flush()` has to supply.
  rip.9N   passband ripple, max - min gain (dB) of 40 tones from 50 Hz to 0.9 x the lower
           Nyquist; rip.75N the same up to 0.75 x (where both filters are meant to be flat);
           -3dB     where the gain first falls 3 dB, as a fraction of the lower Nyquist.
  rej1.05 / rej1.2+   alias (down) or image (up) rejection, dB, of a tone whose mirror
           lies at 1.05 x the lower Nyquist / the worst of 1.2 x and 1.5 x (narrow-band fit,
           so it reads below the int16 noise floor; "inf": the output rounds to silence).
  SNR1k    1 kHz sine at -6 dBFS: power of the fitted sine / everything else (THD+N), dB.
  lag      output lag in output samples: from the phase of the 1 kHz tone / from the peak
           (parabolic) of 20 clicks, mean. 0 = time-aligned like StreamResampler promises.
  chunk    max |difference| (LSB) of 20 ms chunks and of random 1..2000-sample chunks
           against one call with the whole signal.
  len      "ok" when every flushed output length == ceil(n_in * out / in) for 5 lengths,
           else the offsets seen.
  silence  nonzero output samples (%) from digital silence (soxr int16 output is dithered).
  peek     soxr has no copy/clone (CSoxr cannot be pickled or deep-copied), so `peek_flush`
           can only be emulated by replaying the last input (>= 8192 samples, cut on a
           multiple of in/gcd so the output grid lines up) through a fresh stream with
           last=True. Shown: max |emulated tail - real flush| (LSB) / CPU us per call.
"""

from __future__ import annotations

import math
import statistics
import time

import numpy as np
from scipy import signal

from core.audio.transforms import StreamResampler

try:
    import soxr
except ImportError as e:  # pragma: no cover - a bench, not a test
    raise SystemExit("soxr is not installed: .venv/bin/pip install soxr==1.1.0") from e

PAIRS = [(22050, 48000), (22050, 44100), (16000, 48000), (48000, 16000), (44100, 16000), (16000, 22050)]
CHUNK_MS = 20
STREAM_S = 60.0
RUNS = 5
TRIM_S = 0.1
"""Start-up and end of every quality signal left out of the fits."""


# --- implementations behind one interface ------------------------------------------------


class _Impl:
    name = ""

    def process(self, x: np.ndarray) -> np.ndarray: ...

    def flush(self) -> np.ndarray: ...


class Ours(_Impl):
    def __init__(self, in_rate: int, out_rate: int, peek: bool = False) -> None:
        self.r = StreamResampler(in_rate, out_rate)
        self.peek = peek
        self.name = "Stream+peek" if peek else "StreamResampler"

    def process(self, x: np.ndarray) -> np.ndarray:
        out = self.r.process(x)
        if self.peek:
            self.r.peek_flush()
        return out

    def flush(self) -> np.ndarray:
        return self.r.flush()


class Soxr(_Impl):
    """`soxr.ResampleStream`; int16 as the brief asks, or float32 with our own rounding (no dither)."""

    def __init__(self, in_rate: int, out_rate: int, quality: str = "HQ", dtype: str = "int16") -> None:
        self.dtype = dtype
        self.s = soxr.ResampleStream(in_rate, out_rate, 1, dtype=dtype, quality=quality)
        self.name = f"soxr {quality} {'i16' if dtype == 'int16' else 'f32'}"

    def _conv_in(self, x: np.ndarray) -> np.ndarray:
        if self.dtype == "int16":
            return np.ascontiguousarray(x, dtype=np.int16)
        return x.astype(np.float32) * np.float32(1 / 32768)

    def _conv_out(self, y: np.ndarray) -> np.ndarray:
        if self.dtype == "int16":
            return y
        return np.clip(np.rint(y.astype(np.float64) * 32768.0), -32768, 32767).astype(np.int16)

    def process(self, x: np.ndarray) -> np.ndarray:
        return self._conv_out(self.s.resample_chunk(self._conv_in(x)))

    def flush(self) -> np.ndarray:
        return self._conv_out(self.s.resample_chunk(self._conv_in(np.zeros(0, np.int16)), last=True))


IMPLS = [
    ("StreamResampler", lambda i, o: Ours(i, o)),
    ("soxr MQ i16", lambda i, o: Soxr(i, o, "MQ")),
    ("soxr HQ i16", lambda i, o: Soxr(i, o, "HQ")),
    ("soxr VHQ i16", lambda i, o: Soxr(i, o, "VHQ")),
    ("soxr HQ f32", lambda i, o: Soxr(i, o, "HQ", "float32")),
]


def one_shot(make, x: np.ndarray, i: int, o: int) -> np.ndarray:
    r = make(i, o)
    return np.concatenate([r.process(x), r.flush()])


def chunked(make, x: np.ndarray, i: int, o: int, sizes) -> np.ndarray:
    r = make(i, o)
    parts, pos = [], 0
    for n in sizes:
        if pos >= x.size:
            break
        parts.append(r.process(x[pos : pos + n]))
        pos += n
    parts.append(r.flush())
    return np.concatenate(parts)


# --- signals -----------------------------------------------------------------------------


def speech_like(rate: int, seconds: float, seed: int = 7) -> np.ndarray:
    """Syllables of a glottal pulse train through three moving formants, fricative noise, pauses."""
    rng = np.random.default_rng(seed)
    n = round(rate * seconds)
    out = np.zeros(n)
    pos = 0
    while pos < n:
        syl = int(rate * rng.uniform(0.12, 0.3))
        seg = min(syl, n - pos)
        t = np.arange(seg) / rate
        f0 = rng.uniform(90, 170) * (1 + 0.15 * np.sin(2 * np.pi * rng.uniform(2, 5) * t))
        phase = np.cumsum(f0 / rate)
        pulses = np.diff(np.floor(phase), prepend=0.0)
        voiced = pulses
        for fc, bw in ((rng.uniform(300, 800), 80), (rng.uniform(900, 2200), 120), (rng.uniform(2300, 3200), 200)):
            r = math.exp(-math.pi * bw / rate)
            th = 2 * math.pi * min(fc, 0.45 * rate) / rate
            voiced = voiced + signal.lfilter([1 - r], [1, -2 * r * math.cos(th), r * r], pulses) * 8
        fric = signal.lfilter(*signal.butter(2, 0.5, "high"), rng.standard_normal(seg)) * 0.08
        frame = voiced + (fric if rng.random() < 0.3 else 0.0)
        env = np.sin(np.pi * np.arange(seg) / seg) ** 0.5
        out[pos : pos + seg] = frame * env
        pos += seg + int(rate * rng.choice([0.0, 0.0, 0.05, 0.3]))
    out *= 0.7 * 32767 / np.abs(out).max()
    return np.rint(out).astype(np.int16)


def tones(freqs, amps, rate: int, seconds: float, phases) -> np.ndarray:
    t = np.arange(round(rate * seconds)) / rate
    x = sum(a * np.sin(2 * np.pi * f * t + p) for f, a, p in zip(freqs, amps, phases, strict=True))
    return np.rint(x).astype(np.int16)


def fit(y: np.ndarray, rate: int, freqs) -> np.ndarray:
    """Complex amplitude a·e^{iφ} of each a·sin(2π f n/rate + φ) in the middle of `y` (LS, with DC)."""
    trim = round(TRIM_S * rate)
    n = np.arange(trim, y.size - trim)
    v = y[trim : y.size - trim].astype(np.float64)
    cols = [np.ones(n.size)]
    for f in freqs:
        w = 2 * np.pi * f * n / rate
        cols += [np.sin(w), np.cos(w)]
    coef, *_ = np.linalg.lstsq(np.stack(cols, axis=1), v, rcond=None)
    s, c = coef[1::2], coef[2::2]
    return s + 1j * c  # a sin(w+φ) = a cosφ sin w + a sinφ cos w


def fold(f: float, rate: int) -> float:
    f = f % rate
    return rate - f if f > rate / 2 else f


# --- measurements ------------------------------------------------------------------------


def speed(make, i: int, o: int, x: np.ndarray) -> tuple[float, float]:
    """Median CPU ms to stream `x` in 20 ms chunks, and mean withheld output (ms)."""
    step = round(i * CHUNK_MS / 1000)
    times, hold = [], 0.0
    for run in range(RUNS):
        r = make(i, o)
        held, got = [], 0
        t0 = time.process_time()
        for pos in range(0, x.size, step):
            got += r.process(x[pos : pos + step]).size
            if run == 0:
                held.append(min(pos + step, x.size) * o / i - got)
        r.flush()
        times.append(time.process_time() - t0)
        if run == 0:
            hold = statistics.fmean(held) / o * 1000
    return statistics.median(times) * 1000, hold


def passband(make, i: int, o: int) -> tuple[float, float, float]:
    nyq = min(i, o) / 2
    freqs = np.linspace(50, 0.9 * nyq, 40)
    rng = np.random.default_rng(3)
    x = tones(freqs, [700] * 40, i, 1.0, rng.uniform(0, 2 * np.pi, 40))
    gain = 20 * np.log10(np.abs(fit(one_shot(make, x, i, o), o, freqs)) / 700)
    flat = gain[freqs <= 0.75 * nyq]
    edge = np.linspace(0.7, 0.995, 60) * nyq
    x = tones(edge, [450] * 60, i, 1.0, rng.uniform(0, 2 * np.pi, 60))
    g = 20 * np.log10(np.abs(fit(one_shot(make, x, i, o), o, edge)) / 450)
    below = np.nonzero(g < -3.0)[0]
    minus3 = edge[below[0]] / nyq if below.size else 1.0
    return gain.max() - gain.min(), flat.max() - flat.min(), minus3


def rejection(make, i: int, o: int, r: float) -> float:
    """dB between a tone and its mirror at r x the lower Nyquist (alias when going down, image going up)."""
    if o < i:
        f = r * o / 2
        mirror = fold(f, o)
    else:
        f = (2 - r) * i / 2
        mirror = fold(i - f, o)
    x = tones([f], [16000], i, 1.0, [0.4])
    y = one_shot(make, x, i, o)
    if not y[round(TRIM_S * o) : -round(TRIM_S * o)].any():
        return math.inf  # the tone rounds away to digital silence
    a = np.abs(fit(y, o, [mirror]))[0]
    return 20 * np.log10(16000 / max(a, 1e-12))


def snr_and_tone_lag(make, i: int, o: int) -> tuple[float, float]:
    x = tones([1000], [16384], i, 1.0, [0.3])
    y = one_shot(make, x, i, o).astype(np.float64)
    trim = round(TRIM_S * o)
    n = np.arange(trim, y.size - trim)
    amp = fit(y, o, [1000])[0]
    model = np.abs(amp) * np.sin(2 * np.pi * 1000 * n / o + np.angle(amp))
    resid = y[trim : y.size - trim] - model
    resid -= resid.mean()
    snr = 10 * np.log10(np.mean(model**2) / np.mean(resid**2))
    dphi = (0.3 - np.angle(amp) + np.pi) % (2 * np.pi) - np.pi
    return snr, dphi / (2 * np.pi * 1000) * o


def click_lag(make, i: int, o: int) -> float:
    x = np.zeros(i, dtype=np.int16)
    where = np.arange(20) * (i // 25) + i // 20 + np.arange(20) * 7  # varied phase against the output grid
    x[where] = 16000
    y = one_shot(make, x, i, o).astype(np.float64)
    lags = []
    for k in where:
        e = k * o / i
        m = round(e)
        w = max(3, round(2 * o / i))
        j = m - w + int(np.argmax(y[m - w : m + w + 1]))
        a, b, c = y[j - 1], y[j], y[j + 1]
        den = a - 2 * b + c
        lags.append(j + (0.5 * (a - c) / den if den else 0.0) - e)
    return statistics.fmean(lags)


def chunk_and_length(make, i: int, o: int) -> tuple[int, str]:
    x = speech_like(i, 2.0, seed=11)[: 2 * i + 7]
    whole = one_shot(make, x, i, o)
    step = round(i * CHUNK_MS / 1000)
    rng = np.random.default_rng(i + o)
    worst = 0
    for sizes in ([step] * (x.size // step + 1), rng.choice([1, 2, 3, 160, 441, 1024, 2000], 20000)):
        c = chunked(make, x, i, o, sizes)
        if c.size != whole.size:
            return 99999, f"chunked len {c.size} != {whole.size}"
        worst = max(worst, int(np.abs(c.astype(np.int32) - whole).max()))
    g = i // math.gcd(i, o)
    offs = set()
    for n in (x.size, i // 2 + 7, g * 3 + 1, 333, round(i * STREAM_S) + 5):
        xs = speech_like(i, n / i + 0.01, seed=n)[:n]
        got = one_shot(make, xs, i, o).size
        if got != math.ceil(n * o / i):
            offs.add(got - math.ceil(n * o / i))
    return worst, "ok" if not offs else ",".join(f"{d:+d}" for d in sorted(offs))


def silence(make, i: int, o: int) -> float:
    y = one_shot(make, np.zeros(i, dtype=np.int16), i, o)
    return 100.0 * np.count_nonzero(y) / y.size


def soxr_peek(i: int, o: int, quality: str, dtype: str) -> tuple[int, float]:
    """Emulated peek_flush for soxr (fresh stream over recent input), checked against a twin's real flush."""
    g = math.gcd(i, o)
    up, down = o // g, i // g
    x = speech_like(i, 1.5, seed=5)
    step = round(i * CHUNK_MS / 1000)
    main = Soxr(i, o, quality, dtype)
    n_in = n_out = 0
    worst, costs = 0, []
    for pos in range(0, x.size - step, step):
        chunk = x[pos : pos + step]
        n_out += main.process(chunk).size
        n_in += chunk.size
        if (pos // step) % 10 != 9:
            continue
        t0 = time.process_time()
        start = max(0, (n_in - 8192) // down * down)  # output grid of a fresh stream lines up here
        fresh = Soxr(i, o, quality, dtype)
        z = np.concatenate([fresh.process(x[start:n_in]), fresh.flush()])
        tail = z[n_out - start * up // down :]
        costs.append(time.process_time() - t0)
        # the truth: what the real stream gives if silence follows now (a twin fed the same chunks,
        # since nothing copies a stream)
        twin = Soxr(i, o, quality, dtype)
        for p in range(0, n_in, step):
            twin.process(x[p : p + step])
        truth = twin.flush()
        if tail.size != truth.size:
            return 99999, statistics.median(costs) * 1e6
        worst = max(worst, int(np.abs(tail.astype(np.int32) - truth).max()) if tail.size else 0)
    return worst, statistics.median(costs) * 1e6


def ours_peek_cost(i: int, o: int) -> float:
    r = StreamResampler(i, o)
    r.process(speech_like(i, 0.5, seed=2))
    t0 = time.process_time()
    for _ in range(200):
        r.peek_flush()
    return (time.process_time() - t0) / 200 * 1e6


# --- report ------------------------------------------------------------------------------


def main() -> None:
    import platform

    print(
        f"CPU: {platform.machine()} {platform.processor() or ''}  numpy {np.__version__}  soxr {soxr.__version__} "
        f"(libsoxr {soxr.__libsoxr_version__})  {STREAM_S:.0f} s streamed in {CHUNK_MS} ms chunks, median of {RUNS}"
    )
    head = (
        f"{'pair':<13}{'impl':<13}{'cpu ms':>7}{'xRT':>6}{'+peek':>6}{'hold ms':>8}{'rip.9N':>7}{'rip.75N':>8}"
        f"{'-3dB':>6}{'rej1.05':>8}{'rej1.2+':>8}{'SNR1k':>6}{'lag tone/click':>15}{'chunk':>6}{'len':>4}"
        f"{'silence':>8}{'peek diff/us':>13}"
    )
    print(head)
    print("-" * len(head))
    for i, o in PAIRS:
        x = speech_like(i, STREAM_S)
        for k, (name, make) in enumerate(IMPLS):
            cpu, hold = speed(make, i, o, x)
            rip9, rip75, minus3 = passband(make, i, o)
            rej105 = rejection(make, i, o, 1.05)
            rej12 = min(rejection(make, i, o, 1.2), rejection(make, i, o, 1.5))
            snr, lag_t = snr_and_tone_lag(make, i, o)
            lag_c = click_lag(make, i, o)
            diff, length = chunk_and_length(make, i, o)
            sil = silence(make, i, o)
            if name == "StreamResampler":
                plus = f"{speed(lambda a, b: Ours(a, b, peek=True), i, o, x)[0]:.0f}"
                peek = f"exact/{ours_peek_cost(i, o):.0f}"
            else:
                plus = "-"
                q, dt = name.split()[1], "int16" if name.endswith("i16") else "float32"
                pd, pc = soxr_peek(i, o, q, dt)
                peek = f"{pd}/{pc:.0f}"
            pair = f"{i}->{o}" if k == 0 else ""
            short = name.replace("StreamResampler", "StreamResamp")
            print(
                f"{pair:<13}{short:<13}{cpu:>7.0f}{STREAM_S * 1000 / cpu:>6.0f}"
                f"{plus:>6}{hold:>8.1f}{rip9:>7.2f}{rip75:>8.3f}{minus3:>6.3f}{rej105:>8.1f}{rej12:>8.1f}{snr:>6.1f}"
                f"{f'{lag_t:+.2f}/{lag_c:+.2f}':>15}{diff:>6}{length:>4}{sil:>7.1f}%{peek:>13}"
            )


if __name__ == "__main__":
    main()

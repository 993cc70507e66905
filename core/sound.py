"""The real mic and speaker through PortAudio (`sounddevice`), and the playback buffer every speaker uses.

sounddevice is imported only when a device is looked up, so Billy still imports (and
simulates) on a machine without libportaudio2. The PortAudio callbacks only slice, copy,
resample a few milliseconds and hand over; all clock values are `time.monotonic()` seconds.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from core.audio import StreamResampler, float_to_pcm16, to_mono
from core.errors import DeviceError
from core.interfaces import AudioFrame, FrameHandler, PlayedBlock, PlayedHandler

log = logging.getLogger(__name__)

_SETTING = {"input": "MIC_PREFERENCE", "output": "SPEAKER_PREFERENCE"}
_MAX_CLOCK_GAP_S = 2.0
"""A PortAudio timestamp further than this from its `currentTime` is garbage; estimate instead."""


def _sounddevice() -> Any:
    try:
        import sounddevice
    except OSError as exc:
        raise DeviceError(
            f"PortAudio is missing ({exc}); install libportaudio2 (sudo apt install libportaudio2)."
        ) from exc
    except ImportError as exc:
        raise DeviceError("the sounddevice package is missing; run setup/install.sh to install it.") from exc
    return sounddevice


def find_device(kind: str, preference: str) -> int | None:
    """Index of the first `kind` ('input' or 'output') device whose name contains `preference`.

    Case-insensitive substring match, because device names are long and vary by port. An
    empty preference means the system default (None). No match raises DeviceError listing
    the devices that exist.
    """
    if kind not in _SETTING:
        raise ValueError(f"kind must be 'input' or 'output', got {kind!r}")
    wanted = preference.strip().lower()
    if not wanted:
        return None
    sd = _sounddevice()
    devices = [(int(d.get("index", i)), d) for i, d in enumerate(sd.query_devices()) if d[f"max_{kind}_channels"] > 0]
    for index, info in devices:
        if wanted in info["name"].lower():
            return index
    setting = _SETTING[kind]
    names = "; ".join(f"{i}: {d['name']}" for i, d in devices) or "none at all"
    raise DeviceError(
        f"no {kind} device matches {setting}={preference!r} ({kind} devices here: {names}); "
        f"set {setting} to part of one of these names, or leave it empty for the default."
    )


@dataclass(frozen=True)
class DeviceChoice:
    """The device and stream format picked for one direction."""

    index: int | None
    """PortAudio device index; None is the system default."""
    name: str
    sample_rate: int
    """Rate (hertz) the stream runs at, which may differ from the rate Billy works at."""
    channels: int


def choose_device(kind: str, preference: str, wanted_rate: int) -> DeviceChoice:
    """Find the device and a format it accepts: `wanted_rate` if it can, else its default rate; mono if it can.

    Raises DeviceError with the fix when there is no such device or it accepts neither.
    """
    sd = _sounddevice()
    index = find_device(kind, preference)
    setting = _SETTING[kind]
    try:
        info = sd.query_devices(index, kind)
    except (sd.PortAudioError, ValueError) as exc:
        what = "mic" if kind == "input" else "speaker"
        raise DeviceError(
            f"no {kind} device is available ({exc}); plug in a {what} or set {setting} to one that exists."
        ) from exc
    check = sd.check_input_settings if kind == "input" else sd.check_output_settings
    rates = list(dict.fromkeys([int(wanted_rate), int(info["default_samplerate"])]))
    channel_options = [1, 2] if info[f"max_{kind}_channels"] >= 2 else [1]
    for rate in rates:
        for channels in channel_options:
            try:
                check(device=index, channels=channels, dtype="int16", samplerate=rate)
            except (sd.PortAudioError, ValueError):
                continue
            return DeviceChoice(index, str(info["name"]), rate, channels)
    raise DeviceError(
        f"{kind} device {info['name']!r} accepts none of {rates} Hz with 1 or 2 int16 channels; "
        f"set {setting} to another device."
    )


def _stream_error(kind: str, choice: DeviceChoice, exc: Exception) -> DeviceError:
    return DeviceError(
        f"cannot open {kind} device {choice.name!r} ({exc}); check it is plugged in and not used by another "
        f"program, or set {_SETTING[kind]} to another device."
    )


def _open_stream(
    kind: str,
    choice: DeviceChoice,
    block_ms: float,
    callback: Any,
    on_open: Callable[[Any], None] | None = None,
    **options: Any,
) -> Any:
    """A started int16 PortAudio stream (`kind` "input" or "output") on `choice`; DeviceError with the fix if not.

    `on_open` sees the stream before it starts, so the callback never runs on unset state.
    """
    sd = _sounddevice()
    stream_class = sd.InputStream if kind == "input" else sd.OutputStream
    try:
        stream = stream_class(
            device=choice.index,
            samplerate=choice.sample_rate,
            channels=choice.channels,
            dtype="int16",
            blocksize=round(choice.sample_rate * block_ms / 1000),
            callback=callback,
            **options,
        )
        if on_open is not None:
            on_open(stream)
        stream.start()
    except (sd.PortAudioError, ValueError) as exc:
        raise _stream_error(kind, choice, exc) from exc
    return stream


def _close_stream(stream: Any, kind: str) -> None:
    """Stop and close; a device that vanished meanwhile only gets a warning (Billy is shutting it anyway)."""
    try:
        stream.stop()
        stream.close()
    except Exception as exc:
        log.warning("closing the %s stream failed: %s", kind, exc)


def _clock_offset(host_time: float, current_time: float) -> float | None:
    """`host_time − current_time` when PortAudio gave both (some ALSA setups give zeros), else None."""
    if host_time <= 0.0 or current_time <= 0.0:
        return None
    gap = host_time - current_time
    return gap if abs(gap) <= _MAX_CLOCK_GAP_S else None


def notify(listeners: Iterable[PlayedHandler], blocks: list[PlayedBlock], failed: set[int]) -> None:
    """Call every listener with every block; a failing listener is logged (once with its traceback), never fatal."""
    for block in blocks:
        for listener in listeners:
            try:
                listener(block)
            except Exception:
                if id(listener) in failed:
                    log.debug("speaker listener %r failed again", listener, exc_info=True)
                else:
                    failed.add(id(listener))
                    log.exception("speaker listener %r failed; playback goes on", listener)


def deliver(on_frame: FrameHandler | None, frame: AudioFrame, failed: bool, who: str) -> bool:
    """Hand a mic frame over; a failing handler is logged once, never fatal. Returns `failed` updated."""
    if on_frame is None:
        return failed
    try:
        on_frame(frame)
    except Exception:
        if not failed:
            log.exception("%s: the frame handler failed; capture goes on", who)
        return True
    return failed


class SoundDeviceMicrophone:
    """A PortAudio input stream handing out `AudioFrame`s of exactly `frame_ms` at `sample_rate`.

    The device runs at `sample_rate` if it can, else at its default rate with a resampler in
    the callback; stereo-only devices are averaged to mono. Construction finds the device
    and its format (raising DeviceError with the fix if there is none); `start` opens it.
    """

    def __init__(self, preference: str = "", sample_rate: int = 16000, frame_ms: int = 20) -> None:
        self.sample_rate = int(sample_rate)
        self.frame_ms = frame_ms
        self.frame_len = round(self.sample_rate * frame_ms / 1000)
        if self.frame_len <= 0:
            raise ValueError(f"frame_ms must give at least one sample, got {frame_ms} ms")
        self.device = choose_device("input", preference, self.sample_rate)
        self._stream: Any = None
        self._on_frame: FrameHandler | None = None
        self._reset()

    def start(self, on_frame: FrameHandler) -> None:
        """Open the stream; `on_frame` runs on PortAudio's thread and must only hand the frame over."""
        if self._stream is not None:
            raise RuntimeError("microphone already started")
        self._on_frame = on_frame
        self._reset()
        d = self.device
        self._stream = _open_stream("input", d, self.frame_ms, self._on_input)
        log.info("mic: %s at %d Hz, %d channel(s), frames of %d ms", d.name, d.sample_rate, d.channels, self.frame_ms)

    def stop(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            _close_stream(stream, "input")

    def _reset(self) -> None:
        self._resampler = StreamResampler(self.device.sample_rate, self.sample_rate)
        self._pending = np.zeros(0, dtype=np.int16)
        self._device_count = 0
        self._frame_count = 0
        self._overflows = 0
        self._failed = False

    def _on_input(self, indata: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
        """PortAudio callback: stamp, mix to mono, resample, cut into frames and hand them over."""
        now = time.monotonic()
        if status:
            self._overflows += 1
            if self._overflows == 1:
                log.warning("mic: %s (the audio thread was late; a few samples were lost)", status)
        offset = _clock_offset(time_info.inputBufferAdcTime, time_info.currentTime)
        first = now + offset if offset is not None else now - frames / self.device.sample_rate
        # Output sample k shows the moment of device sample k × device_rate / rate: anchor on this block.
        base = first - self._device_count / self.device.sample_rate
        self._device_count += frames
        out = self._resampler.process(to_mono(indata[:frames]))
        pending = np.concatenate([self._pending, out]) if self._pending.size else out
        n = self.frame_len
        used = 0
        while pending.size - used >= n:
            frame = AudioFrame(pending[used : used + n], base + self._frame_count / self.sample_rate)
            used += n
            self._frame_count += n
            self._failed = deliver(self._on_frame, frame, self._failed, "mic")
        self._pending = pending[used:]


class _Fifo:
    """int16 samples in arrival order, taken from the front without copying what stays."""

    def __init__(self) -> None:
        self._chunks: deque[np.ndarray] = deque()
        self._pos = 0
        self.size = 0

    def push(self, samples: np.ndarray) -> None:
        if samples.size:
            self._chunks.append(samples)
            self.size += samples.size

    def take(self, n: int) -> np.ndarray:
        n = min(n, self.size)
        parts = []
        need = n
        while need:
            chunk = self._chunks[0]
            k = min(chunk.size - self._pos, need)
            parts.append(chunk[self._pos : self._pos + k])
            self._pos += k
            need -= k
            if self._pos == chunk.size:
                self._chunks.popleft()
                self._pos = 0
        self.size -= n
        if len(parts) == 1:
            return parts[0]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int16)


class _Run:
    """Audio at one source rate played without a break: source samples and their device-rate copy.

    The resampler's last few milliseconds wait for the input that follows them; `tail` holds
    them as if silence followed. Once playback reaches the tail, the run is closed: the
    silence guess has been played, so later audio starts a new run.
    """

    def __init__(self, rate: int, device_rate: int) -> None:
        self.rate = rate
        self.resampler = StreamResampler(rate, device_rate)
        self.source = _Fifo()
        self.device = _Fifo()
        self.tail = np.zeros(0, dtype=np.int16)
        self.closed = False
        self.source_total = 0
        self.source_taken = 0
        self.device_taken = 0

    @property
    def device_left(self) -> int:
        return self.device.size + self.tail.size


class PlaybackBuffer:
    """What an output device has still to play, shared by the real and the simulated speaker.

    `put` (any thread) resamples to the device rate and queues; `pull` (the audio thread)
    takes one device block and says which source samples it holds, as PlayedBlocks at the
    rate they were given. Resampling happens outside the lock `pull` takes, so a long `put`
    never starves the device. The queue holds at most `max_queued_s` seconds: a chunk that
    would overflow it is dropped whole, with a warning.
    """

    def __init__(
        self, device_rate: int, idle_rate: int, max_queued_s: float = 600.0, idle_report_s: float = 1.0
    ) -> None:
        self.device_rate = int(device_rate)
        self.max_queued_s = max_queued_s
        self.idle_report_s = idle_report_s
        self._lock = threading.Lock()
        self._put_lock = threading.Lock()
        self._runs: deque[_Run] = deque()
        self._generation = 0
        self._last_rate = int(idle_rate)
        self._write_head = 0.0
        self._heard_end = 0.0

    def put(self, pcm: np.ndarray, sample_rate: int) -> None:
        """Queue mono samples (int16, or float at full scale ±1; a 2-D block is mixed down)."""
        source = _as_pcm16(pcm)
        rate = int(sample_rate)
        if rate <= 0 or rate != sample_rate:
            raise ValueError(f"sample_rate must be a positive integer (hertz), got {sample_rate!r}")
        if source.size == 0:
            return
        with self._put_lock:
            with self._lock:
                generation = self._generation
                queued = sum(r.device_left for r in self._runs) / self.device_rate
                if queued + source.size / rate > self.max_queued_s:
                    log.warning(
                        "playback queue full (%.0f s queued, limit %.0f s); dropped %.1f s of audio",
                        queued,
                        self.max_queued_s,
                        source.size / rate,
                    )
                    return
            while True:
                with self._lock:
                    last = self._runs[-1] if self._runs else None
                if last is not None and not last.closed and last.rate == rate:
                    run = last
                else:
                    run = _Run(rate, self.device_rate)  # queued only once it holds audio
                device = run.resampler.process(source)
                tail = run.resampler.peek_flush()
                with self._lock:
                    if self._generation != generation:
                        return  # clear() came after this play() began: it wins
                    if run.closed:
                        continue  # playback reached this run's tail meanwhile: start a fresh run
                    if run is not last:
                        if self._runs:
                            self._runs[-1].closed = True  # its tail is final: a new run follows it
                        self._runs.append(run)
                    run.source.push(source)
                    run.source_total += source.size
                    run.device.push(device)
                    run.tail = tail
                    return

    def pull(self, frames: int, heard_time: float) -> tuple[np.ndarray, int, list[PlayedBlock]]:
        """Take the next `frames` device samples, whose first is heard at play-clock `heard_time`.

        Returns the block (zeros where nothing is queued), how many leading samples are audio,
        and the PlayedBlocks for listeners: the source samples of each run in the block, then
        the silence after them, unless nothing was heard for `idle_report_s`.
        """
        out = np.zeros(frames, dtype=np.int16)
        blocks: list[PlayedBlock] = []
        filled = 0
        with self._lock:
            while filled < frames and self._runs:
                run = self._runs[0]
                start = filled
                got = run.device.take(frames - filled)
                out[filled : filled + got.size] = got
                filled += got.size
                if filled < frames and run.tail.size:
                    run.closed = True
                    piece, run.tail = run.tail[: frames - filled], run.tail[frames - filled :]
                    out[filled : filled + piece.size] = piece
                    filled += piece.size
                run.device_taken += filled - start
                finished = run.device_left == 0 and (run.closed or filled < frames)
                if finished:
                    run.closed = True
                    self._runs.popleft()
                    target = run.source_total
                else:
                    target = min(run.source_total, round(run.device_taken * run.rate / self.device_rate))
                source = run.source.take(target - run.source_taken)
                run.source_taken += source.size
                if source.size:
                    blocks.append(PlayedBlock(source, heard_time + start / self.device_rate, run.rate))
                    self._last_rate = run.rate
            self._write_head = heard_time + frames / self.device_rate
            if filled:
                self._heard_end = heard_time + filled / self.device_rate
            silence_at = heard_time + filled / self.device_rate
            if filled < frames and silence_at - self._heard_end <= self.idle_report_s and self._heard_end > 0.0:
                rate = self._last_rate
                silent = np.zeros(round((frames - filled) * rate / self.device_rate), dtype=np.int16)
                if silent.size:
                    blocks.append(PlayedBlock(silent, silence_at, rate))
        return out, filled, blocks

    def clear(self) -> None:
        """Drop everything queued. Samples already pulled are beyond recall: they end at the write head."""
        with self._lock:
            self._generation += 1
            for run in self._runs:
                run.closed = True
            self._runs.clear()
            self._heard_end = min(self._heard_end, self._write_head)

    def heard_until(self, now: float, latency_s: float) -> float:
        """Play-clock time at which the last queued sample will have been heard (0.0 before any sound).

        Queued audio follows the last pulled block while the device runs (that block is still
        ahead of `now`), else it starts `latency_s` from `now`.
        """
        with self._lock:
            left = sum(r.device_left for r in self._runs)
            if left == 0:
                return self._heard_end
            start = self._write_head if self._write_head >= now else now + latency_s
            return start + left / self.device_rate

    def is_playing(self, now: float) -> bool:
        with self._lock:
            return bool(self._runs) or now < self._heard_end

    def is_idle(self, now: float) -> bool:
        """Nothing queued and nothing heard for `idle_report_s`: a device may stop reporting silence."""
        with self._lock:
            return not self._runs and now - self._heard_end > self.idle_report_s


def _as_pcm16(pcm: np.ndarray) -> np.ndarray:
    a = np.asarray(pcm)
    if a.ndim == 2:
        a = to_mono(a)
    elif a.ndim != 1:
        raise ValueError(f"play() takes mono samples, got shape {a.shape}")
    if a.dtype == np.int16:
        return a.copy()
    if np.issubdtype(a.dtype, np.floating):
        return float_to_pcm16(a)
    raise TypeError(f"play() takes int16 (or float ±1) samples, got {a.dtype}")


class BufferedSpeaker:
    """What every speaker shares: a `PlaybackBuffer` of queued samples and the listeners told
    about each played block. A subclass consumes the buffer on its own clock and keeps
    `latency_s`, how long after it is consumed a sample is heard."""

    latency_s: float = 0.0

    def __init__(self, device_rate: int, sample_rate: int, max_queued_s: float) -> None:
        self._buffer = PlaybackBuffer(device_rate, sample_rate, max_queued_s)
        self._listeners: tuple[PlayedHandler, ...] = ()
        self._failed: set[int] = set()

    def play(self, pcm: np.ndarray, sample_rate: int) -> None:
        """Queue samples after what is queued; resampled here, on the caller's thread (long clips: call
        from an executor)."""
        self._buffer.put(pcm, sample_rate)

    def clear(self) -> None:
        self._buffer.clear()

    def add_listener(self, on_played: PlayedHandler) -> None:
        self._listeners = (*self._listeners, on_played)

    @property
    def is_playing(self) -> bool:
        return self._buffer.is_playing(time.monotonic())

    @property
    def heard_until(self) -> float:
        return self._buffer.heard_until(time.monotonic(), self.latency_s)


class SoundDeviceSpeaker(BufferedSpeaker):
    """A PortAudio output stream fed from a `PlaybackBuffer`, reporting each block with its DAC time.

    `sample_rate` is the rate Billy usually plays at (the voice's); the device runs at it if
    it can, else at its default rate. `clear()` drops the queue at once; what PortAudio has
    already buffered (its output latency, set by `latency`) still plays out.
    """

    def __init__(
        self,
        preference: str = "",
        sample_rate: int = 22050,
        block_ms: int = 20,
        latency: str | float = "high",
        max_queued_s: float = 600.0,
    ) -> None:
        self.sample_rate = int(sample_rate)
        self.block_ms = block_ms
        self.latency = latency
        self.device = choose_device("output", preference, self.sample_rate)
        super().__init__(self.device.sample_rate, self.sample_rate, max_queued_s)
        self._stream: Any = None
        self._underruns = 0

    def start(self) -> None:
        if self._stream is not None:
            return
        d = self.device
        self._stream = _open_stream("output", d, self.block_ms, self._on_output, self._on_open, latency=self.latency)
        log.info(
            "speaker: %s at %d Hz, %d channel(s), latency %.0f ms",
            d.name,
            d.sample_rate,
            d.channels,
            self.latency_s * 1000,
        )

    def _on_open(self, stream: Any) -> None:
        self.latency_s = float(stream.latency)

    def stop(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            _close_stream(stream, "output")

    def _on_output(self, outdata: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
        """PortAudio callback: fill the block from the buffer, then tell listeners when it will be heard."""
        now = time.monotonic()
        if status:
            self._underruns += 1
            if self._underruns == 1:
                log.warning("speaker: %s (the audio thread was late; a click may have been heard)", status)
        offset = _clock_offset(time_info.outputBufferDacTime, time_info.currentTime)
        heard = now + (offset if offset is not None else self.latency_s)
        pcm, _, blocks = self._buffer.pull(frames, heard)
        outdata[:frames] = pcm[:, None]
        notify(self._listeners, blocks, self._failed)

"""The real mic and speaker through PortAudio (`sounddevice`).

sounddevice is imported only when a device is looked up, so Billy still imports (and
simulates) on a machine without libportaudio2. The PortAudio callbacks only slice, copy,
resample a few milliseconds and hand over; all clock values are `time.monotonic()` seconds.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from core.audio.playback import BufferedSpeaker, deliver, notify
from core.audio.transforms import StreamResampler, to_mono
from core.errors import DeviceError
from core.interfaces import AudioFrame, FrameHandler

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

"""The real-device mic and speaker, driven through the callbacks they hand to PortAudio.

No sound card is needed: sounddevice's device queries and stream classes are replaced by
a fake PortAudio that lists made-up devices and keeps the callback; the tests then call
that callback exactly as PortAudio's audio thread would, with fake `time_info` objects.
"""

from __future__ import annotations

import importlib.abc
import logging
import sys
import threading
import time
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from core.audio.transforms import resample
from core.errors import DeviceError
from core.interfaces import AudioFrame, PlayedBlock

try:
    import sounddevice as sd
except OSError:  # libportaudio2 missing: the module itself must still import (tested below)
    sd = None

from core.audio.playback import PlaybackBuffer
from core.audio.portaudio import (
    SoundDeviceMicrophone,
    SoundDeviceSpeaker,
    choose_device,
    find_device,
)

needs_sd = pytest.mark.skipif(sd is None, reason="libportaudio2 is not installed")

DEVICES = [
    {"name": "bcm2835 Headphones", "max_input_channels": 0, "max_output_channels": 8, "default_samplerate": 44100.0},
    {
        "name": "USB PnP Sound Device: Audio (hw:2,0)",
        "max_input_channels": 2,
        "max_output_channels": 2,
        "default_samplerate": 48000.0,
    },
    {"name": "Jabra Speak 410", "max_input_channels": 1, "max_output_channels": 2, "default_samplerate": 16000.0},
]
FORMATS = {  # device index -> (rates, channel counts) it accepts
    0: ({44100, 48000}, {2, 8}),
    1: ({44100, 48000}, {2}),  # stereo-only, no 16 kHz: the hard case
    2: ({16000}, {1, 2}),
}
DEFAULT = {"input": 1, "output": 0}


class FakeStream:
    """Stands in for sd.InputStream / sd.OutputStream: keeps its arguments and callback."""

    def __init__(self, registry: list[FakeStream], fail: Exception | None = None, **kwargs: Any) -> None:
        if fail is not None:
            raise fail
        self.kwargs = kwargs
        self.callback = kwargs["callback"]
        self.latency = 0.05
        self.started = self.closed = False
        registry.append(self)

    def start(self) -> None:
        self.started = True

    def stop(self) -> None:
        self.started = False

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def portaudio(monkeypatch: pytest.MonkeyPatch) -> SimpleNamespace:
    if sd is None:
        pytest.skip("libportaudio2 is not installed")
    fake = SimpleNamespace(streams=[], fail=None)

    def query_devices(device: int | None = None, kind: str | None = None) -> Any:
        if device is None and kind is None:
            return [dict(d, index=i) for i, d in enumerate(DEVICES)]
        index = DEFAULT[kind] if device is None else device
        return dict(DEVICES[index], index=index)

    def checker(kind: str) -> Any:
        def check(device: int | None = None, channels: int = 1, samplerate: float = 0, **_: Any) -> None:
            rates, counts = FORMATS[DEFAULT[kind] if device is None else device]
            if samplerate not in rates or channels not in counts:
                raise sd.PortAudioError(f"Invalid sample rate or channel count: {samplerate} Hz, {channels} ch")

        return check

    def stream(**kwargs: Any) -> FakeStream:
        return FakeStream(fake.streams, fake.fail, **kwargs)

    monkeypatch.setattr(sd, "query_devices", query_devices)
    monkeypatch.setattr(sd, "check_input_settings", checker("input"))
    monkeypatch.setattr(sd, "check_output_settings", checker("output"))
    monkeypatch.setattr(sd, "InputStream", stream)
    monkeypatch.setattr(sd, "OutputStream", stream)
    return fake


def _input_time(offset: float) -> SimpleNamespace:
    """PortAudio's clock is its own: only differences to currentTime mean anything."""
    return SimpleNamespace(inputBufferAdcTime=500.0 + offset, currentTime=500.0, outputBufferDacTime=0.0)


def _output_time(offset: float) -> SimpleNamespace:
    return SimpleNamespace(inputBufferAdcTime=0.0, currentTime=500.0, outputBufferDacTime=500.0 + offset)


def _tone(freq: float, rate: int, seconds: float, amplitude: float = 10000.0) -> np.ndarray:
    return (amplitude * np.sin(2 * np.pi * freq * np.arange(round(rate * seconds)) / rate)).astype(np.int16)


# --- finding devices --------------------------------------------------------------------


def test_find_device_matches_substring_case_insensitively(portaudio: SimpleNamespace) -> None:
    assert find_device("input", "usb pnp") == 1
    assert find_device("input", "JABRA") == 2
    assert find_device("output", "headphones") == 0
    assert find_device("input", "") is None  # empty: the system default
    assert find_device("output", "  ") is None


def test_device_not_found_lists_devices_and_names_the_setting(portaudio: SimpleNamespace) -> None:
    with pytest.raises(DeviceError) as err:
        find_device("input", "Respeaker")
    message = str(err.value)
    assert "\n" not in message
    assert "MIC_PREFERENCE='Respeaker'" in message
    assert "USB PnP Sound Device" in message and "Jabra Speak 410" in message
    assert "Headphones" not in message  # it has no input
    with pytest.raises(DeviceError, match="SPEAKER_PREFERENCE") as err:
        find_device("output", "hdmi")
    assert "bcm2835 Headphones" in str(err.value)


def test_missing_portaudio_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    class NoPortAudio(importlib.abc.MetaPathFinder):
        def find_spec(self, name: str, path: Any, target: Any = None) -> None:
            if name == "sounddevice":
                raise OSError("PortAudio library not found")

    monkeypatch.delitem(sys.modules, "sounddevice", raising=False)
    monkeypatch.setattr(sys, "meta_path", [NoPortAudio(), *sys.meta_path])
    with pytest.raises(DeviceError, match="install libportaudio2"):
        find_device("input", "usb")
    with pytest.raises(DeviceError, match="install libportaudio2"):
        SoundDeviceSpeaker("")


def test_choose_device_prefers_the_wanted_rate_and_mono(portaudio: SimpleNamespace) -> None:
    jabra = choose_device("input", "jabra", 16000)
    assert (jabra.index, jabra.sample_rate, jabra.channels) == (2, 16000, 1)
    usb = choose_device("input", "usb", 16000)  # no 16 kHz, no mono: its default rate, stereo
    assert (usb.index, usb.sample_rate, usb.channels) == (1, 48000, 2)
    default_out = choose_device("output", "", 22050)
    assert (default_out.index, default_out.name, default_out.sample_rate) == (None, "bcm2835 Headphones", 44100)


# --- the microphone ---------------------------------------------------------------------


def _run_mic_callbacks(
    stream: FakeStream, blocks: list[np.ndarray], adc_offset: float, frames: list[AudioFrame]
) -> list[tuple[float, float, range]]:
    """Feed blocks through the stream callback; per call: its monotonic bounds and the frames it handed out."""
    calls = []
    for block in blocks:
        before, first = time.monotonic(), len(frames)
        stream.callback(block, block.shape[0], _input_time(adc_offset), None)
        calls.append((before, time.monotonic(), range(first, len(frames))))
    return calls


def test_stereo_only_48k_mic_gives_16k_mono_frames_on_the_play_clock(portaudio: SimpleNamespace) -> None:
    mic = SoundDeviceMicrophone("usb", sample_rate=16000, frame_ms=20)
    frames: list[AudioFrame] = []
    mic.start(frames.append)
    (stream,) = portaudio.streams
    assert stream.started
    assert stream.kwargs["samplerate"] == 48000 and stream.kwargs["channels"] == 2
    assert stream.kwargs["dtype"] == "int16" and stream.kwargs["blocksize"] == 960

    voice = _tone(300, 48000, 0.5)
    other = _tone(1100, 48000, 0.5, amplitude=3000)
    stereo = np.stack([voice + other, voice - other], axis=1)  # the average is `voice`
    blocks = [stereo[i : i + 960] for i in range(0, stereo.shape[0], 960)]
    calls = _run_mic_callbacks(stream, blocks, -0.03, frames)

    assert all(f.pcm.dtype == np.int16 and f.pcm.shape == (320,) for f in frames)
    got = np.concatenate([f.pcm for f in frames])
    expected = resample(voice, 48000, 16000)
    assert got.size >= expected.size - 320
    np.testing.assert_array_equal(got, expected[: got.size])

    # Frame k's first sample is device sample 3k; the block holding device sample j began at j0,
    # captured 30 ms before its callback ran, so its time is callback_time - 0.03 + (3k - j0) / 48000.
    for (before, after, produced), block_start in zip(calls, range(0, stereo.shape[0], 960), strict=True):
        for k in produced:
            lag = (3 * 320 * k - block_start) / 48000
            assert before - 0.03 + lag - 1e-9 <= frames[k].time <= after - 0.03 + lag + 1e-9
    assert sum(len(c[2]) for c in calls) == len(frames) > 20
    mic.stop()
    assert stream.closed


def test_native_rate_mic_passes_samples_through_in_exact_frames(portaudio: SimpleNamespace) -> None:
    mic = SoundDeviceMicrophone("jabra", sample_rate=16000, frame_ms=20)
    frames: list[AudioFrame] = []
    mic.start(frames.append)
    (stream,) = portaudio.streams
    assert stream.kwargs["samplerate"] == 16000 and stream.kwargs["channels"] == 1
    pcm = (np.arange(16000) % 2000 - 1000).astype(np.int16)
    sizes = [500, 137, 320, 1, 2000]  # hosts do not always honour the block size
    blocks, i = [], 0
    while i < pcm.size:
        n = sizes[len(blocks) % len(sizes)]
        blocks.append(pcm[i : i + n].reshape(-1, 1))
        i += n
    _run_mic_callbacks(stream, blocks, -0.01, frames)
    assert len(frames) == 50
    np.testing.assert_array_equal(np.concatenate([f.pcm for f in frames]), pcm)


def test_mic_without_portaudio_timestamps_estimates_from_block_length(portaudio: SimpleNamespace) -> None:
    mic = SoundDeviceMicrophone("jabra")
    frames: list[AudioFrame] = []
    mic.start(frames.append)
    (stream,) = portaudio.streams
    zeros = SimpleNamespace(inputBufferAdcTime=0.0, currentTime=0.0, outputBufferDacTime=0.0)
    before = time.monotonic()
    stream.callback(np.zeros((320, 1), dtype=np.int16), 320, zeros, None)
    after = time.monotonic()
    (frame,) = frames
    assert before - 0.02 <= frame.time <= after - 0.02


def test_a_failing_frame_handler_does_not_stop_capture(portaudio: SimpleNamespace, caplog) -> None:
    mic = SoundDeviceMicrophone("jabra")
    got: list[AudioFrame] = []

    def handler(frame: AudioFrame) -> None:
        got.append(frame)
        if len(got) == 1:
            raise RuntimeError("consumer bug")

    mic.start(handler)
    (stream,) = portaudio.streams
    with caplog.at_level(logging.ERROR):
        _run_mic_callbacks(stream, [np.zeros((320, 1), dtype=np.int16)] * 3, -0.01, [])
    assert len(got) == 3
    assert "frame handler failed" in caplog.text


def test_stream_that_will_not_open_gives_a_device_error(portaudio: SimpleNamespace) -> None:
    portaudio.fail = sd.PortAudioError("Device unavailable")
    mic = SoundDeviceMicrophone("usb")
    with pytest.raises(DeviceError, match=r"USB PnP Sound Device.*Device unavailable.*MIC_PREFERENCE"):
        mic.start(lambda frame: None)
    speaker = SoundDeviceSpeaker("jabra")
    with pytest.raises(DeviceError, match=r"Jabra.*SPEAKER_PREFERENCE"):
        speaker.start()


# --- the speaker ------------------------------------------------------------------------


class Output:
    """Drives a started speaker's stream callback and keeps everything it produced."""

    def __init__(self, speaker: SoundDeviceSpeaker, stream: FakeStream, dac_offset: float = 0.08) -> None:
        self.speaker = speaker
        self.stream = stream
        self.dac_offset = dac_offset
        self.samples: list[np.ndarray] = []
        self.played: list[tuple[PlayedBlock, float, float]] = []  # block, call bounds
        self._blocks: list[PlayedBlock] = []
        speaker.add_listener(self._blocks.append)

    def run(self, calls: int, frames: int | None = None) -> None:
        frames = frames or self.stream.kwargs["blocksize"]
        channels = self.stream.kwargs["channels"]
        for _ in range(calls):
            out = np.full((frames, channels), 12345, dtype=np.int16)  # garbage PortAudio expects us to overwrite
            before = time.monotonic()
            self.stream.callback(out, frames, _output_time(self.dac_offset), None)
            after = time.monotonic()
            for c in range(1, channels):
                np.testing.assert_array_equal(out[:, c], out[:, 0])
            self.samples.append(out[:, 0].copy())
            self.played += [(b, before, after) for b in self._blocks]
            self._blocks.clear()

    @property
    def device_pcm(self) -> np.ndarray:
        return np.concatenate(self.samples)

    def source(self, rate: int | None = None) -> np.ndarray:
        return np.concatenate([b.pcm for b, _, _ in self.played if rate is None or b.sample_rate == rate])


def _started_speaker(portaudio: SimpleNamespace, preference: str = "usb", **kwargs: Any) -> Output:
    speaker = SoundDeviceSpeaker(preference, **kwargs)
    speaker.start()
    return Output(speaker, portaudio.streams[-1])


def test_speaker_plays_resampled_audio_then_silence(portaudio: SimpleNamespace) -> None:
    out = _started_speaker(portaudio)  # USB: 48 kHz stereo only
    assert out.stream.kwargs["samplerate"] == 48000 and out.stream.kwargs["channels"] == 2
    voice = _tone(440, 22050, 0.3)
    out.speaker.play(voice, 22050)
    out.run(25)  # 0.5 s of 20 ms blocks
    device = resample(voice, 22050, 48000)
    np.testing.assert_array_equal(out.device_pcm[: device.size], device)
    assert not out.device_pcm[device.size :].any()

    audio = [b for b, _, _ in out.played if b.pcm.any()]
    np.testing.assert_array_equal(np.concatenate([b.pcm for b in audio]), voice)  # the real waveform, in order
    assert {b.sample_rate for b, _, _ in out.played} == {22050}
    silence = [b for b, _, _ in out.played if not b.pcm.any()]
    assert silence, "silence after the end must be reported so observers see a timeline"


def test_played_blocks_carry_the_dac_time(portaudio: SimpleNamespace) -> None:
    out = _started_speaker(portaudio)
    voice = _tone(440, 22050, 0.1) | 1  # never exactly zero, so every block has audio
    out.speaker.play(voice, 22050)
    out.run(3)
    assert len(out.played) == 3
    for block, before, after in out.played:
        # each callback's audio starts at its first device sample: heard 80 ms after the call
        assert before + 0.08 <= block.time <= after + 0.08
        assert block.pcm.size in (441, 442)  # 20 ms at the source rate


def test_chunks_played_back_to_back_join_without_a_click(portaudio: SimpleNamespace) -> None:
    out = _started_speaker(portaudio)
    voice = _tone(700, 22050, 0.4)
    for piece in np.array_split(voice, [1000, 1001, 5000]):
        out.speaker.play(piece, 22050)
    out.run(25)
    device = resample(voice, 22050, 48000)  # what the whole clip gives in one go
    np.testing.assert_array_equal(out.device_pcm[: device.size], device)
    np.testing.assert_array_equal(out.source()[: voice.size], voice)


def test_rate_change_plays_both_and_reports_each_at_its_rate(portaudio: SimpleNamespace) -> None:
    out = _started_speaker(portaudio)
    a = _tone(440, 22050, 0.1)
    b = _tone(880, 16000, 0.1)
    out.speaker.play(a, 22050)
    out.speaker.play(b, 16000)
    out.run(15)
    device = np.concatenate([resample(a, 22050, 48000), resample(b, 16000, 48000)])
    np.testing.assert_array_equal(out.device_pcm[: device.size], device)
    np.testing.assert_array_equal(out.source(22050)[: a.size], a)
    np.testing.assert_array_equal(out.source(16000)[: b.size], b)
    rates = [blk.sample_rate for blk, _, _ in out.played if blk.pcm.any()]
    assert rates == sorted(rates, reverse=True)  # all of a, then all of b


def test_underrun_then_more_audio_starts_cleanly(portaudio: SimpleNamespace) -> None:
    out = _started_speaker(portaudio)
    a = _tone(440, 22050, 0.05) | 1  # never zero, so silence tells them apart
    b = _tone(300, 22050, 0.05) | 1
    out.speaker.play(a, 22050)
    out.run(5)  # 100 ms: `a` and its tail are played, then silence
    out.speaker.play(b, 22050)
    out.run(5)
    first = resample(a, 22050, 48000)
    second = resample(b, 22050, 48000)
    np.testing.assert_array_equal(out.device_pcm[: first.size], first)
    np.testing.assert_array_equal(out.device_pcm[4800 : 4800 + second.size], second)
    source = out.source()
    np.testing.assert_array_equal(source[source != 0], np.concatenate([a, b]))


def test_heard_until_and_is_playing(portaudio: SimpleNamespace) -> None:
    out = _started_speaker(portaudio)
    out.dac_offset = 0.02
    speaker = out.speaker
    assert not speaker.is_playing
    voice = _tone(440, 22050, 0.2)
    t = time.monotonic()
    speaker.play(voice, 22050)
    device_len = resample(voice, 22050, 48000).size
    assert speaker.is_playing
    # not started playing yet: now + the stream's latency (0.05 s) + the queued audio
    assert speaker.heard_until == pytest.approx(t + 0.05 + device_len / 48000, abs=0.02)
    out.run(3)
    last = out.played[-1]
    expected = last[0].time + last[0].pcm.size / 22050 + (device_len - 3 * 960) / 48000
    assert speaker.heard_until == pytest.approx(expected, abs=0.002)
    out.run(10)
    end = max(b.time + b.pcm.size / 22050 for b, _, _ in out.played if b.pcm.any())
    assert speaker.heard_until == pytest.approx(end, abs=1e-4)
    deadline = time.monotonic() + 2
    while speaker.is_playing and time.monotonic() < deadline:
        time.sleep(0.005)
    assert not speaker.is_playing
    assert time.monotonic() >= speaker.heard_until


def test_clear_falls_silent_at_the_next_block(portaudio: SimpleNamespace) -> None:
    out = _started_speaker(portaudio)
    out.speaker.play(_tone(440, 22050, 2.0), 22050)
    out.run(5)
    assert out.device_pcm[-960:].any()
    end_of_written = out.played[-1][0].time + out.played[-1][0].pcm.size / 22050
    out.speaker.clear()
    assert out.speaker.heard_until <= end_of_written + 1e-6  # what PortAudio holds still plays out
    out.run(5)
    assert not out.device_pcm[-5 * 960 :].any()
    assert not any(b.pcm.any() for b, _, _ in out.played[-5:])
    out.speaker.play(_tone(440, 22050, 0.05), 22050)  # and it plays again afterwards
    out.run(1)
    assert out.device_pcm[-960:].any()


def test_dac_time_falls_back_to_stream_latency_when_portaudio_gives_zeros(portaudio: SimpleNamespace) -> None:
    out = _started_speaker(portaudio)
    out.speaker.play(_tone(440, 22050, 0.05), 22050)
    before = time.monotonic()
    out.stream.callback(
        np.zeros((960, 2), dtype=np.int16), 960, SimpleNamespace(currentTime=0.0, outputBufferDacTime=0.0), None
    )
    after = time.monotonic()
    assert out.speaker.heard_until > before + 0.05
    assert out.speaker.heard_until <= after + 0.05 + 0.05 + 1e-3


def test_a_failing_listener_does_not_stop_playback(portaudio: SimpleNamespace, caplog) -> None:
    speaker = SoundDeviceSpeaker("usb")
    speaker.start()

    def broken(block: PlayedBlock) -> None:
        raise ValueError("listener bug")

    speaker.add_listener(broken)
    out = Output(speaker, portaudio.streams[-1])
    voice = _tone(440, 22050, 0.1)
    speaker.play(voice, 22050)
    with caplog.at_level(logging.ERROR):
        out.run(8)
    np.testing.assert_array_equal(out.source()[: voice.size], voice)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "playback goes on" in errors[0].getMessage()  # once, not every block


def test_full_queue_drops_the_new_chunk_and_says_so(portaudio: SimpleNamespace, caplog) -> None:
    out = _started_speaker(portaudio, max_queued_s=1.0)
    out.speaker.play(_tone(440, 22050, 0.8), 22050)
    with caplog.at_level(logging.WARNING):
        out.speaker.play(_tone(440, 22050, 0.5), 22050)
    assert "playback queue full" in caplog.text
    out.run(60)
    assert np.count_nonzero(out.source()) <= round(0.8 * 22050)


def test_play_from_another_thread_while_the_callback_runs(portaudio: SimpleNamespace) -> None:
    """Producer and audio thread race on the same run; every source sample comes out once, in order."""
    out = _started_speaker(portaudio)
    voice = (np.arange(22050) % 3000 + 1).astype(np.int16)  # never zero, strictly patterned
    pieces = np.array_split(voice, 60)

    def producer() -> None:
        for piece in pieces:
            out.speaker.play(piece, 22050)
            time.sleep(0.001)

    thread = threading.Thread(target=producer)
    thread.start()
    while thread.is_alive():
        out.run(1, frames=240)
    thread.join()
    out.run(400, frames=240)
    source = out.source()
    np.testing.assert_array_equal(source[source != 0], voice)


def test_playback_buffer_accepts_float_and_stereo() -> None:
    buffer = PlaybackBuffer(device_rate=16000, idle_rate=16000)
    buffer.put(np.array([[0.5, 0.5], [-0.5, -0.5]], dtype=np.float32), 16000)
    pcm, filled, blocks = buffer.pull(4, heard_time=10.0)
    assert filled == 2
    np.testing.assert_array_equal(pcm, [16384, -16384, 0, 0])
    np.testing.assert_array_equal(blocks[0].pcm, [16384, -16384])
    assert (blocks[0].time, blocks[0].sample_rate) == (10.0, 16000)
    with pytest.raises(ValueError, match="sample_rate"):
        buffer.put(np.zeros(4, dtype=np.int16), 0)

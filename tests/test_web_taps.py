"""What the page hears of Billy's threads: his voice in pieces, the mic's level, his log (secrets blanked)."""

from __future__ import annotations

import base64
import logging

import numpy as np

from core.interfaces import AudioFrame, PlayedBlock
from core.web.taps import AudioTap, LogTap, MicTap, level_dbfs


def test_played_audio_goes_out_in_100_ms_pieces_on_the_play_clock():
    sent: list[dict] = []
    tap = AudioTap(sent.append, lambda: True)
    rate, block = 22050, 220
    tone = (8000 * np.sin(np.arange(block * 30) / 5)).astype(np.int16)
    for i in range(30):  # 300 ms of sound, 10 ms blocks, heard from t = 5.0
        tap(PlayedBlock(tone[i * block : (i + 1) * block], 5.0 + i * block / rate, rate))
    tap.flush()
    assert [m["t"] for m in sent] == [round(5.0 + k * 10 * block / rate, 4) for k in range(3)]  # 10 blocks each
    pcm = np.concatenate([np.frombuffer(base64.b64decode(m["pcm"]), dtype="<i2") for m in sent])
    assert np.array_equal(pcm, tone) and all(m["rate"] == rate for m in sent)


def test_silence_gaps_and_no_page_cost_nothing():
    sent: list[dict] = []
    active = [True]
    tap = AudioTap(sent.append, lambda: active[0])
    quiet = np.zeros(220, dtype=np.int16)
    loud = np.full(220, 3000, dtype=np.int16)
    tap(PlayedBlock(quiet, 1.0, 22050))
    tap(PlayedBlock(loud, 3.0, 22050))  # a gap: the quiet piece is flushed (and not sent)
    tap.flush()
    assert [m["t"] for m in sent] == [3.0]
    active[0] = False
    tap(PlayedBlock(loud, 4.0, 22050))
    tap.flush()
    assert len(sent) == 1


def test_the_mic_meter_passes_frames_on_and_reports_a_level_when_on():
    class Mic:
        sample_rate = 16000

        def start(self, on_frame):
            self.on_frame = on_frame

        def stop(self):
            pass

        def feed(self):
            return "fed"

    mic, frames, levels = Mic(), [], []
    tap = MicTap(mic, levels.append)
    tap.start(frames.append)
    half_scale = np.full(320, 16384, dtype=np.int16)
    for _ in range(10):
        mic.on_frame(AudioFrame(half_scale, 0.0))
    assert len(frames) == 10 and levels == []
    tap.metering = True
    for _ in range(5):
        mic.on_frame(AudioFrame(half_scale, 0.0))
    assert levels == [{"type": "mic", "level": -6.0}]
    assert tap.feed() == "fed" and tap.sample_rate == 16000  # the simulated mic's extras still work
    assert level_dbfs(np.zeros(10, dtype=np.int16)) == -100.0


def test_log_lines_are_kept_and_secrets_blanked():
    sent: list[dict] = []
    tap = LogTap(sent.append, ["sk-very-secret-key", "", "abc"])
    logger = logging.getLogger("billy.test.taps")
    logger.addHandler(tap)
    logger.setLevel(logging.INFO)
    try:
        logger.info("calling the cloud with sk-very-secret-key now")
        logger.debug("not at this level")
    finally:
        logger.removeHandler(tap)
    assert [m["message"] for m in sent] == ["calling the cloud with ••• now"]
    assert tap.lines() == sent and sent[0]["level"] == "INFO" and sent[0]["name"] == "billy.test.taps"

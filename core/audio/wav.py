"""WAV files in and out, as int16 mono: the one reader and writer for clips, songs, the simulator and the bench."""

from __future__ import annotations

import io
import os
import warnings

import numpy as np
from scipy.io import wavfile

from core.audio.transforms import float_to_pcm16, to_mono
from core.files import write_atomic


def read_wav(path: str | os.PathLike[str]) -> tuple[np.ndarray, int]:
    """Any WAV (8/16/24/32-bit int or 32/64-bit float, any channels, any rate) as (int16 mono, rate).

    Channels are averaged. A missing file raises FileNotFoundError; a file that is not a
    readable WAV raises ValueError naming it.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", wavfile.WavFileWarning)
            rate, data = wavfile.read(os.fspath(path))
    except (FileNotFoundError, IsADirectoryError, PermissionError):
        raise
    except Exception as exc:
        raise ValueError(f"{path} is not a readable WAV file ({exc}); use a PCM or float WAV.") from exc
    if data.dtype == np.int16:
        pcm = to_mono(data)
    elif data.dtype == np.uint8:
        pcm = float_to_pcm16(to_mono((data.astype(np.float64) - 128.0) / 128.0))
    elif np.issubdtype(data.dtype, np.signedinteger):
        full_scale = float(2 ** (8 * data.dtype.itemsize - 1))
        pcm = float_to_pcm16(to_mono(data.astype(np.float64) / full_scale))
    elif np.issubdtype(data.dtype, np.floating):
        pcm = float_to_pcm16(to_mono(data.astype(np.float64)))
    else:
        raise ValueError(f"{path} holds {data.dtype} samples, which Billy cannot play; use a PCM or float WAV.")
    return pcm, int(rate)


def wav_bytes(pcm: np.ndarray, sample_rate: int) -> bytes:
    """int16 mono samples as the bytes of a WAV file."""
    buffer = io.BytesIO()
    wavfile.write(buffer, int(sample_rate), np.asarray(pcm, dtype=np.int16))
    return buffer.getvalue()


def write_wav(path: str | os.PathLike[str], pcm: np.ndarray, sample_rate: int) -> None:
    """Write int16 mono samples atomically: a crash never leaves half a file."""
    write_atomic(path, wav_bytes(pcm, sample_rate))

"""WAV files: read (PCM 8/16/24/32-bit integer or 32/64-bit float) and write (16-bit PCM), with numpy only.

A WAV file is a RIFF container: a 12-byte header ("RIFF", size, "WAVE"), then chunks of a 4-byte
id, a 4-byte little-endian length and that many bytes (padded to an even length). `read_wav`
walks the chunks itself rather than through Python's `wave` module, so that every length a file
claims is checked against the bytes it holds before anything is read or allocated (a 32 KB file
whose header claims 4 GB of samples is refused, not read), and every refusal is one line of
edgeformer's words: "cannot read FILE as a WAV file: <what is wrong>".
"""

from __future__ import annotations

import struct
import wave
from pathlib import Path

import numpy as np

from .errors import EdgeformerError

PCM, IEEE_FLOAT, EXTENSIBLE = 0x0001, 0x0003, 0xFFFE
MAX_WAV_BYTES = 1 << 30  # 1 GiB: over nine hours of 16 kHz 16-bit mono
MAX_CHUNKS = 10_000  # a real file holds a handful (fmt, data, LIST, fact, ...)
OTHER_FORMATS = {0x0002: "ADPCM", 0x0006: "A-law", 0x0007: "mu-law", 0x0011: "IMA ADPCM", 0x0055: "MP3"}


class WavError(EdgeformerError):
    """A file that is not a WAV file this runtime reads."""


def read_wav(path: str | Path) -> tuple[np.ndarray, int]:
    """A WAV file as float32 samples (integer PCM scaled into [-1, 1]; float as stored) and its sample rate.

    Mono files give (N,); files of several channels give (N, channels), which `transcribe` refuses.
    """
    path = Path(path)
    name = str(path) if str(path).isprintable() else repr(str(path))

    def bad(reason: str) -> WavError:
        return WavError(f"cannot read {name} as a WAV file: {reason}")

    try:
        if not path.is_file():
            raise EdgeformerError(f"audio file {name} " + ("is a directory" if path.is_dir() else "does not exist"))
        size = path.stat().st_size
        if size == 0:
            raise bad("it is empty (0 bytes)")
        if size > MAX_WAV_BYTES:
            raise bad(f"it is {size:,} bytes; edgeformer reads WAV files of at most {MAX_WAV_BYTES:,}")
        with open(path, "rb") as f:
            fmt, (offset, length) = _chunks(f, size, bad)
            channels, rate, kind, width = _format(fmt, bad)
            frame = channels * width
            if length % frame:
                raise bad(f"its data chunk holds {length:,} bytes, not a whole number of {frame}-byte frames "
                          f"({channels} channel(s) of {8 * width}-bit samples); the file is truncated or corrupt")
            if length == 0:
                raise bad("its data chunk holds no samples")
            f.seek(offset)
            raw = f.read(length)
    except OSError as e:
        raise bad((e.strerror or type(e).__name__).lower()) from None
    if len(raw) != length:
        raise bad("it ended while its samples were read (it changed while being read, or is truncated)")
    return _samples(raw, kind, width, channels), rate


def _chunks(f, size: int, bad) -> tuple[bytes, tuple[int, int]]:
    """The fmt chunk's bytes and the data chunk's (offset, length), every length checked against `size`."""
    head = f.read(12)
    if len(head) < 12:
        raise bad(f"it is {len(head)} bytes, shorter than a RIFF/WAVE header (12 bytes)")
    if head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        what = "an RF64 file (a WAV over 4 GB)" if head[:4] == b"RF64" else f"it starts with {head[:12]!r}"
        raise bad(f"{what}; expected a RIFF/WAVE header")
    fmt, data, pos = None, None, 12
    for _ in range(MAX_CHUNKS):
        if pos + 8 > size or (fmt is not None and data is not None):
            break
        f.seek(pos)
        chunk, length = struct.unpack("<4sI", f.read(8))
        body = pos + 8
        if body + length > size:
            what = "samples" if chunk == b"data" else f"its {chunk!r} chunk"
            raise bad(f"its header claims {length:,} bytes of {what} but only {size - body:,} follow; the file is "
                      "truncated or corrupt")
        if chunk == b"fmt ":
            if length < 16:
                raise bad(f"its fmt chunk is {length} bytes; expected at least 16")
            fmt = f.read(min(length, 40))
        elif chunk == b"data":
            data = (body, length)
        pos = body + length + (length & 1)  # chunks are padded to an even length
    else:
        raise bad(f"it holds more than {MAX_CHUNKS:,} chunks; a WAV file holds a handful")
    if fmt is None:
        raise bad("it has no fmt chunk (the description of its samples)")
    if data is None:
        raise bad("it has no data chunk (no samples)")
    return fmt, data


def _format(fmt: bytes, bad) -> tuple[int, int, str, int]:
    """(channels, sample rate, 'int' or 'float', bytes per sample) from a fmt chunk, refused unless readable."""
    tag, channels, rate, _, block_align, bits = struct.unpack("<HHIIHH", fmt[:16])
    if tag == EXTENSIBLE and len(fmt) >= 26:
        tag = struct.unpack("<H", fmt[24:26])[0]  # the sub-format GUID starts with the plain format tag
    if tag not in (PCM, IEEE_FLOAT):
        other = OTHER_FORMATS.get(tag, "an unknown encoding")
        raise bad(f"its samples are {other} (format {tag:#06x}); expected PCM integer or float samples")
    if not 1 <= channels <= 64:
        raise bad(f"it declares {channels} channels; expected 1 to 64")
    if not 1 <= rate <= 1_000_000:
        raise bad(f"it declares a sample rate of {rate} Hz; expected 1 to 1,000,000")
    allowed = (8, 16, 24, 32) if tag == PCM else (32, 64)
    if bits not in allowed:
        kind = "integer PCM" if tag == PCM else "float"
        raise bad(f"it has {bits}-bit {kind} samples; expected {', '.join(map(str, allowed))}-bit")
    width = bits // 8
    if block_align != channels * width:
        raise bad(f"its frames are {block_align} bytes; {channels} channel(s) of {bits}-bit samples take "
                  f"{channels * width}")
    return channels, rate, "int" if tag == PCM else "float", width


def _samples(raw: bytes, kind: str, width: int, channels: int) -> np.ndarray:
    if kind == "float":
        samples = np.frombuffer(raw, f"<f{width}").astype(np.float32)
    elif width == 1:
        samples = (np.frombuffer(raw, np.uint8).astype(np.float32) - 128.0) / 128.0
    elif width == 3:
        b = np.frombuffer(raw, np.uint8).reshape(-1, 3).astype(np.int32)
        samples = ((b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)) << 8 >> 8).astype(np.float32) / 2**23
    else:
        samples = np.frombuffer(raw, f"<i{width}").astype(np.float32) / float(2 ** (8 * width - 1))
    return samples if channels == 1 else samples.reshape(-1, channels)


def write_wav(path: str | Path, samples: np.ndarray, sample_rate: int = 16000) -> Path:
    """Mono float samples in [-1, 1] as a 16-bit PCM WAV file."""
    pcm = np.clip(np.round(np.asarray(samples, np.float64) * 32767.0), -32768, 32767).astype("<i2")
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(sample_rate)
        f.writeframes(pcm.tobytes())
    return Path(path)

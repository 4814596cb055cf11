"""The speech front end: raw 16 kHz waveforms -> 80-bin log-mel features, one definition for training and the graph.

    waveforms (B, N) ─► Gather frames (B, T, 400) ─► float64 MatMul(Hann-windowed DFT basis 400 x 514)
        ─► power re² + im² (B, T, 257) ─► MatMul(mel filterbank 257 x 80) ─► log(mel + 1e-6) ─► float32 (B, T, 80)

25 ms windows (400 samples) every 10 ms (160 samples), a 512-point DFT of each Hann-windowed frame
(the frame zero-padded to 512), 80 triangular mel filters on the HTK mel scale from 0 to 8 kHz
(torchaudio's `melscale_fbanks(norm=None, mel_scale="htk")`). No centring: frame t covers samples
[160 t, 160 t + 400), so a waveform of n samples has (n - 400) // 160 + 1 frames and no frame of a
padded batch that counts for a row reads past that row's end.

The short-time Fourier transform is a gather of frame indices (arange, from the input's own
length, so no time axis is frozen) and a matrix product with a fixed DFT basis: standard ONNX ops
that every runtime knows (torch.stft does not export through the dynamo exporter). It runs in
float64 because float32 is not exact enough for a log: on a tone 40 dB above its noise floor,
float32 PyTorch (a strided Conv1d) and float32 onnxruntime each came within 8e-5 of a float64
numpy reference but differed from each other by 1.6e-4; in float64 they agree to the bit and both
come within 1.2e-5 of it. onnxruntime has no float64 Conv, hence the gather + MatMul; and the int8
recipes, which quantize float32 MatMuls, leave the front end exact. The same module computes the
features when PyTorch trains and inside the exported graph.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn as nn

SAMPLE_RATE = 16000
WINDOW = 400  # 25 ms
HOP = 160  # 10 ms
N_FFT = 512
LOG_FLOOR = 1e-6


def hz_to_mel(f):
    return 2595.0 * np.log10(1.0 + np.asarray(f, np.float64) / 700.0)


def mel_to_hz(m):
    return 700.0 * (10.0 ** (np.asarray(m, np.float64) / 2595.0) - 1.0)


def mel_filterbank(n_mels: int, n_fft: int = N_FFT, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """(n_fft // 2 + 1, n_mels) triangular filters on the HTK mel scale, unnormalised, 0 Hz to Nyquist."""
    freqs = np.linspace(0, sample_rate / 2, n_fft // 2 + 1)
    edges = mel_to_hz(np.linspace(hz_to_mel(0.0), hz_to_mel(sample_rate / 2), n_mels + 2))
    lower, centre, upper = edges[:-2], edges[1:-1], edges[2:]
    rising = (freqs[:, None] - lower) / (centre - lower)
    falling = (upper - freqs[:, None]) / (upper - centre)
    return np.maximum(0.0, np.minimum(rising, falling)).astype(np.float32)


def dft_basis(window: int = WINDOW, n_fft: int = N_FFT) -> np.ndarray:
    """(2 * (n_fft // 2 + 1), 1, window): cos then -sin rows of the DFT, times a periodic Hann window."""
    n = np.arange(window)
    hann = 0.5 - 0.5 * np.cos(2 * math.pi * n / window)
    k = np.arange(n_fft // 2 + 1)[:, None]
    angle = 2 * math.pi * k * n[None, :] / n_fft
    basis = np.concatenate([np.cos(angle), -np.sin(angle)]) * hann
    return basis[:, None, :].astype(np.float32)


def frame_count(lengths: torch.Tensor) -> torch.Tensor:
    """Samples -> feature frames per row, (B,) int64; 0 for rows shorter than one window."""
    return (torch.div(lengths - WINDOW, HOP, rounding_mode="floor") + 1).clamp(min=0)


def min_samples(frames: int) -> int:
    """The fewest samples that give `frames` feature frames."""
    return WINDOW + (frames - 1) * HOP


class LogMel(nn.Module):
    """(B, N) float32 waveforms at 16 kHz and their lengths (B,) -> (B, T, n_mels) log-mel features and (B,) frame counts."""

    def __init__(self, n_mels: int = 80):
        super().__init__()
        # Derived from the constants above, so not saved in checkpoints.
        self.register_buffer("basis", torch.from_numpy(dft_basis()[:, 0, :].T.astype(np.float64)), persistent=False)
        self.register_buffer("mel", torch.from_numpy(mel_filterbank(n_mels).astype(np.float64)), persistent=False)

    def forward(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        T = (waveforms.shape[1] - WINDOW) // HOP + 1
        idx = torch.arange(T, device=waveforms.device)[:, None] * HOP + torch.arange(WINDOW, device=waveforms.device)
        frames = waveforms[:, idx].double()  # (B, T, 400)
        re, im = (frames @ self.basis).chunk(2, dim=-1)  # (B, T, F) each
        mel = (re * re + im * im) @ self.mel  # (B, T, n_mels)
        return torch.log(mel + LOG_FLOOR).float(), frame_count(lengths)


def reference_log_mel(waveform: np.ndarray, n_mels: int = 80) -> np.ndarray:
    """The same features in float64 numpy with np.fft.rfft, frame by frame: what LogMel is tested against."""
    n = (len(waveform) - WINDOW) // HOP + 1
    hann = 0.5 - 0.5 * np.cos(2 * math.pi * np.arange(WINDOW) / WINDOW)
    frames = np.stack([waveform[t * HOP : t * HOP + WINDOW] for t in range(n)]).astype(np.float64) * hann
    power = np.abs(np.fft.rfft(frames, n=N_FFT, axis=-1)) ** 2  # (T, F)
    return np.log(power @ mel_filterbank(n_mels).astype(np.float64) + LOG_FLOOR)


def spec_augment(features: torch.Tensor, frames: torch.Tensor, g: torch.Generator, freq_masks: int = 2,
                 freq_width: int = 15, time_masks: int = 2, time_fraction: float = 0.05) -> torch.Tensor:
    """SpecAugment's masking (Park et al. 2019), training only: bands of mel bins and spans of frames set to
    the row's mean feature value. Time spans are at most `time_fraction` of each row's length."""
    B, T, M = features.shape
    x = features.clone()
    fill = features.mean(dim=(1, 2), keepdim=True).expand(B, 1, 1)
    mel_idx, time_idx = torch.arange(M), torch.arange(T)
    for _ in range(freq_masks):
        w = torch.randint(0, freq_width + 1, (B, 1), generator=g)
        f0 = (torch.rand(B, 1, generator=g) * (M - w)).long()
        band = (mel_idx >= f0) & (mel_idx < f0 + w)  # (B, M)
        x = torch.where(band[:, None, :], fill, x)
    for _ in range(time_masks):
        w = (torch.rand(B, 1, generator=g) * frames[:, None].float() * time_fraction).long()
        t0 = (torch.rand(B, 1, generator=g) * (frames[:, None] - w).clamp(min=0).float()).long()
        span = (time_idx >= t0) & (time_idx < t0 + w)  # (B, T)
        x = torch.where(span[:, :, None], fill, x)
    return x

"""Model-side front ends: the batched log-mel spectrogram (torch) and image normalisation.

The mel filterbank is librosa's (``librosa.filters.mel``), so a window computed here matches
``np.log(librosa.feature.melspectrogram(...) + offset)[:, :frames]`` to float precision, only batched.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from encoders.config import AudioConfig, ImageConfig


class LogMel(nn.Module):
    """Batched log-mel spectrogram.

    Input: ``waves`` of shape ``(batch, samples)`` float32 at ``cfg.sample_rate`` (one window per row; rows longer or
    shorter than ``cfg.window_samples`` give more or fewer frames before the crop/pad to ``cfg.frames``).
    Output: ``(batch, cfg.n_mels, cfg.frames)`` natural-log mel power.
    """

    def __init__(self, cfg: AudioConfig | None = None) -> None:
        super().__init__()
        import librosa  # heavy import kept out of module import time

        self.cfg = cfg or AudioConfig()
        fb = librosa.filters.mel(
            sr=self.cfg.sample_rate, n_fft=self.cfg.n_fft, n_mels=self.cfg.n_mels,
            fmin=self.cfg.fmin, fmax=self.cfg.fmax,
        )
        self.register_buffer("mel_basis", torch.from_numpy(fb).float(), persistent=False)
        self.register_buffer("window", torch.hann_window(self.cfg.win_length), persistent=False)

    def forward(self, waves: Tensor) -> Tensor:
        if waves.dim() == 1:
            waves = waves.unsqueeze(0)
        spec = torch.stft(
            waves.float(), n_fft=self.cfg.n_fft, hop_length=self.cfg.hop_length, win_length=self.cfg.win_length,
            window=self.window, center=True, pad_mode="constant", return_complex=True,
        )
        power = spec.real.square() + spec.imag.square()  # (B, n_fft//2+1, T)
        mel = torch.matmul(self.mel_basis, power)  # (B, n_mels, T)
        t = self.cfg.frames
        if mel.shape[-1] >= t:
            mel = mel[..., :t]
        else:
            mel = nn.functional.pad(mel, (0, t - mel.shape[-1]))
        return torch.log(mel + self.cfg.log_offset)


class ImageNormalize(nn.Module):
    """Resize (bilinear, antialiased) to ``size`` x ``size`` if needed, then normalise channels.

    Input: ``(batch, 3, H, W)`` float in [0, 1]. Output: ``(batch, 3, size, size)`` normalised.
    """

    def __init__(self, cfg: ImageConfig | None = None, size: int | None = None) -> None:
        super().__init__()
        self.cfg = cfg or ImageConfig()
        self.size = size or self.cfg.size
        self.register_buffer("mean", torch.tensor(self.cfg.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(self.cfg.std).view(1, 3, 1, 1), persistent=False)

    def forward(self, images: Tensor) -> Tensor:
        if images.dim() == 3:
            images = images.unsqueeze(0)
        images = images.float()
        if images.shape[-2:] != (self.size, self.size):
            images = nn.functional.interpolate(
                images, size=(self.size, self.size), mode="bilinear", align_corners=False, antialias=True
            )
        return (images - self.mean) / self.std

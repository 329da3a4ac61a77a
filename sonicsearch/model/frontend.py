"""Log-mel front end (torchaudio), an nn.Module that runs on the model's device."""

from __future__ import annotations

import torch
import torchaudio
from torch import nn

from sonicsearch.config import FeatureConfig


class LogMel(nn.Module):
    """Waveform windows ``(batch, samples)`` -> log-mel ``(batch, 1, n_mels, frames)`` in dB.

    Deterministic: no randomness, and the same input gives the same output on one device.
    The dB scale is absolute (reference 1.0, floor 1e-10), clamped per example to
    ``top_db`` below its peak, so a quiet file and a loud file differ only by an offset.
    """

    def __init__(self, config: FeatureConfig):
        super().__init__()
        self.config = config
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=config.sample_rate,
            n_fft=config.n_fft,
            hop_length=config.hop_length,
            f_min=config.f_min,
            f_max=config.f_max,
            n_mels=config.n_mels,
            power=2.0,
            center=True,
            pad_mode="reflect",
            norm="slaney",
            mel_scale="slaney",
        )

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        if wave.dim() == 1:
            wave = wave.unsqueeze(0)
        # The STFT runs in float32 even under autocast: fp16 power spectra overflow.
        with torch.autocast(device_type=wave.device.type, enabled=False):
            spec = self.mel(wave.float())
            db = 10.0 * torch.log10(spec.clamp_min(1e-10))
            if self.config.top_db is not None:
                peak = db.amax(dim=(-2, -1), keepdim=True)
                db = torch.maximum(db, peak - self.config.top_db)
        return db.unsqueeze(1)

    def num_frames(self, num_samples: int) -> int:
        """Frames produced for a window of ``num_samples`` samples (centred STFT)."""
        return num_samples // self.config.hop_length + 1

"""Log-mel front end (torchaudio), an nn.Module that runs on the model's device.

``features.level`` says how loudness reaches the network:

- ``absolute`` (the first models' front end): dB re 1.0, so a copy 12 dB quieter is the same
  picture shifted by 12 dB, and a network trained on one level may not match the other.
- ``window``: the dB spectrogram minus its own mean over the window, so any gain change is
  removed exactly (up to the noise floor and ``top_db``). Cheap and stateless.
- ``pcen``: per-channel energy normalisation (Wang et al., 2017): each mel band is divided
  by a smoothed copy of itself (a first-order IIR over frames), which removes gain and
  slowly varying background noise and compresses the dynamic range.

Model files written before this setting existed hold no ``level`` key and load as
``absolute`` (see :func:`sonicsearch.model.checkpoint.load_checkpoint`), so they keep their
meaning.
"""

from __future__ import annotations

import torch
import torchaudio
from torch import nn

from sonicsearch.config import FeatureConfig
from sonicsearch.errors import ConfigError

LEVELS = ("absolute", "window", "pcen")
# PCEN constants: the values of the original paper for speech, which also suit music
PCEN_SMOOTHING = 0.025  # s: the IIR coefficient (a time constant of about 40 frames)
PCEN_ALPHA = 0.98  # gain normalisation strength
PCEN_DELTA = 2.0
PCEN_R = 0.5
PCEN_EPS = 1e-6


class LogMel(nn.Module):
    """Waveform windows ``(batch, samples)`` -> log-mel ``(batch, 1, n_mels, frames)``.

    Deterministic: no randomness, and the same input gives the same output on one device.
    In ``absolute`` mode the dB scale is re 1.0 (floor 1e-10), clamped per example to
    ``top_db`` below its peak; the other modes are described in the module docstring.
    """

    def __init__(self, config: FeatureConfig):
        super().__init__()
        if config.level not in LEVELS:
            raise ConfigError(f"unknown features.level '{config.level}'; choose one of: "
                              f"{', '.join(LEVELS)}")
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
            if self.config.level == "pcen":
                return pcen(spec).unsqueeze(1)
            db = 10.0 * torch.log10(spec.clamp_min(1e-10))
            if self.config.top_db is not None:
                peak = db.amax(dim=(-2, -1), keepdim=True)
                db = torch.maximum(db, peak - self.config.top_db)
            if self.config.level == "window":
                db = db - db.mean(dim=(-2, -1), keepdim=True)
        return db.unsqueeze(1)

    def num_frames(self, num_samples: int) -> int:
        """Frames produced for a window of ``num_samples`` samples (centred STFT)."""
        return num_samples // self.config.hop_length + 1


def pcen(power: torch.Tensor, s: float = PCEN_SMOOTHING, alpha: float = PCEN_ALPHA,
         delta: float = PCEN_DELTA, r: float = PCEN_R) -> torch.Tensor:
    """Per-channel energy normalisation of a mel power spectrogram ``(..., mels, frames)``.

    The smoother starts at the window's mean energy of each band rather than at zero, so
    the first frames are not blown up. A gain ``g`` scales the output by ``g ** (1 - alpha)``
    (0.5 dB for 12 dB at alpha 0.98). Float32 in and out.
    """
    shape = power.shape
    x = power.reshape(-1, shape[-1])
    ref = x.mean(dim=-1, keepdim=True).clamp_min(1e-10)
    smooth = torchaudio.functional.lfilter(
        x - ref, torch.tensor([1.0, s - 1.0], device=x.device),
        torch.tensor([s, 0.0], device=x.device), clamp=False) + ref
    out = (x / (PCEN_EPS + smooth.clamp_min(0)) ** alpha + delta) ** r - delta ** r
    return out.reshape(shape)

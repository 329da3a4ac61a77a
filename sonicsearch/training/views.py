"""Two views of one excerpt for contrastive learning: batched waveform degradations on the
model's device, of the kinds a query meets in practice.

Each view is cut from a (possibly longer) excerpt at a random start and a small random speed
(linear interpolation: tempo and pitch together, like a tape or a resampling mismatch),
then band-limited, codec-filtered, reverberated, mixed with coloured noise at a random SNR
and given a random gain; each degradation hits an example with its own probability. The
log-mel, standardisation and SpecAugment masks are the model's (``AudioModel.forward`` in
training mode). All randomness comes from one ``torch.Generator`` on the waveforms' device,
so a CPU run is repeatable. The degradation steps are registered in
:data:`sonicsearch.degradations.DEGRADATIONS` (``register_view``) and run in the order they
are defined here; a new step is one registered method and its ``<name>_prob`` config key.
"""

from __future__ import annotations

import math

import torch

from sonicsearch.config import PretrainConfig
from sonicsearch.degradations import (
    EARLY_REFLECTIONS,
    TELEPHONE_HIGHPASS_RANGE,
    TELEPHONE_LOWPASS_RANGE,
    band_rt60,
    register_view,
    views,
)


class ViewMaker:
    """Degrades waveform batches at random; ``pair`` gives two views of every excerpt.

    Args:
        config: the view strengths (the ``pretrain`` config section).
        sample_rate: rate of the waveforms.
        window_samples: length of every view.
    """

    def __init__(self, config: PretrainConfig, sample_rate: int, window_samples: int):
        self.c, self.sr, self.win = config, sample_rate, window_samples

    def span_samples(self) -> int:
        """Excerpt length that leaves room for the views' shift and speed-up."""
        c = self.c
        return (int(math.ceil(self.win * (1 + max(c.speed, 0.0))))
                + int(round(max(c.pair_shift_seconds, 0.0) * self.sr)))

    @torch.no_grad()
    def pair(self, excerpts: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor,
                                                                          torch.Tensor]:
        """``(B, span)`` excerpts -> two independently degraded ``(B, window)`` views."""
        return self(excerpts, gen), self(excerpts, gen)

    @torch.no_grad()
    def __call__(self, excerpts: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """One degraded ``(B, window)`` view of each ``(B, span)`` excerpt (float32)."""
        c = self.c
        x = self._crop(excerpts.float(), gen)
        if c.mix_prob > 0 and x.shape[0] > 1:  # another excerpt of the batch as background
            hit = self._hit(x, c.mix_prob, gen)
            if bool(hit.any()):
                x = torch.where(hit[:, None], self._mix(x, gen), x)
        for _, step in views():  # band, telephone, codec, reverb, noise: registration order
            prob = getattr(c, step.prob)
            if prob <= 0 and not step.draws_when_off:
                continue
            hit = self._hit(x, prob, gen)
            if prob > 0 and bool(hit.any()):
                x = x.clone()
                x[hit] = step.view(self, x[hit], gen)
        if c.gain_db > 0:
            db = self._uniform(x.shape[0], -c.gain_db, c.gain_db, gen, x)
            x = x * (10.0 ** (db / 20.0))[:, None]
        return x

    # -- pieces ---------------------------------------------------------------------------
    def _uniform(self, n: int, lo: float, hi: float, gen, like: torch.Tensor) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(n, generator=gen, device=like.device)

    def _hit(self, x: torch.Tensor, prob: float, gen) -> torch.Tensor:
        return torch.rand(x.shape[0], generator=gen, device=x.device) < prob

    def _crop(self, x: torch.Tensor, gen) -> torch.Tensor:
        """A random start and speed ``r``: view[t] = x[start + t * r], zero past the end."""
        c, (b, n) = self.c, x.shape
        rate = torch.ones(b, device=x.device)
        if c.speed > 0 and c.speed_prob > 0:
            r = self._uniform(b, 1 - c.speed, 1 + c.speed, gen, x)
            rate = torch.where(self._hit(x, c.speed_prob, gen), r, rate)
        room = (n - 1 - (self.win - 1) * rate).clamp_min(0)
        start = torch.rand(b, generator=gen, device=x.device) * room
        pos = start[:, None] + torch.arange(self.win, device=x.device)[None] * rate[:, None]
        lo = pos.floor().long()
        frac = pos - lo
        pad = torch.nn.functional.pad(x, (0, 2))  # zeros past the end
        lo = lo.clamp(max=n)
        return pad.gather(1, lo) * (1 - frac) + pad.gather(1, lo + 1) * frac

    @register_view("band", prob="band_prob")
    def _band_limit(self, x: torch.Tensor, gen) -> torch.Tensor:
        """Soft low-pass at 1 kHz..Nyquist (log-uniform) and high-pass at 0..500 Hz."""
        b, nyq = x.shape[0], self.sr / 2
        lp = torch.exp(self._uniform(b, math.log(min(1000.0, nyq)), math.log(nyq), gen, x))
        hp = self._uniform(b, 0.0, min(500.0, nyq / 4), gen, x)
        spec = torch.fft.rfft(x)
        f = torch.linspace(0, nyq, spec.shape[1], device=x.device)[None]
        gain = (torch.sigmoid((lp[:, None] - f) / (0.05 * lp[:, None]))
                * torch.sigmoid((f - hp[:, None]) / (0.1 * hp[:, None] + 1.0)))
        return torch.fft.irfft(spec * gain, n=x.shape[1])

    @register_view("telephone", prob="telephone_prob", draws_when_off=False)
    def _telephone(self, x: torch.Tensor, gen) -> torch.Tensor:
        """A phone line: a steep band-pass (high-pass 200-400 Hz, low-pass 3.0-3.7 kHz, as
        300-3400 Hz through 8 kHz), half of the time mu-law 8-bit companding, and a gentle
        saturation; loudness kept."""
        b, nyq = x.shape[0], self.sr / 2
        spec = torch.fft.rfft(x)
        f = torch.linspace(0, nyq, spec.shape[1], device=x.device)[None]
        hp = self._uniform(b, *TELEPHONE_HIGHPASS_RANGE, gen, x)[:, None]
        lo, hi = TELEPHONE_LOWPASS_RANGE
        lp = self._uniform(b, min(lo, nyq * 0.9), min(hi, nyq * 0.95), gen, x)[:, None]
        gain = torch.sigmoid((f - hp) / 25.0) * torch.sigmoid((lp - f) / 40.0)
        y = torch.fft.irfft(spec * gain, n=x.shape[1])
        peak = y.abs().amax(dim=1, keepdim=True).clamp_min(1e-8)
        mu = 255.0
        z = y / peak
        q = torch.sign(z) * torch.log1p(mu * z.abs()) / torch.log1p(torch.tensor(mu))
        q = torch.round(q * 127.0) / 127.0
        lawed = torch.sign(q) * ((1 + mu) ** q.abs() - 1) / mu * peak
        law = self._hit(x, 0.5, gen)[:, None]
        y = torch.where(law, lawed, y)
        drive = self._uniform(b, 1.0, 3.0, gen, x)[:, None]
        y = torch.tanh(drive * y / peak) * peak / torch.tanh(drive)
        return y * (_rms(x) / _rms(y).clamp_min(1e-8))

    @register_view("codec", prob="codec_prob")
    def _codec(self, x: torch.Tensor, gen) -> torch.Tensor:
        """Perceptual-codec-like loss: STFT bins under a per-frame magnitude quantile
        (30-70 %) are dropped, and everything above 4-16 kHz is cut."""
        b, n_fft, hop = x.shape[0], 512, 128
        window = torch.hann_window(n_fft, device=x.device)
        spec = torch.stft(x, n_fft, hop, window=window, return_complex=True)
        mag = spec.abs()
        q = self._uniform(b, 0.3, 0.7, gen, x)
        sorted_mag = mag.sort(dim=1).values  # (B, bins, frames)
        idx = (q * (mag.shape[1] - 1)).long()[:, None, None].expand(-1, 1, mag.shape[2])
        threshold = sorted_mag.gather(1, idx)
        nyq = self.sr / 2
        cut = self._uniform(b, min(4000.0, nyq), min(16000.0, nyq), gen, x)
        f = torch.linspace(0, nyq, mag.shape[1], device=x.device)[None, :, None]
        keep = (mag >= threshold) & (f <= cut[:, None, None])
        out = torch.istft(spec * keep, n_fft, hop, window=window, length=x.shape[1])
        return out

    @register_view("reverb", prob="reverb_prob")
    def _reverb(self, x: torch.Tensor, gen) -> torch.Tensor:
        return self._room(x, gen) if self.c.reverb_room else self._decay(x, gen)

    def _decay(self, x: torch.Tensor, gen) -> torch.Tensor:
        """A synthetic room: unit direct path plus exponentially decaying noise (RT60
        0.1..reverb_max_seconds), wet level 0.2..1, loudness kept."""
        b, n = x.shape
        rt60 = self._uniform(b, 0.1, max(0.1, self.c.reverb_max_seconds), gen, x)
        length = max(2, int(self.c.reverb_max_seconds * self.sr))
        t = torch.arange(length, device=x.device)[None] / self.sr
        ir = torch.randn(b, length, generator=gen, device=x.device)
        ir = ir * torch.exp(-6.9 * t / rt60[:, None])
        ir = ir / ir.norm(dim=1, keepdim=True).clamp_min(1e-8)
        ir = ir * self._uniform(b, 0.2, 1.0, gen, x)[:, None]
        ir[:, 0] = 1.0
        return _convolve(x, ir)

    def _room(self, x: torch.Tensor, gen) -> torch.Tensor:
        """A room: the direct path, 4-12 early reflections (3-60 ms, decaying, random sign)
        and a late tail of noise whose decay is frequency-dependent (RT60 0.1..
        ``reverb_max_seconds`` at mid frequencies, 1.3x that below 500 Hz, 0.5x above
        4 kHz, as in furnished rooms); wet level 0.2..1 of the direct path, loudness kept."""
        b, n = x.shape
        dev = x.device
        rt60 = self._uniform(b, 0.1, max(0.1, self.c.reverb_max_seconds), gen, x)
        length = max(2, int(self.c.reverb_max_seconds * 1.3 * self.sr))
        t = torch.arange(length, device=dev)[None] / self.sr
        noise = torch.randn(b, length, generator=gen, device=dev)
        spec = torch.fft.rfft(noise)
        f = torch.linspace(0, self.sr / 2, spec.shape[1], device=dev)[None]
        tail = torch.zeros(b, length, device=dev)
        for lo, hi, centre in ((0.0, 500.0, 420.0), (500.0, 4000.0, 1000.0),
                               (4000.0, 1e9, 10000.0)):  # 1.3x, 1.0x, 0.5x the RT60
            band = torch.fft.irfft(spec * ((f >= lo) & (f < hi)), n=length)
            tail = tail + band * torch.exp(-6.9 * t / (band_rt60(1.0, centre) * rt60[:, None]))
        onset = self._uniform(b, 0.005, 0.03, gen, x)  # the tail builds up after the direct
        tail = tail * (1 - torch.exp(-t / onset[:, None]))
        n_early = 12
        delay = (self._uniform(b * n_early, *EARLY_REFLECTIONS, gen, x) * self.sr).long()
        delay = delay.clamp(1, length - 1).view(b, n_early)
        amp = (torch.rand(b, n_early, generator=gen, device=dev) * 0.6 + 0.2)
        amp = amp * torch.exp(-6.9 * delay / self.sr / rt60[:, None])
        sign = torch.where(torch.rand(b, n_early, generator=gen, device=dev) < 0.5, -1.0, 1.0)
        used = torch.rand(b, n_early, generator=gen, device=dev) < 0.67
        early = torch.zeros(b, length, device=dev).scatter_add_(1, delay, amp * sign * used)
        ir = tail / tail.norm(dim=1, keepdim=True).clamp_min(1e-8) + early
        ir = ir / ir.norm(dim=1, keepdim=True).clamp_min(1e-8)
        ir = ir * self._uniform(b, 0.2, 1.0, gen, x)[:, None]
        ir[:, 0] = 1.0
        return _convolve(x, ir)

    def _mix(self, x: torch.Tensor, gen) -> torch.Tensor:
        """Every excerpt over another one of the batch (a shifted copy, looped) at a random
        SNR in ``mix_snr_min``..``mix_snr_max`` dB: real sounds as the background."""
        b = x.shape[0]
        shift = int(torch.randint(1, b, (1,), generator=gen, device=x.device).item())
        back = torch.roll(x, shifts=shift, dims=0)
        snr = self._uniform(b, self.c.mix_snr_min, self.c.mix_snr_max, gen, x)
        scale = _rms(x) / _rms(back).clamp_min(1e-8) * 10.0 ** (-snr[:, None] / 20.0)
        return x + back * scale

    @register_view("noise", prob="noise_prob")
    def _noise(self, x: torch.Tensor, gen) -> torch.Tensor:
        """Noise coloured as 1/f^a (a in 0..2: white, pink, brown) at a random SNR."""
        b, n = x.shape
        c = self.c
        white = torch.randn(b, n, generator=gen, device=x.device)
        spec = torch.fft.rfft(white)
        alpha = self._uniform(b, 0.0, 2.0, gen, x)
        f = torch.arange(spec.shape[1], device=x.device).clamp_min(1).float()[None]
        noise = torch.fft.irfft(spec * f ** (-alpha[:, None] / 2), n=n)
        snr = self._uniform(b, c.noise_snr_min, c.noise_snr_max, gen, x)
        scale = _rms(x) / _rms(noise).clamp_min(1e-8) * 10.0 ** (-snr[:, None] / 20.0)
        return x + noise * scale


def _convolve(x: torch.Tensor, ir: torch.Tensor) -> torch.Tensor:
    """``x`` through the impulse responses ``ir`` (row by row), loudness kept."""
    n, length = x.shape[1], ir.shape[1]
    size = 1 << (n + length - 1).bit_length()
    wet = torch.fft.irfft(torch.fft.rfft(x, size) * torch.fft.rfft(ir, size), size)[:, :n]
    return wet * (_rms(x) / _rms(wet).clamp_min(1e-8))


def _rms(x: torch.Tensor) -> torch.Tensor:
    return x.pow(2).mean(dim=1, keepdim=True).sqrt()


from sonicsearch.training import views_capture  # noqa: E402, F401 - eq, dynamics: after noise

__all__ = ["ViewMaker"]

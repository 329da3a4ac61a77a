"""One degradation registry for the benchmarks and the training views: the views draw
exactly what they drew before it (same order, same random calls), and a registered
function is all a new degradation needs."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch

from sonicsearch import degradations as R
from sonicsearch.config import PretrainConfig
from sonicsearch.errors import ConfigError
from sonicsearch.eval import degrade as D
from sonicsearch.training.views import ViewMaker

# Recorded from the views of commit 805b412 (before the registry): sha256 of the generator's
# state after ``pair`` (the same random calls in the same order) and the views' abs sums.
BEFORE = {
    "default": ("af2db4778b7d5923408f220ccd708ec2f4157b6faff2fd2555ceb6a135250951",
                (15270.349, 16408.581)),
    "all_on": ("5b4b48148a4ee5891f2e415380d4954004174e57e6334ad2b3328cd0d6a771df",
               (16638.792, 16066.973)),
    "room": ("0748856f799b4efcbaf4d4dc9fb407ef42a3bcda6c44ad68dd9343f129cfbc7e",
             (17586.906, 12620.475)),
    "none": ("26254108316dc72bafe689f283c40356983f8f4614632dd557445c16c6d61401",
             (16090.143, 17046.886)),
}
RECIPES = {
    "default": {},
    "all_on": dict(telephone_prob=0.5, mix_prob=0.5, reverb_prob=0.6, codec_prob=0.6,
                   band_prob=0.6),
    "room": dict(telephone_prob=0.7, mix_prob=0.4, reverb_room=True, reverb_prob=0.8),
    "none": dict(noise_prob=0, band_prob=0, codec_prob=0, reverb_prob=0, gain_db=0,
                 speed_prob=0),
}
BENCHMARK_NAMES = ["clean", "noise_snr20", "noise_snr10", "noise_snr0", "pink_snr10",
                   "mp3_low", "ogg_low", "telephone", "reverb", "gain_-12db", "gain_+6db",
                   "speed_0.95", "speed_1.05", "speed_0.97", "speed_1.03", "reverb_room",
                   "phone_room", "eq_comp", "broadcast", "pitch_+1st", "tempo_1.06",
                   "speed_1.08"]


def _pair(config: PretrainConfig) -> tuple[torch.Tensor, torch.Tensor, torch.Generator]:
    maker = ViewMaker(config, 8000, 4000)
    gen = torch.Generator().manual_seed(1234)
    x = torch.randn(6, maker.span_samples(), generator=torch.Generator().manual_seed(7))
    a, b = maker.pair(x, gen)
    return a, b, gen


@pytest.mark.parametrize("recipe", list(RECIPES))
def test_views_draw_as_before_the_registry(recipe):
    a, b, gen = _pair(PretrainConfig(**RECIPES[recipe]))
    state, sums = BEFORE[recipe]
    assert hashlib.sha256(gen.get_state().numpy().tobytes()).hexdigest() == state
    got = (float(a.double().abs().sum()), float(b.double().abs().sum()))
    assert got == pytest.approx(sums, rel=1e-6)


def test_one_registry_in_the_kept_orders():
    assert [name for name, _ in R.views()] == ["band", "telephone", "codec", "reverb",
                                               "noise", "eq", "dynamics"]
    assert list(D.DEGRADATIONS) == BENCHMARK_NAMES
    both = {name for name, d in R.DEGRADATIONS.items() if d.view and d.benchmark}
    assert both == {"telephone", "reverb"}
    with pytest.raises(ConfigError, match="unknown degradation 'band'; choose one of: clean, "):
        D.apply("band", np.zeros(8, np.float32), 8000, np.random.default_rng(0))
    with pytest.raises(ValueError, match="has a benchmark setting already"):
        R.register_benchmark("clean", lambda x, sr, rng: x)


def test_a_registered_function_joins_the_views_and_the_benchmarks(monkeypatch):
    monkeypatch.setitem(R.DEGRADATIONS._entries, "silence", R.Degradation())
    R.register_view("silence", prob="silence_prob")(lambda maker, x, gen: x * 0.0)
    R.register_benchmark("silence", lambda x, sr, rng: np.zeros_like(x))
    assert list(D.DEGRADATIONS)[-1] == "silence" and [n for n, _ in R.views()][-1] == "silence"
    config = PretrainConfig(**RECIPES["none"])
    config.silence_prob = 1.0
    a, b, _ = _pair(config)
    assert float(a.abs().sum()) == 0.0 and float(b.abs().sum()) == 0.0
    x = np.ones(16, np.float32)
    assert not D.apply("silence", x, 8000, np.random.default_rng(0)).any()

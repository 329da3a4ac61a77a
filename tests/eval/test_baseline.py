from __future__ import annotations

import numpy as np
import pytest

from sonicsearch.data.synth import GENRES, make_synth_corpus, synth_clip
from sonicsearch.errors import DataError, ModelError
from sonicsearch.eval.baseline import MfccBaseline, evaluate_baseline, mfcc_stats


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """3 genres x 6 clips x 3 s, as (path, label) pairs."""
    out = tmp_path_factory.mktemp("baseline") / "corpus"
    make_synth_corpus(out, genres=3, per_genre=6, seconds=3.0, seed=0)
    return [(str(p), p.parent.name) for p in sorted(out.glob("*/*.wav"))]


def test_mfcc_stats_shape_dtype_and_determinism():
    wave = synth_clip("disco", seconds=2.0).astype(np.float32)
    a = mfcc_stats(wave, 22050)
    assert a.shape == (80,) and a.dtype == np.float32 and np.isfinite(a).all()
    np.testing.assert_array_equal(a, mfcc_stats(wave, 22050))
    assert mfcc_stats(wave, 22050, n_mfcc=13).shape == (52,)
    assert not np.allclose(a, mfcc_stats(synth_clip("jazz", seconds=2.0), 22050))


def test_mfcc_stats_short_and_bad_input():
    assert np.isfinite(mfcc_stats(np.full(100, 0.1, np.float32), 22050)).all()
    with pytest.raises(ValueError):
        mfcc_stats(np.zeros((2, 1000), np.float32), 22050)
    with pytest.raises(ValueError):
        mfcc_stats(np.zeros(0, np.float32), 22050)


def test_fit_predict_embed(tiny):
    train, test = tiny[::2], tiny[1::2]
    model = MfccBaseline().fit([p for p, _ in train], [y for _, y in train])
    assert model.labels == sorted(GENRES[:3])
    predicted = model.predict([p for p, _ in test])
    assert len(predicted) == len(test) and set(predicted) <= set(GENRES[:3])
    vectors = model.embed([p for p, _ in test])
    assert vectors.shape == (len(test), 80) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(vectors, model.embed([p for p, _ in test]))


def test_evaluate_baseline_reports_accuracy_and_macro_f1(tiny):
    result = evaluate_baseline(tiny[::2], tiny[1::2])
    assert result["n"] == len(tiny[1::2])
    assert 0.0 <= result["accuracy"] <= 1.0 and 0.0 <= result["macro_f1"] <= 1.0
    assert set(result["per_class"]) == set(GENRES[:3])


def test_misuse_raises_typed_errors(tiny):
    paths = [p for p, _ in tiny]
    with pytest.raises(ModelError, match="not fitted"):
        MfccBaseline().predict(paths[:1])
    with pytest.raises(DataError, match="two labels"):
        MfccBaseline().fit(paths[:2], ["a", "a"])
    with pytest.raises(DataError):
        MfccBaseline().fit(paths[:2], ["a"])
    with pytest.raises(DataError, match="empty"):
        evaluate_baseline(tiny, [])

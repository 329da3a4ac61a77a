from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from sonicsearch.data.synth import GENRES, MAX_GENRES, make_synth_corpus, synth_clip
from sonicsearch.errors import DataError

SR = 22050
SECONDS = 2.0


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth") / "corpus"
    calls = []
    summary = make_synth_corpus(out, genres=3, per_genre=2, seconds=SECONDS, seed=7,
                                progress=calls.append)
    return out, summary, calls


def _files(root):
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def test_layout_counts_and_summary(corpus):
    out, summary, calls = corpus
    assert _files(out) == [f"{g}/{g}.{i:05d}.wav" for g in GENRES[:3] for i in range(2)]
    assert summary == {"path": str(out), "genres": list(GENRES[:3]), "per_genre": 2,
                       "files": 6, "seconds": SECONDS, "sample_rate": SR, "seed": 7}
    assert calls == [1] * 6


def test_rate_duration_format_and_levels(corpus):
    out, _, _ = corpus
    for path in out.rglob("*.wav"):
        info = sf.info(str(path))
        assert (info.samplerate, info.channels, info.subtype) == (SR, 1, "PCM_16")
        assert info.frames == int(SECONDS * SR)
        wave, _ = sf.read(str(path))
        assert np.isfinite(wave).all()
        assert 0.25 < np.abs(wave).max() <= 0.99 + 1 / 32768  # normalised, never clipped
        assert np.sqrt(np.mean(wave**2)) > 0.01  # not silent


def test_same_seed_is_byte_identical_other_seed_differs(corpus, tmp_path):
    out, _, _ = corpus
    again = tmp_path / "again"
    make_synth_corpus(again, genres=3, per_genre=2, seconds=SECONDS, seed=7)
    for rel in _files(out):
        assert (again / rel).read_bytes() == (out / rel).read_bytes(), rel
    other = tmp_path / "other"
    make_synth_corpus(other, genres=3, per_genre=2, seconds=SECONDS, seed=8)
    assert all((other / rel).read_bytes() != (out / rel).read_bytes() for rel in _files(out))


def test_a_clip_does_not_depend_on_generation_order(corpus):
    out, _, _ = corpus
    stored, _ = sf.read(str(out / GENRES[2] / f"{GENRES[2]}.00001.wav"))
    alone = synth_clip(GENRES[2], seed=7, index=1, seconds=SECONDS, sample_rate=SR)
    assert np.abs(stored - alone).max() < 2 / 32768


@pytest.mark.parametrize("sr", [8000, 44100])
def test_every_genre_renders_at_other_rates(sr):
    for genre in GENRES:
        wave = synth_clip(genre, seed=1, index=3, seconds=1.0, sample_rate=sr)
        assert wave.shape == (sr,) and np.isfinite(wave).all()
        assert 0.25 < np.abs(wave).max() <= 0.99


def test_clips_differ_within_a_genre():
    a, b = (synth_clip("jazz", seed=0, index=i, seconds=1.0) for i in (0, 1))
    assert not np.allclose(a, b)


def test_non_empty_out_is_refused(tmp_path):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("x")
    with pytest.raises(DataError, match="not an empty folder"):
        make_synth_corpus(tmp_path / "full", genres=2, per_genre=1, seconds=1)
    assert (tmp_path / "full" / "keep.txt").read_text() == "x"
    (tmp_path / "file").write_text("x")
    with pytest.raises(DataError, match="not an empty folder"):
        make_synth_corpus(tmp_path / "file", genres=2, per_genre=1, seconds=1)


def test_empty_out_is_used(tmp_path):
    (tmp_path / "empty").mkdir()
    summary = make_synth_corpus(tmp_path / "empty", genres=2, per_genre=1, seconds=1)
    assert summary["files"] == 2 and len(_files(tmp_path / "empty")) == 2


@pytest.mark.parametrize("genres", [1, MAX_GENRES + 1])
def test_bad_genre_count_names_the_range(tmp_path, genres):
    with pytest.raises(DataError, match=f"between 2 and {MAX_GENRES}"):
        make_synth_corpus(tmp_path / "out", genres=genres)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("kwargs", [{"per_genre": 0}, {"seconds": 0.5}, {"sample_rate": 4000},
                                    {"seed": -1}])
def test_bad_arguments(tmp_path, kwargs):
    with pytest.raises(DataError):
        make_synth_corpus(tmp_path / "out", **kwargs)


def test_unknown_genre_lists_the_choices():
    with pytest.raises(DataError, match="choose one of: ambient"):
        synth_clip("polka")


def test_interrupted_run_leaves_nothing(tmp_path):
    def stop(_):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        make_synth_corpus(tmp_path / "out", genres=2, per_genre=2, seconds=1, progress=stop)
    assert list(tmp_path.iterdir()) == []


def test_at_least_ten_distinct_genres():
    assert MAX_GENRES >= 10 and len(set(GENRES)) == MAX_GENRES

"""Every occurrence of a clip: a 2 h recording with a jingle inserted 7 times at different
gains under noise (all 7 found, at their places, nothing else), a track that samples it
once, the threshold, k, filters and bad input."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
from fake_embedder import SR, FakeEmbedder, make_corpus, sound

from sonicsearch.errors import ConfigError
from sonicsearch.index import AudioIndex, QueryRequest, build_index
from sonicsearch.index.filters import Filters
from sonicsearch.index.occurrences import MIN_SCORE

FAKE_MIN_SCORE = 0.3  # the fake model is weaker on gain than the base model (airings
# here score 0.39-0.66, anything else at most 0.15; the base model's: MIN_SCORE's comment)

HOURS = 2.0
JINGLE_SECONDS = 4.0
AIRED = [(311.3, 0.0), (1207.8, -3.0), (2090.1, -6.0), (3300.4, -9.0), (4444.6, -12.0),
         (5607.25, 3.0), (6888.9, -6.0)]  # (start s, gain dB)
IN_TRACK = 7.3  # the jingle's start in track.wav


def jingle() -> np.ndarray:
    return sound(900, JINGLE_SECONDS)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("occurrences")
    rng = np.random.default_rng(1)
    n = int(HOURS * 3600 * SR)
    broadcast = 0.7 * sound(5000, HOURS * 3600)
    for start, gain in AIRED:  # the jingle replaces the programme, then noise over all
        a = int(start * SR)
        broadcast[a : a + int(JINGLE_SECONDS * SR)] = jingle() * 10 ** (gain / 20)
    broadcast = broadcast + 0.01 * rng.standard_normal(n).astype(np.float32)
    (root / "audio").mkdir()
    sf.write(root / "audio" / "broadcast.wav", broadcast, SR)
    track = np.concatenate([sound(801, IN_TRACK), 0.8 * jingle(), sound(802, 9.0)])
    sf.write(root / "audio" / "track.wav", track, SR)
    make_corpus(root / "audio" / "other", 10, seed0=100, seconds=20.0)
    sf.write(root / "jingle.wav", jingle(), SR)
    emb = FakeEmbedder(root / "model.pt")
    build_index([root / "audio"], emb, root / "idx")
    index = AudioIndex.open(root / "idx", embedder=emb)
    yield root, index
    index.close()


def test_every_airing_is_found_and_nothing_else(world):
    root, index = world
    res = index.occurrences(root / "jingle.wav", min_score=FAKE_MIN_SCORE)
    found = sorted((r["path"].rsplit("/", 1)[1], r["start"], r["end"]) for r in res)
    aired = [f for f in found if f[0] == "broadcast.wav"]
    assert len(aired) == len(AIRED), found
    for (_, start, end), (truth, _) in zip(aired, AIRED, strict=True):
        # within one window (1 s) of the truth
        assert abs(start - truth) <= 1.0 and abs(end - (truth + JINGLE_SECONDS)) <= 1.0
    assert [f[0] for f in found if f[0] != "broadcast.wav"] == ["track.wav"]
    (track,) = [r for r in res if r["path"].endswith("track.wav")]
    assert abs(track["start"] - IN_TRACK) <= 1.0
    for r in res:
        assert FAKE_MIN_SCORE <= r["score"] <= 1.0
        assert 0.0 <= r["query_start"] < r["query_end"] <= JINGLE_SECONDS
        assert r["query_end"] - r["query_start"] >= 0.75 * JINGLE_SECONDS
    assert [r["rank"] for r in res] == list(range(1, len(res) + 1))
    assert [r["score"] for r in res] == sorted((r["score"] for r in res), reverse=True)
    out = res.to_dict()
    assert (out["occurrences"], out["min_score"], out["no_match"], out["reason"]) == (
        True, FAKE_MIN_SCORE, False, None)
    default = index.occurrences(root / "jingle.wav").to_dict()  # MIN_SCORE, the base model's
    assert default["min_score"] == MIN_SCORE
    assert default["results"] == [r for r in out["results"] if r["score"] >= MIN_SCORE]


def test_the_best_occurrence_is_the_file_vote_score(world):
    # one scale: the best airing in a file scores what the vote roll-up gives the file
    root, index = world
    occ = index.occurrences(root / "jingle.wav", min_score=FAKE_MIN_SCORE)
    files = index.query(root / "jingle.wav", k=2)
    for hit in files:
        best = max(r["score"] for r in occ if r["path"] == hit["path"])
        assert best == pytest.approx(hit["score"], abs=1e-6)


def test_threshold_k_and_filters(world):
    root, index = world
    clip = root / "jingle.wav"
    every = index.occurrences(clip, min_score=FAKE_MIN_SCORE)
    three = index.occurrences(clip, k=3, min_score=FAKE_MIN_SCORE)
    assert three.to_dict()["results"] == every.to_dict()["results"][:3]
    strict = index.occurrences(clip, min_score=0.999)
    assert list(strict) == [] and strict.no_match
    assert "occurs nowhere" in strict.to_dict()["reason"]
    track = Filters(path_prefix=str(root / "audio" / "track.wav"))
    only = index.occurrences(clip, min_score=FAKE_MIN_SCORE, filters=track)
    assert [r["path"] for r in only] == [str((root / "audio" / "track.wav").resolve())]
    with pytest.raises(ConfigError, match="k must be at least 1"):
        index.occurrences(clip, k=0)
    with pytest.raises(ConfigError, match="finite"):
        index.occurrences(clip, min_score=float("nan"))


def test_a_clip_that_is_not_there_has_no_occurrence(world):
    _, index = world
    res = index.occurrences(sound(4242, 5.0), sample_rate=SR)
    assert list(res) == [] and res.no_match


def test_occurrences_refuse_other_modes():
    with pytest.raises(ConfigError, match="mode 'recording' and no segments"):
        QueryRequest(occurrences=True, segments=True)
    with pytest.raises(ConfigError, match="mode 'recording'"):
        QueryRequest(occurrences=True, mode="style")
    with pytest.raises(ConfigError, match="only an occurrences query"):
        QueryRequest(k=None)

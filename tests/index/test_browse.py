"""Browsing by similarity (sonicsearch/index/browse.py): the similarity path between two
files (small, one-way steps; exactly n distinct files; the bad inputs) and the 2-D map
(an exact projection, deterministic), on made vectors and on a built index."""

from __future__ import annotations

import os

import numpy as np
import pytest
from fake_embedder import FakeEmbedder, make_corpus

from sonicsearch.errors import ConfigError, IndexStoreError
from sonicsearch.index import AudioIndex, build_index
from sonicsearch.index.browse import MAX_PATH_FILES, pca_2d, similarity_path


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def arc(n: int, dim: int = 16, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` vectors along a quarter circle (angle 0..pi/2) with a little noise, in a
    shuffled order: (vectors, each one's angle)."""
    rng = np.random.default_rng(seed)
    theta = np.sort(rng.uniform(0, np.pi / 2, n))
    theta[0], theta[-1] = 0.0, np.pi / 2
    x = np.zeros((n, dim))
    x[:, 0], x[:, 1] = np.cos(theta), np.sin(theta)
    x[:, 2:] = 0.002 * rng.standard_normal((n, dim - 2))
    order = rng.permutation(n)
    return _unit(x[order]), theta[order]


def test_a_path_along_a_curve_moves_one_way_by_small_steps():
    v, theta = arc(40)
    a, b = int(np.argmin(theta)), int(np.argmax(theta))
    for n in (2, 3, 8, 40):
        ids = similarity_path(v, a, b, n)
        assert len(ids) == n and len(set(ids)) == n and ids[0] == a and ids[-1] == b
        assert np.all(np.diff(theta[ids]) > 0), (n, theta[ids])  # never back
    full = similarity_path(v, a, b, 40)
    assert theta[full].tolist() == sorted(theta.tolist())  # every file, in curve order
    # small steps: at n=8 no jump is much over an eighth of the arc's length
    steps = np.diff(theta[similarity_path(v, a, b, 8)])
    assert steps.max() < 2.2 * (np.pi / 2) / 7, steps


def test_a_path_goes_through_what_lies_between_and_not_elsewhere():
    rng = np.random.default_rng(1)
    centres = np.eye(16)[:4].copy()
    centres[2] = _unit((centres[0] + centres[1])[None])[0]  # C lies between A and B
    groups = np.repeat(np.arange(4), 10)  # A, B, C, and D far from both
    v = _unit(centres[groups] + 0.05 * rng.standard_normal((40, 16)))
    ids = similarity_path(v, 0, 10, 5)
    assert groups[ids].tolist()[0] == 0 and groups[ids].tolist()[-1] == 1
    assert 2 in groups[ids] and 3 not in groups[ids], groups[ids]
    # interpolation is beaten on the worst step: the path's largest jump is the smallest
    worst = max(1 - v[p] @ v[q] for p, q in zip(ids, ids[1:]))
    assert worst < 1 - v[0] @ v[10]


def test_bad_paths_are_one_line_errors():
    v, _ = arc(6)
    for a, b, n, match in ((1, 1, 4, "two different files"), (0, 1, 1, "at least its 2"),
                           (0, 1, 7, "needs 7 indexed files; the index holds 6")):
        with pytest.raises(ConfigError, match=match) as err:
            similarity_path(v, a, b, n)
        assert "\n" not in str(err.value)
    big = _unit(np.random.default_rng(0).standard_normal((MAX_PATH_FILES + 2, 4)))
    with pytest.raises(ConfigError, match=f"at most {MAX_PATH_FILES}"):
        similarity_path(big, 0, 1, MAX_PATH_FILES + 1)


def test_the_map_is_the_exact_principal_plane_and_deterministic():
    rng = np.random.default_rng(2)
    plane = rng.standard_normal((50, 2)) * [3.0, 1.0]  # a 2-D cloud, turned into 12-D
    basis = np.linalg.qr(rng.standard_normal((12, 2)))[0]
    x = plane @ basis.T + 5.0
    xy, explained = pca_2d(x)
    assert sum(explained) == pytest.approx(1.0) and explained[0] > explained[1] > 0.05
    d_map = np.linalg.norm(xy[:, None] - xy[None], axis=2)
    d_true = np.linalg.norm(x[:, None] - x[None], axis=2)
    assert np.allclose(d_map, d_true, atol=1e-9)  # nothing lost: distances kept
    again, _ = pca_2d(x.copy())
    assert np.array_equal(xy, again)
    one, ex = pca_2d(x[:1])
    assert one.tolist() == [[0.0, 0.0]] and ex == (0.0, 0.0)
    same, _ = pca_2d(np.ones((4, 3)))
    assert np.all(same == 0)


@pytest.fixture(scope="module")
def indexed(tmp_path_factory):
    root = tmp_path_factory.mktemp("browse")
    files = make_corpus(root / "audio", 8)
    emb = FakeEmbedder(root / "model.pt")
    build_index([root / "audio"], emb, root / "idx")
    with AudioIndex.open(root / "idx", embedder=emb) as index:
        yield root, files, index


def test_an_index_gives_a_path_by_path_or_id_and_its_json(indexed):
    root, files, index = indexed
    by_path = index.path_between(files[0], files[5], n=4)
    ids = index.store.by_path
    by_id = index.path_between(ids[str(files[0].resolve())], ids[str(files[5].resolve())], 4)
    assert by_path.files == by_id.files
    out = by_path.to_dict()
    assert out["from"] == str(files[0].resolve()) and out["to"] == str(files[5].resolve())
    assert out["n"] == 4 and [f["step"] for f in out["files"]] == [0, 1, 2, 3]
    assert len({f["path"] for f in out["files"]}) == 4
    assert out["files"][0]["similarity"] == 1.0 and out["files"][0]["to_start"] == 1.0
    assert out["files"][-1]["to_end"] == pytest.approx(1.0, abs=1e-5)
    assert out["worst_step"] == min(f["similarity"] for f in out["files"][1:])
    with pytest.raises(IndexStoreError, match="is not in index"):
        index.path_between(root / "elsewhere.wav", files[1], 3)
    with pytest.raises(IndexStoreError, match="no file 99"):
        index.path_between(99, 0, 3)
    with pytest.raises(ConfigError, match="needs 9 indexed files; the index holds 8"):
        index.path_between(files[0], files[1], 9)
    with pytest.raises(ConfigError, match="two different files"):
        index.path_between(files[2], str(files[2]), 3)


def test_an_index_gives_a_map_of_every_file(indexed):
    root, files, index = indexed
    out = index.collection_map().to_dict()
    assert out["files"] == 8 == len(out["points"]) and out["method"] == "pca"
    assert {p["path"] for p in out["points"]} == {str(f.resolve()) for f in files}
    for p in out["points"]:
        assert p["folder"] == os.path.dirname(p["path"]) and p["duration"] > 0
    assert len({(p["x"], p["y"]) for p in out["points"]}) == 8  # distinct files, apart
    assert 0 < out["explained"][1] <= out["explained"][0] <= 1
    assert index.collection_map().to_dict() == out

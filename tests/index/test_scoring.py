"""The batched roll-ups (index/scoring.py) give what the per-file roll-ups (index/rollups.py)
give, file by file: scores to float rounding, spans exactly; and the search scores its
candidates with them, in blocks, with the same ranking as one file at a time."""

from __future__ import annotations

import numpy as np
import pytest

from sonicsearch.index import rollups, scoring
from sonicsearch.index import search as search_mod
from sonicsearch.index.rollups import ROLLUP_REGISTRY, ROLLUPS

HOP = 0.5


def catalogue(seed: int, n_files: int = 12, dim: int = 16):
    """Random unit vectors, files of 1-40 windows at the hop (one with a gap), and a query
    of 7 windows copied from file 2 with noise (so that file votes at one offset)."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 40, n_files)
    sizes[2] = max(sizes[2], 10)
    spans, first = [], [0]
    for i, n in enumerate(sizes):
        starts = np.arange(n) * HOP + (3.0 if i == 5 else 0.0) * (np.arange(n) >= n // 2)
        spans.append(np.stack([starts, starts + 1.0], axis=1))
        first.append(first[-1] + int(n))
    v = rng.normal(size=(first[-1], dim))
    v = (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)
    x = v[first[2] + 1 : first[2] + 8] + rng.normal(scale=0.1, size=(7, dim))
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    q_spans = np.stack([np.arange(7) * HOP, np.arange(7) * HOP + 1.0], axis=1)
    floor = np.sort(x.astype(np.float64) @ v.T.astype(np.float64), axis=1)[:, -20]
    return v, np.concatenate(spans), np.array(first[:-1]), sizes.astype(np.int64), x, q_spans, floor


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("rollup", ROLLUPS)
def test_batched_rollups_equal_the_per_file_ones(seed, rollup):
    v, spans, first, sizes, x, q_spans, floor = catalogue(seed)
    spec = ROLLUP_REGISTRY.get(rollup)
    floor = floor if spec.background else None
    files = np.arange(len(sizes))[::-1].copy()  # any order
    block = scoring.gather(files, first, sizes, v, spans, x)
    scores, starts, ends = scoring.BATCHED[rollup](block, q_spans[:, 0], HOP, floor)
    for i, f in enumerate(files.tolist()):
        a, n = first[f], sizes[f]
        want = spec.score(x, v[a : a + n], q_spans[:, 0], spans[a : a + n], HOP, floor)
        assert scores[i] == pytest.approx(want[0], abs=1e-6), (rollup, f)
        assert (starts[i], ends[i]) == (want[1], want[2]), (rollup, f)


def test_the_first_window_in_order_breaks_ties_by_start_then_row():
    sims = np.array([[0.5, 0.9, 0.3, 0.9, 0.2, 0.2000001, 0.7]])
    starts = np.array([0.0, 2.0, 1.0, 1.0, 0.0, 5.0, 3.0])  # file 0: 4 windows, file 1: 3
    block = scoring.Block(np.array([7, 9]), np.array([0, 4, 7]), np.repeat([0, 1], [4, 3]),
                          sims, starts, starts + 1)
    key = sims.max(axis=0)
    assert scoring.first_in_order(block, key).tolist() == [3, 6]  # 0.9 at 1.0 s before 2.0 s
    key[[3, 6]] = -np.inf
    assert scoring.first_in_order(block, key).tolist() == [1, 4]  # 0.2 = 0.2000001 to 6 places


def test_every_rollup_has_a_batched_form():
    assert set(scoring.BATCHED) == set(ROLLUPS)


def test_blocks_bound_the_cells_and_keep_the_order():
    sizes = np.array([5, 100, 7, 3, 60], np.int64)
    nq = 4
    runs = list(scoring.blocks(np.arange(5), sizes, nq))
    assert np.concatenate(runs).tolist() == [0, 1, 2, 3, 4]
    assert len(runs) == 1
    cap = scoring.cells(100, nq) + scoring.cells(7, nq)
    old = scoring.BLOCK_CELLS
    try:
        scoring.BLOCK_CELLS = cap
        runs = list(scoring.blocks(np.arange(5), sizes, nq))
        assert all(sum(scoring.cells(int(sizes[f]), nq) for f in r) <= cap for r in runs)
        assert np.concatenate(runs).tolist() == [0, 1, 2, 3, 4] and len(runs) > 1
        assert not scoring.fits(200, nq) and scoring.fits(100, nq) and not scoring.fits(0, nq)
    finally:
        scoring.BLOCK_CELLS = old


class _Store:
    """What score_files reads of a Store."""

    def __init__(self, first, sizes, spans):
        self.first_rows, self.n_windows, self._spans = first, sizes, spans

    def span_table(self):
        return self._spans

    def file_spans(self, f):
        a = int(self.first_rows[f])
        return self._spans[a : a + int(self.n_windows[f])]


@pytest.mark.parametrize("cap", [None, 300])
@pytest.mark.parametrize("rollup", ROLLUPS)
def test_score_files_in_blocks_ranks_as_one_file_at_a_time(monkeypatch, rollup, cap):
    v, spans, first, sizes, x, q_spans, floor = catalogue(7, n_files=30)
    store = _Store(first, sizes, spans)
    floor = floor if ROLLUP_REGISTRY.get(rollup).background else None
    files = np.arange(len(sizes))
    if cap is not None:  # small blocks, and the largest files scored alone
        monkeypatch.setattr(scoring, "BLOCK_CELLS", cap)
        assert not all(scoring.fits(int(n), len(x)) for n in sizes)
    got = search_mod._ranked(search_mod.score_files(store, v, x, q_spans, files, rollup,
                                                    HOP, floor))
    monkeypatch.setattr(search_mod, "BATCHED", {})  # the per-file path
    want = search_mod._ranked(search_mod.score_files(store, v, x, q_spans, files, rollup,
                                                     HOP, floor))
    assert [h.file for h in got] == [h.file for h in want]
    assert got[0].file == 2 and got[0].score > 0.3  # the query's source, at one offset
    for a, b in zip(got, want, strict=True):
        assert a.score == pytest.approx(b.score, abs=1e-6)
        assert (a.start, a.end) == (b.start, b.end)
    assert rollups.QUERY_BLOCK >= len(x)


@pytest.mark.parametrize("chunk", [3, 2048])
def test_similarities_with_compact_rows_are_those_of_the_decoded_rows(monkeypatch, chunk):
    from sonicsearch.index import codec

    monkeypatch.setattr(codec, "SIMILARITY_CHUNK", chunk)  # 3: rows span several chunks
    rng = np.random.default_rng(1)
    raw = rng.normal(size=(50, 24)).astype(np.float32)
    projection = codec.Projection.fit(raw, 8)
    compact = codec.CompactVectors(projection.encode(raw), projection)
    x = projection.project(rng.normal(size=(5, 24)))
    rows = np.array([7, 3, 3, 49, 0, 12, 30])
    want = x.astype(np.float64) @ compact[rows].T.astype(np.float64)
    assert codec.similarities(compact, x, rows) == pytest.approx(want, abs=1e-6)
    plain = raw / np.linalg.norm(raw, axis=1, keepdims=True)
    got = codec.similarities(plain, x @ projection.basis, rows)
    assert got == pytest.approx((x @ projection.basis) @ plain[rows].T, abs=1e-6)


def test_compact_rows_gathered_in_two_dimensions_decode_each_vector():
    """The vote background gathers (query windows, neighbours) rows at once: each decoded
    vector is a unit vector, as when the rows come one dimension at a time."""
    from sonicsearch.index import codec

    rng = np.random.default_rng(2)
    raw = rng.normal(size=(40, 24)).astype(np.float32)
    projection = codec.Projection.fit(raw, 8)
    compact = codec.CompactVectors(projection.encode(raw), projection)
    rows = rng.integers(0, 40, (3, 5))
    block = compact[rows]
    assert block.shape == (3, 5, 8)
    assert np.allclose(np.linalg.norm(block, axis=-1), 1.0, atol=1e-6)
    assert np.array_equal(block.reshape(15, 8), compact[rows.ravel()])


def test_the_span_table_answers_as_the_database(tmp_path):
    from fake_embedder import FakeEmbedder, make_corpus

    from sonicsearch.index import AudioIndex, build_index

    make_corpus(tmp_path / "audio", 4, seconds=3.0)
    emb = FakeEmbedder(tmp_path / "model.pt")
    build_index([tmp_path / "audio"], emb, tmp_path / "idx")
    with AudioIndex.open(tmp_path / "idx", embedder=emb) as index:
        store = index.store
        rows = np.array([5, 0, 5, store.n_rows - 1])
        by_sql = store.spans(rows), [store.file_spans(f) for f in range(4)]
        table = store.span_table()
        assert np.array_equal(table, store.all_spans()) and table is store.span_table()
        assert np.array_equal(store.spans(rows), by_sql[0])
        assert all(np.array_equal(store.file_spans(f), s) for f, s in enumerate(by_sql[1]))

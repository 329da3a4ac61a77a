"""An update that changes few windows keeps the last measured no-match calibration (as a
server switching to the next generation would), counting the windows changed over every
generation it is carried through; past CARRY_SHARE it is measured again."""

from __future__ import annotations

import json

from fake_embedder import FakeEmbedder, make_corpus, write_sound

from sonicsearch.index import AudioIndex, build_index
from sonicsearch.index import calibration_carry as carry
from sonicsearch.index.calibration import CALIBRATION, calibration


def test_calibration_is_carried_over_small_updates_and_measured_after_many(tmp_path,
                                                                            monkeypatch):
    audio, idx = tmp_path / "audio", tmp_path / "idx"
    make_corpus(audio, 10, seconds=3.0)
    emb = FakeEmbedder(tmp_path / "model.pt")
    build_index([audio], emb, idx)
    with AudioIndex.open(idx, embedder=emb) as first:  # held, as a server holds its own
        measured = calibration(first)
        n, per_file = first.ntotal, first.ntotal // 10
    assert "carried" not in measured and measured["samples"] > 0
    monkeypatch.setattr(carry, "CARRY_SHARE", 2.5 * per_file / (n + 3 * per_file))  # 2 files
    for step, seed in enumerate((50, 51, 52), 2):
        with AudioIndex.open(idx, embedder=emb) as held:
            write_sound(audio / f"new{seed}.wav", seed, seconds=3.0)
            build_index([audio], emb, idx)
            with AudioIndex.open(idx, embedder=emb) as index:
                assert index.gen.name == f"gen-{step:06d}" != held.gen.name
                data = calibration(index)
        saved = json.loads((idx / f"gen-{step:06d}" / CALIBRATION).read_text())
        assert saved["vectors"] == data["vectors"] == n + (step - 1) * per_file
        if step < 4:  # 1, then 2 files' windows since gen-000001: carried, as measured
            assert data["carried"] == {"from": f"gen-{step - 1:06d}",
                                       "measured": "gen-000001",
                                       "changed_windows": (step - 1) * per_file}
            assert data["thresholds"] == measured["thresholds"]
        else:  # 3 files' worth: past the share, measured again
            assert "carried" not in data and data["generation"] == "gen-000004"

from __future__ import annotations

import numpy as np
import pytest
from audio_files import tone, write_audio

from sonicsearch.config import FeatureConfig
from sonicsearch.data.manifest import (
    assign_split,
    class_count_table,
    load_dataset,
    read_items,
    read_split,
    write_split,
)
from sonicsearch.data.windows import FileWindows, RandomCrops, collate_files
from sonicsearch.errors import DataError


def make_tree(root, labels=("a", "b", "c"), per=10, sr=8000, seconds=2.0):
    for li, label in enumerate(labels):
        (root / label / "sub").mkdir(parents=True)
        for i in range(per):
            where = root / label / ("sub" if i % 2 else "")
            write_audio(where / f"{label}{i}.wav", tone(seconds, sr, 200 + 50 * li + i), sr)
    return root


def test_folder_dataset_split_is_stratified_disjoint_and_seeded(tmp_path):
    root = make_tree(tmp_path / "d")
    ds = load_dataset(root, 0.2, 0.2, seed=3)
    assert ds.labels == ["a", "b", "c"] and len(ds.items) == 30
    splits = {s: {str(it.path) for it in ds.split(s)} for s in ("train", "val", "test")}
    assert not (splits["train"] & splits["val"]) and not (splits["train"] & splits["test"])
    assert not (splits["val"] & splits["test"])
    for label in ds.labels:  # stratified: every label on every side
        for s in ("train", "val", "test"):
            assert any(it.label == label for it in ds.split(s))
    again = load_dataset(root, 0.2, 0.2, seed=3)
    assert [(i.path, i.split) for i in again.items] == [(i.path, i.split) for i in ds.items]
    other = load_dataset(root, 0.2, 0.2, seed=4)
    assert [(i.path, i.split) for i in other.items] != [(i.path, i.split) for i in ds.items]
    assert "total" in class_count_table(ds)


def test_windows_of_one_file_never_cross_splits(tmp_path):
    root = make_tree(tmp_path / "d", per=6, seconds=7.0)
    ds = load_dataset(root, 0.2, 0.2, seed=0)
    fc = FeatureConfig(sample_rate=8000, window_seconds=2.0, hop_seconds=1.0)
    train = RandomCrops(ds.split("train"), ds.labels, fc, crops_per_file=3, seed=0)
    test_paths = {it.path for it in ds.split("test")}
    assert not {train.items[i % len(train.items)].path for i in range(len(train))} & test_paths
    val = FileWindows(ds.split("val"), ds.labels, fc)
    windows, owner, targets, files = collate_files([val[0], val[1]])
    assert windows.shape[1] == 16000 and owner.max() == 1 and len(targets) == 2


def test_random_crops_are_repeatable_per_epoch(tmp_path):
    root = make_tree(tmp_path / "d", per=3, seconds=6.0)
    ds = load_dataset(root, 0.0, 0.0, seed=0)
    fc = FeatureConfig(sample_rate=8000, window_seconds=1.0)
    a = RandomCrops(ds.items, ds.labels, fc, 2, gain_db=6, seed=1)
    b = RandomCrops(ds.items, ds.labels, fc, 2, gain_db=6, seed=1)
    assert np.array_equal(a[4][0], b[4][0])
    b.set_epoch(1)
    assert not np.array_equal(a[4][0], b[4][0])
    assert a[4][0].shape == (8000,)


def test_too_few_files_names_the_label(tmp_path):
    root = make_tree(tmp_path / "d", labels=("big", "tiny"), per=6)
    for f in list((root / "tiny").rglob("*.wav"))[2:]:
        f.unlink()
    with pytest.raises(DataError, match=r"tiny \(2\)"):
        load_dataset(root, 0.2, 0.2)


def test_bad_files_are_skipped_with_reasons(tmp_path):
    root = make_tree(tmp_path / "d", per=4)
    (root / "a" / "empty.wav").write_bytes(b"")
    write_audio(root / "b" / "silent.wav", np.zeros((16000, 1), np.float32), 8000)
    write_audio(root / "c" / "short.wav", tone(0.1, 8000), 8000)
    ds = load_dataset(root, 0.25, 0.25)
    reasons = sorted(r.split(" (")[0] for _, r in ds.skipped)
    assert reasons == ["empty file", "silent", "too short"]
    assert len(ds.items) == 12


def test_csv_with_split_column_and_relative_paths(tmp_path):
    root = make_tree(tmp_path / "d", per=3)
    lines = ["path,label,split"]
    for label in "abc":
        files = sorted((root / label).rglob("*.wav"))
        for f, s in zip(files, ["train", "valid", "test"]):
            lines.append(f"{f.relative_to(root)},{label},{s}")
    (root / "data.csv").write_text("\n".join(lines) + "\n")
    ds = load_dataset(root / "data.csv")
    assert ds.given_split and len(ds.split("val")) == 3 and len(ds.split("test")) == 3
    write_split(ds, tmp_path / "split.csv")
    back = read_split(tmp_path / "split.csv", root)
    assert sorted(back.values()).count("train") == 3


def test_csv_paths_may_not_escape_the_folder(tmp_path):
    root = make_tree(tmp_path / "d", per=3)
    write_audio(tmp_path / "outside.wav", tone(1, 8000), 8000)
    other = write_audio(tmp_path / "other.wav", tone(1, 8000, 300), 8000)
    (root / "x.csv").write_text(f"path,label\n../outside.wav,a\n{other},b\n")
    with pytest.raises(DataError, match="outside the CSV's folder"):
        read_items(root / "x.csv")
    _, items = read_items(root / "x.csv", allow_external_paths=True)
    assert len(items) == 2
    (root / "y.csv").write_text(f"path,label\n{other},b\n")
    with pytest.raises(DataError, match="is absolute"):
        read_items(root / "y.csv")


def test_malformed_inputs(tmp_path):
    with pytest.raises(DataError, match="no such dataset"):
        read_items(tmp_path / "none")
    (tmp_path / "bad.csv").write_text("file,genre\nx.wav,a\n")
    with pytest.raises(DataError, match="columns path,label"):
        read_items(tmp_path / "bad.csv")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no audio files"):
        read_items(tmp_path / "empty")


def test_partial_split_column_is_an_error(tmp_path):
    from sonicsearch.data.manifest import Item

    items = [Item(tmp_path / "x", "a", "train"), Item(tmp_path / "y", "a", None)]
    with pytest.raises(DataError, match="some rows"):
        assign_split(items, 0.2, 0.2, 0)


def _csv_corpus(tmp_path, rows: list[str]):
    for label in ("a", "b"):
        for i in range(6):
            (tmp_path / label).mkdir(exist_ok=True)
            write_audio(tmp_path / label / f"{i}.wav", tone(1.5, 8000, 200 + 40 * i), 8000)
    csv_path = tmp_path / "data.csv"
    body = [f"{label}/{i}.wav,{label}" for label in ("a", "b") for i in range(6)]
    csv_path.write_text("path,label\n" + "\n".join(body + rows) + "\n")
    return csv_path


@pytest.mark.parametrize("extra, what", [
    ("a/0.wav,a", "twice"),
    ("./a/../a/0.wav,b", "under labels 'a' and 'b'"),
])
def test_csv_listing_a_file_twice_names_both_lines(tmp_path, extra, what):
    # without the check, the two rows of one file were split independently, so one file
    # could land in train and in test (leakage the test metrics never showed)
    csv_path = _csv_corpus(tmp_path, [extra])
    with pytest.raises(DataError) as err:
        load_dataset(csv_path, 0.2, 0.2)
    message = str(err.value)
    assert "lines 2 and 14" in message and what in message and "\n" not in message


def test_folder_file_reached_twice_through_a_symlink_counts_once(tmp_path):
    root = make_tree(tmp_path / "d", per=5)
    (root / "a" / "again").symlink_to(root / "a" / "sub", target_is_directory=True)
    (root / "a" / "a0-link.wav").symlink_to(root / "a" / "a0.wav")
    ds = load_dataset(root, 0.2, 0.2)
    assert len(ds.items) == 15
    reals = [str(it.path.resolve()) for it in ds.items]
    assert len(set(reals)) == len(reals)


def test_folder_file_under_two_labels_is_an_error(tmp_path):
    root = make_tree(tmp_path / "d", per=5)
    (root / "b" / "stolen.wav").symlink_to(root / "a" / "a0.wav")
    with pytest.raises(DataError, match="labels 'a' and 'b'"):
        load_dataset(root, 0.2, 0.2)

"""sonicsearch.data.debian offline: pools, archive unpacking, scanning, manifests, the Opus
pack, and fetch from a .deb already in the cache (built here with dpkg-deb, no download)."""

from __future__ import annotations

import csv
import shutil
import struct
import subprocess
import zipfile
from collections import Counter

import numpy as np
import pytest
import soundfile as sf
from audio_files import tone, write_audio

from sonicsearch.data import debian as D
from sonicsearch.data.manifest import read_items

SR = 8000
HAS_OPUS = "OPUS" in sf.available_subtypes("OGG")


def test_pools_are_disjoint_and_follow_the_music_rule():
    assert not set(D.TRAIN_POOL) & set(D.EVAL_POOL)
    assert all("music" in p for p in D.EVAL_POOL)
    assert not any("music" in p for p in D.TRAIN_POOL)
    assert set(D.TRAIN_POOL.values()) <= {D.GAME, "effects", "speech", "moh"}
    assert all(label and " " not in label for label in D.EVAL_POOL.values())
    skipped = [n for n in ("track3_enhanced.opus", "frantic-old.ogg", "frantic.ogg",
                           "dynamictest-battle-41-74sec.ogg", "bold.ogg", "menu.opus")
               if D.EVAL_SKIP.search(n)]
    assert skipped == ["track3_enhanced.opus", "frantic-old.ogg",
                       "dynamictest-battle-41-74sec.ogg"]


def _tree(root):
    """A fake extracted package: music, an effect, a voice, a duplicate, a too-short file,
    a corrupt file, and an Ogg inside a .pk3."""
    game = root / "game-data" / "usr/share/games/game"
    for sub in ("music", "sfx", "voices"):
        (game / sub).mkdir(parents=True)
    write_audio(game / "music" / "theme.ogg", tone(3.0, SR, 220), SR)
    write_audio(game / "sfx" / "boom.wav", tone(1.5, SR, 330), SR)
    write_audio(game / "sfx" / "long.flac", tone(50.0, SR, 110, amp=0.2), SR)
    write_audio(game / "voices" / "hello.wav", tone(2.0, SR, 180), SR)
    shutil.copy(game / "sfx" / "boom.wav", game / "sfx" / "boom2.wav")  # duplicate
    write_audio(game / "sfx" / "click.wav", tone(0.2, SR, 990), SR)  # too short
    (game / "sfx" / "broken.wav").write_bytes(b"RIFF....WAVEnot really audio")
    write_audio(root / "inner.ogg", tone(2.5, SR, 550), SR)
    with zipfile.ZipFile(game / "data.pk3", "w") as z:
        z.write(root / "inner.ogg", "sound/ambience/wind.ogg")
        z.writestr("textures/wall.txt", "not audio")
        z.writestr("../escape.ogg", b"never written")
    (root / "inner.ogg").unlink()
    (root / "doc").mkdir()
    return root


def test_scan_unpacks_archives_skips_bad_files_and_labels_kinds(tmp_path):
    root = _tree(tmp_path / "extracted")
    skipped = Counter()
    tracks = D.scan(root, {"game-data": D.GAME, "absent-data": "effects"}, 1.0, skipped,
                    by_kind=True)
    by_name = {t.path.name: t for t in tracks}
    assert set(by_name) == {"theme.ogg", "boom.wav", "long.flac", "hello.wav", "wind.ogg"}
    assert by_name["theme.ogg"].label == "music" and by_name["boom.wav"].label == "effects"
    assert by_name["hello.wav"].label == "speech" and by_name["wind.ogg"].label == "ambience"
    assert by_name["long.flac"].label == "music"  # >= 45 s in a game's data
    assert by_name["wind.ogg"].path.parent.parent.parent.name == "data.pk3.d"
    assert abs(by_name["boom.wav"].duration - 1.5) < 1e-6
    assert skipped == {"duplicate": 1, "shorter than 1 s": 1, "unreadable": 1,
                       "not extracted": 1}
    assert not (root / "escape.ogg").exists() and not list(root.rglob("escape.ogg"))
    # labels from the pool, and a second scan (archives already unpacked) is the same
    again = D.scan(root, {"game-data": "style"}, 1.0)
    assert [t.path for t in again] == [t.path for t in tracks]
    assert {t.label for t in again} == {"style"}
    assert [t.path.name for t in D.scan(root, {"game-data": "x"}, 30.0)] == ["long.flac"]


def test_manifest_paths_are_relative_under_the_csv_folder(tmp_path):
    root = _tree(tmp_path / "extracted")
    tracks = D.scan(root, {"game-data": D.GAME}, 1.0, by_kind=True)
    out = D.write_manifest(tracks, tmp_path / "train.csv")
    rows = list(csv.DictReader(open(out, newline="")))
    assert list(rows[0]) == ["path", "label", "package", "duration"]
    assert len(rows) == len(tracks) and all(r["path"].startswith("extracted/") for r in rows)
    _, items = read_items(out)  # the training CSV reader takes it as it is
    assert sorted(str(i.path) for i in items) == sorted(str(t.path.resolve()) for t in tracks)
    outside = D.write_manifest(tracks, tmp_path / "elsewhere" / "m.csv")
    assert all(r["path"].startswith("/") for r in csv.DictReader(open(outside, newline="")))
    s = D.summarize(tracks)
    assert s["packages"]["game-data"]["files"] == len(tracks)
    assert set(s["labels"]) == {"music", "effects", "speech", "ambience"}


def test_sound_bank_and_licences(tmp_path):
    wavs = []
    for f in (300, 600):
        write_audio(tmp_path / "w.wav", tone(1.2, SR, f), SR)
        wavs.append((tmp_path / "w.wav").read_bytes())
    body, table, off = b"", b"", 16
    for i, w in enumerate(wavs):
        name = f"sound {i}\0".encode()
        entry = bytes([len(name)]) + name + w
        table += struct.pack("<II", (off + len(body)) | (0x80000000 if i == 0 else 0),
                             len(entry))
        body += entry
    bank = tmp_path / "pkg" / "sounds.cat"
    bank.parent.mkdir()
    bank.write_bytes(table + body)
    (tmp_path / "pkg" / "messages.cat").write_bytes(b"just text, no sounds")
    assert D.unpack_archives(tmp_path / "pkg") == 2
    out = sorted((tmp_path / "pkg" / "sounds.cat.d").glob("*.wav"))
    assert [sf.info(str(p)).duration for p in out] == pytest.approx([1.2, 1.2])
    assert not (tmp_path / "pkg" / "messages.cat.d").exists()

    doc = tmp_path / "r" / "usr/share/doc/p"
    doc.mkdir(parents=True)
    (doc / "copyright").write_text("Files: *\nLicense: GPL-2+\n text\nFiles: a\n"
                                   "License: CC-BY-SA-3.0\nFiles: b\nLicense: GPL-2+\n")
    assert D.licenses(tmp_path / "r", "p") == ["GPL-2+", "CC-BY-SA-3.0"]
    (doc / "copyright").write_text("Music by someone, under the GNU General Public License;\n"
                                   "see /usr/share/common-licenses/GPL-2.\n")
    assert D.licenses(tmp_path / "r", "p") == ["GPL-2"]
    (doc / "copyright").write_text("License\n\n  CREATIVE COMMONS PUBLIC LICENSE ...\n"
                                   "  this License: Attribution, ShareAlike.\n")
    assert D.licenses(tmp_path / "r", "p") == ["CC-BY-SA"]
    assert D.licenses(tmp_path / "r", "missing") == []


def test_shares_cap_small_kinds_and_give_the_rest_away():
    b = D._shares({"music": 1e9, "effects": 10.0, "speech": 1e9},
                  {"music": 0.5, "effects": 0.25, "speech": 0.25}, 100.0)
    assert b["effects"] == 10.0 and sum(b.values()) == pytest.approx(100.0)
    assert b["music"] == pytest.approx(2 * b["speech"])


@pytest.mark.skipif(not HAS_OPUS, reason="this libsndfile cannot write Ogg/Opus")
def test_pack_opus_balances_kinds_and_stays_small(tmp_path):
    rng = np.random.default_rng(0)
    tracks = []
    for i, (kind, seconds) in enumerate([("music", 130.0), ("music", 20.0), ("speech", 8.0),
                                         ("speech", 6.0), ("effects", 3.0)]):
        x = (0.3 * np.sin(2 * np.pi * (150 + 40 * i) * np.arange(int(seconds * 22050)) / 22050)
             + 0.02 * rng.standard_normal(int(seconds * 22050))).astype(np.float32)
        path = write_audio(tmp_path / f"src{i}.wav", x, 22050)
        tracks.append(D.Track(path, kind, f"pkg{i % 2}", seconds))
    out = tmp_path / "pack"
    s = D.pack_opus(tracks, out, hours=90.0 / 3600, bitrate_kbps=16.0, piece_seconds=60.0)
    rows = list(csv.DictReader(open(out / "manifest.csv", newline="")))
    assert s["files"] == len(rows) > 0
    total = sum(float(r["duration"]) for r in rows)
    assert 80.0 <= total <= 150.0
    assert s["kinds"]["effects"]["files"] == 1 and s["kinds"]["speech"]["files"] == 2
    for r in rows:
        info = sf.info(str(out / r["path"]))
        assert info.samplerate == 16000 and info.channels == 1
        assert float(r["duration"]) <= 60.0 + 1e-6
        assert info.duration == pytest.approx(float(r["duration"]), abs=0.05)
    kbps = s["bytes"] * 8 / total / 1000
    assert kbps < 24.0  # 6 hours in < 55 MiB needs < 21 kbit/s on average, plus headers
    assert s["bytes"] == sum((out / r["path"]).stat().st_size for r in rows)


@pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="needs dpkg-deb")
def test_fetch_extracts_a_cached_deb_and_records_its_version(tmp_path):
    pkg = tmp_path / "build"
    (pkg / "DEBIAN").mkdir(parents=True)
    (pkg / "DEBIAN" / "control").write_text(
        "Package: tiny-sounds\nVersion: 1:1.0-2\nArchitecture: all\n"
        "Maintainer: t <t@example.org>\nDescription: test\n")
    doc = pkg / "usr/share/doc/tiny-sounds"
    doc.mkdir(parents=True)
    (doc / "copyright").write_text("License: CC0-1.0\n")
    write_audio(pkg / "usr/share/doc/tiny-sounds/ding.wav", tone(1.5, SR), SR)
    debs = tmp_path / "cache" / "debs"
    debs.mkdir(parents=True)
    deb = debs / "tiny-sounds_1%3a1.0-2_all.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", "-b", str(pkg), str(deb)], check=True,
                   capture_output=True)
    roots = D.fetch(["tiny-sounds"], tmp_path / "cache", log=lambda m: None)
    assert roots == [tmp_path / "cache" / "extracted" / "tiny-sounds"]
    assert (roots[0] / "usr/share/doc/tiny-sounds/ding.wav").is_file()
    import json

    src = json.loads((tmp_path / "cache" / "sources.json").read_text())
    assert src["tiny-sounds"] == {"deb": deb.name, "version": "1:1.0-2",
                                  "licenses": ["CC0-1.0"]}
    (roots[0] / "marker").write_text("kept")  # a second fetch extracts nothing again
    D.fetch(["tiny-sounds"], tmp_path / "cache", log=lambda m: None)
    assert (roots[0] / "marker").is_file()

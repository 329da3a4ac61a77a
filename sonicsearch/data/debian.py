"""Real audio from Debian packages: the training and evaluation pools, fetched and scanned.

Debian main is DFSG-free: the audio may be used and redistributed under each package's
licence (``usr/share/doc/PKG/copyright``, summarised by :func:`fetch` for the model card).
Two pools, disjoint and written down here: :data:`TRAIN_POOL` (game data, effects and UI
sound themes, Asterisk's voice prompts and music on hold; for training and pretraining
only) and :data:`EVAL_POOL` (the ``*music*`` packages with decodable music, never trained
on, so a benchmark on them measures what a user's own, unseen collection would get).

:func:`fetch` downloads (``apt-get download``) and extracts (``dpkg-deb -x``, then the audio
inside .pk3/.zip archives and OpenTTD's .cat sound bank); :func:`scan` lists readable audio
of at least ``min_seconds``, identical files once; :func:`write_manifest` writes the DATA
CSV; :func:`pack_opus` packs a balanced few hours as 16 kHz mono Ogg/Opus, small enough to
carry to a GPU machine where only soundfile decodes. :func:`make` (``sonicsearch
make-dataset debian``) runs them all.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import re
import shutil
import subprocess
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import soundfile as sf

from sonicsearch.audio import SILENCE_PEAK, load_audio
from sonicsearch.data.archives import AUDIO_SUFFIXES, unpack_archives
from sonicsearch.data.archives import STAMP as _STAMP
from sonicsearch.errors import DataError

GAME = "music+effects"
TRAIN_POOL: dict[str, str] = {
    **dict.fromkeys(
        ("supertuxkart-data", "redeclipse-data", "widelands-data", "megaglest-data",
         "freedroidrpg-data", "supertux-data", "hedgewars-data", "warmux-data",
         "neverball-data", "xmoto-data", "colobot-common-sounds", "lincity-ng-data",
         "openarena-data", "frozen-bubble-data", "pingus-data", "triplea"), GAME),
    **dict.fromkeys(
        ("openttd-opensfx", "tuxpaint-data", "sound-theme-freedesktop", "oxygen-sounds",
         "deepin-sound-theme", "lomiri-sounds", "sound-icons"), "effects"),
    **{f"asterisk-core-sounds-{lang}-wav": "speech" for lang in ("en", "es", "fr", "it", "ru")},
    "asterisk-moh-opsound-wav": "moh",
}
"""Training pool. neverball-data ships no audio (its sounds are in another package) and is
kept for the record; fb-music-high and xblast-tnt-musics are left out of both pools (tracker
and raw files that libsndfile cannot decode)."""

EVAL_POOL: dict[str, str] = {
    "asc-music": "strategy",
    "drascula-music": "adventure",
    "hyperrogue-music": "atmospheric",
    "nexuiz-music": "electronic",
    "planetblupi-music-ogg": "cheerful",
    "singularity-music": "ambient",
    "ufoai-music": "cinematic",
    "warzone2100-music": "rts",
    "wesnoth-1.16-music": "orchestral",
}
"""Evaluation pool (``*music*`` packages with decodable music) -> label: the soundtrack's
style where it is plain (orchestral, electronic, ambient...), else the kind of game."""

EVAL_SKIP = re.compile(r"_enhanced\.|-old\.|^dynamictest")
"""Alternative versions of a track in the same package (warzone2100's ``*_enhanced``,
wesnoth's ``frantic-old``) and ufoai's test loops: left out of the evaluation scan, so an
identification query has exactly one right answer."""

assert not set(TRAIN_POOL) & set(EVAL_POOL), "training and evaluation pools overlap"
assert all("music" in p for p in EVAL_POOL) and not any("music" in p for p in TRAIN_POOL)

KIND_WEIGHTS = {"music": 0.35, "effects": 0.25, "speech": 0.25, "ambience": 0.15}
_KIND_WORDS = {"music": {"music", "musics", "cdtracks", "moh"},
               "ambience": {"ambience", "ambient", "ambiance", "ambiences"},
               "speech": {"voice", "voices", "speech", "announcer", "voice_samples",
                          "tux_ingame_comments"}}


@dataclass(frozen=True)
class Track:
    """One audio file: its path, label (kind or style), package and duration (seconds)."""

    path: Path
    label: str
    package: str
    duration: float


# -- fetch ---------------------------------------------------------------------------------

def fetch(packages: Iterable[str], cache_dir: str | Path,
          log: Callable[[str], None] = print) -> list[Path]:
    """Download and extract packages into ``cache_dir`` (each step once); return the
    extracted folders ``cache_dir/extracted/PKG/``, in order.

    The .debs stay in ``cache_dir/debs/`` as ``PKG_VERSION_ARCH.deb`` (the exact version);
    ``cache_dir/sources.json`` records ``{PKG: {deb, version, licenses}}``.

    Raises:
        DataError: no apt-get, or a package that cannot be downloaded.
    """
    cache = Path(cache_dir)
    index = cache / "sources.json"
    sources = json.loads(index.read_text()) if index.is_file() else {}
    roots = []
    for pkg in packages:
        deb = _download(pkg, cache / "debs", log)
        root = _extract(deb, cache / "extracted" / pkg, log)
        unpack_archives(root)
        version = unquote(deb.name.split("_")[1])
        sources[pkg] = {"deb": deb.name, "version": version, "licenses": licenses(root, pkg)}
        roots.append(root)
    index.write_text(json.dumps(sources, indent=1, sort_keys=True) + "\n")
    return roots


def _download(pkg: str, debs: Path, log) -> Path:
    debs.mkdir(parents=True, exist_ok=True)
    have = sorted(debs.glob(f"{pkg}_*.deb"))
    if have:
        return have[-1]
    if shutil.which("apt-get") is None:
        raise DataError("apt-get is not available: fetching needs a Debian or Ubuntu system")
    log(f"apt-get download {pkg}")
    done = subprocess.run(["apt-get", "download", pkg], cwd=debs, capture_output=True,
                          text=True)
    have = sorted(debs.glob(f"{pkg}_*.deb"))
    if done.returncode != 0 or not have:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:]
        raise DataError(f"apt-get download {pkg} failed: {tail} (run apt-get update first?)")
    return have[-1]


def _extract(deb: Path, dest: Path, log) -> Path:
    stamp = dest / _STAMP
    if stamp.is_file() and stamp.read_text().strip() == deb.name:
        return dest
    log(f"dpkg-deb -x {deb.name}")
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    subprocess.run(["dpkg-deb", "-x", str(deb), str(dest)], check=True)
    stamp.write_text(deb.name + "\n")
    return dest


def licenses(root: str | Path, pkg: str, most: int = 5) -> list[str]:
    """The package's licence summary for the model card: the distinct ``License:`` names of
    a machine-readable copyright file (the first ``most``); for a free-form one, the
    ``/usr/share/common-licenses/NAME`` it points to, else a licence its text names."""
    path = Path(root) / "usr/share/doc" / pkg / "copyright"
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return []
    found = [ln.split(":", 1)[1].strip() for ln in text.splitlines()
             if ln.startswith("License:") and ln.split(":", 1)[1].strip()]
    found = found or [m.rstrip(".,") for m in re.findall(r"common-licenses/([\w.+-]+)", text)]
    found = found or [name for name, pattern in _FREE_FORM if re.search(pattern, text, re.I)][:1]
    return list(dict.fromkeys(found))[:most]


_FREE_FORM = (("CC-BY-SA", r"attribution[-, ]+share ?alike"), ("CC-BY", r"creative commons"),
              ("GPL", r"general public licen[cs]e"), ("public-domain", r"public domain"))


# -- scan and manifests --------------------------------------------------------------------

def file_kind(rel: Path, pkg_kind: str, duration: float) -> str:
    """The kind of one training file: from its folder names (music, ambience, voices...),
    else from its package's kind; a long file (>= 45 s) of a game's data is music."""
    parts = {p.lower() for p in rel.parts[:-1]}
    for kind, words in _KIND_WORDS.items():
        if parts & words:
            return kind
    if pkg_kind == "moh":
        return "music"
    if pkg_kind == GAME:
        return "music" if duration >= 45.0 else "effects"
    return pkg_kind


def scan(extracted_root: str | Path, pool: Mapping[str, str], min_seconds: float = 1.0,
         skipped: Counter | None = None, by_kind: bool = False,
         skip: re.Pattern | None = None) -> list[Track]:
    """The usable audio files of ``pool``'s packages (package -> label) under
    ``extracted_root/PKG/``, by package, then path; archives are unpacked first.

    A file is kept when soundfile reads its header and it lasts at least ``min_seconds``;
    of identical files (same bytes) only the first. ``skipped`` (a Counter) gets a count
    per reason a file was left out. ``by_kind`` labels each file with its own kind
    (:func:`file_kind`) instead of the package's label; ``skip`` leaves out file names
    that match it.
    """
    skipped = Counter() if skipped is None else skipped
    root = Path(extracted_root)
    tracks, seen = [], set()
    for pkg, label in pool.items():
        tree = root / pkg
        if not tree.is_dir():
            skipped["not extracted"] += 1
            continue
        unpack_archives(tree)
        for path in sorted(p for p in tree.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES):
            if not path.is_file():
                continue
            if skip is not None and skip.search(path.name):
                skipped["alternative version"] += 1
                continue
            try:
                duration = sf.info(str(path)).duration
            except (RuntimeError, OSError, ValueError, TypeError):
                skipped["unreadable"] += 1
                continue
            if not duration >= min_seconds:
                skipped[f"shorter than {min_seconds:g} s"] += 1
                continue
            digest = _hash(path)
            if digest in seen:
                skipped["duplicate"] += 1
                continue
            seen.add(digest)
            kind = file_kind(path.relative_to(tree), label, duration) if by_kind else label
            tracks.append(Track(path, kind, pkg, float(duration)))
    return tracks


def _hash(path: Path) -> str:
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def write_manifest(tracks: Iterable[Track], csv_path: str | Path) -> Path:
    """Write ``path,label,package,duration``. A path is relative to the CSV's folder when the
    file lies under it (what ``sonicsearch train`` reads without ``--allow-external-paths``),
    else absolute."""
    csv_path = Path(csv_path)
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    base = csv_path.parent.resolve()
    with open(csv_path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "label", "package", "duration"])
        for t in tracks:
            p = Path(t.path).resolve()
            w.writerow([p.relative_to(base).as_posix() if p.is_relative_to(base) else str(p),
                        t.label, t.package, f"{t.duration:.3f}"])
    return csv_path


def summarize(tracks: Iterable[Track]) -> dict:
    """Files and hours per package and per label."""
    out: dict = {"packages": defaultdict(lambda: [0, 0.0]), "labels": defaultdict(
        lambda: [0, 0.0])}
    for t in tracks:
        for key, name in (("packages", t.package), ("labels", t.label)):
            out[key][name][0] += 1
            out[key][name][1] += t.duration / 3600
    return {k: {n: {"files": f, "hours": round(h, 3)} for n, (f, h) in sorted(v.items())}
            for k, v in out.items()}


# -- the GPU pack --------------------------------------------------------------------------

def opus_level(bitrate_kbps: float) -> float:
    """libsndfile's Opus compression level for a bit rate: it maps level 0..1 linearly to
    256..6 kbit/s per channel."""
    return float(np.clip(1.0 - (bitrate_kbps - 6.0) / 250.0, 0.0, 1.0))


def pack_opus(tracks: list[Track], out_dir: str | Path, hours: float, sample_rate: int = 16000,
              bitrate_kbps: float = 16.0, seed: int = 0, piece_seconds: float = 60.0,
              weights: Mapping[str, float] = KIND_WEIGHTS) -> dict:
    """A balanced, seeded pick of about ``hours`` of audio as 16 kHz mono Ogg/Opus.

    Files are cut into equal pieces of at most ``piece_seconds``; each kind (the tracks'
    labels, see :data:`KIND_WEIGHTS`) gets its weight's share of the hours (a kind with
    less audio gives its rest to the others), and within a kind packages take turns, so no
    single package dominates. Silent pieces are dropped. Writes ``out_dir/KIND/PKG/N.opus``,
    ``out_dir/manifest.csv`` (``path,label,package,duration,source,offset``, paths relative
    to it) and ``out_dir/pack.json``. At 16 kbit/s, 6 hours take about 45 MB.

    Raises:
        DataError: this libsndfile cannot write Opus, or no tracks.

    One seeded pass picks, cuts, encodes and records each piece; it stays in one function
    so that the draw order, and so the pack, is reproducible.
    """
    if "OPUS" not in sf.available_subtypes("OGG"):
        raise DataError("this libsndfile cannot write Ogg/Opus (needs libsndfile >= 1.0.29)")
    if not tracks:
        raise DataError("no tracks to pack")
    rng = np.random.default_rng(seed)
    pieces: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for t in tracks:
        n = max(1, math.ceil(t.duration / piece_seconds))
        for i in range(n):
            pieces[t.label][t.package].append((t, i * t.duration / n, t.duration / n))
    avail = {k: sum(p[2] for v in pk.values() for p in v) for k, pk in pieces.items()}
    budget = _shares(avail, {k: weights.get(k, 0.05) for k in avail}, hours * 3600.0)
    out = Path(out_dir)
    for kind in pieces:  # a pack made before into this folder goes
        shutil.rmtree(out / kind, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    rows, level = [], opus_level(bitrate_kbps)
    for kind in sorted(pieces):
        queues = {pkg: [v[i] for i in rng.permutation(len(v))]
                  for pkg, v in sorted(pieces[kind].items())}
        used = 0.0
        while used < budget[kind] and any(queues.values()):
            for pkg, q in queues.items():
                if not q or used >= budget[kind]:
                    continue
                t, offset, length = q.pop()
                wave, _ = load_audio(t.path, sample_rate, offset, length)
                if float(np.abs(wave).max(initial=0.0)) < SILENCE_PEAK:
                    continue
                dest = out / kind / pkg / f"{len(rows):05d}.opus"
                dest.parent.mkdir(parents=True, exist_ok=True)
                sf.write(dest, np.clip(wave, -1.0, 1.0), sample_rate, format="OGG",
                         subtype="OPUS", compression_level=level)
                rows.append((dest, kind, pkg, wave.size / sample_rate, t.path, offset))
                used += wave.size / sample_rate
    with open(out / "manifest.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "label", "package", "duration", "source", "offset"])
        for dest, kind, pkg, dur, src, off in rows:
            w.writerow([dest.relative_to(out).as_posix(), kind, pkg, f"{dur:.3f}", str(src),
                        f"{off:.3f}"])
    summary = {"files": len(rows), "hours": round(sum(r[3] for r in rows) / 3600, 3),
               "bytes": sum(r[0].stat().st_size for r in rows), "sample_rate": sample_rate,
               "bitrate_kbps": bitrate_kbps, "compression_level": level, "seed": seed,
               "kinds": summarize(Track(r[0], r[1], r[2], r[3]) for r in rows)["labels"]}
    (out / "pack.json").write_text(json.dumps(summary, indent=1) + "\n")
    return summary


def _shares(avail: Mapping[str, float], weights: Mapping[str, float],
            total: float) -> dict[str, float]:
    """Split ``total`` seconds by weight, capped by what each kind has; the rest of a capped
    kind goes to the others in proportion."""
    budget, open_ = {}, set(avail)
    while open_:
        w = sum(weights[k] for k in open_)
        left = total - sum(budget.values())
        capped = {k for k in open_ if avail[k] <= left * weights[k] / w}
        if not capped:
            budget.update({k: left * weights[k] / w for k in open_})
            break
        budget.update({k: avail[k] for k in capped})
        open_ -= capped
    return budget


# -- everything at once --------------------------------------------------------------------

def make(out_csv: str | Path, pool: str = "train", cache_dir: str | Path | None = None,
         min_seconds: float | None = None, pack_hours: float = 0.0,
         pack_dir: str | Path | None = None, seed: int = 0,
         log: Callable[[str], None] = print) -> dict:
    """Fetch a pool, scan it, write its manifest (and ``OUT.sources.json``: package versions
    and licences, files and hours); with ``pack_hours`` also :func:`pack_opus` the result.

    Args:
        pool: ``train`` (labels are kinds) or ``eval`` (labels are styles).
        min_seconds: shortest file kept (default 1 s for train, 30 s for eval: full tracks).
    """
    if pool not in ("train", "eval"):
        raise DataError(f"unknown pool '{pool}'; choose train or eval")
    packages = TRAIN_POOL if pool == "train" else EVAL_POOL
    cache = Path(cache_dir) if cache_dir else Path.home() / ".cache/sonicsearch/debian"
    fetch(packages, cache, log)
    skipped: Counter = Counter()
    tracks = scan(cache / "extracted", packages,
                  min_seconds if min_seconds is not None else (1.0 if pool == "train" else 30.0),
                  skipped, by_kind=pool == "train", skip=EVAL_SKIP if pool == "eval" else None)
    if not tracks:
        raise DataError(f"no usable audio in the {pool} pool under {cache}")
    write_manifest(tracks, out_csv)
    sources = json.loads((cache / "sources.json").read_text())
    summary = {"pool": pool, "csv": str(out_csv), "files": len(tracks),
               "hours": round(sum(t.duration for t in tracks) / 3600, 3),
               "skipped": dict(skipped), **summarize(tracks),
               "sources": {p: sources[p] for p in packages}}
    if pack_hours > 0:
        where = Path(pack_dir) if pack_dir else Path(out_csv).parent / f"pack{pack_hours:g}h"
        summary["pack"] = {"dir": str(where), **pack_opus(tracks, where, pack_hours, seed=seed)}
        (where / "sources.json").write_text(json.dumps(summary, indent=1) + "\n")
    Path(out_csv).with_suffix(".sources.json").write_text(json.dumps(summary, indent=1) + "\n")
    return summary

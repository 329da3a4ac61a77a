"""Duplicates and occurrences at 10^4 files, from the real window vectors of
``collection_scale.py``'s 10^3-file index (no audio is embedded again).

Embedding 10^4 files of real audio takes hours on 2 cores, so the 1000 files of that index
(originals, made copies, the 3-minute excerpt and the 40-minute mix; the base model's
window vectors) are made into WORLDS collections of the same shape: world w is every
stored window vector turned by one random orthogonal rotation of its own (w = 0 keeps the
real vectors), so no two worlds share a recording (a turned vector is about as close to
the unturned ones as a random direction) while each keeps every cosine of the real
collection: its copies, its distinct tracks, its mix. (An earlier run also added Gaussian
noise of sigma 0.01 per dimension to every world, world 0 included; that lowered every
similarity to the real jingle and hid 4 of its 7 airings below the threshold.) The 10^4
files are built into one index through the real build (their files are placeholders; an
embedder hands out the vectors with their real spans), then ``duplicates`` runs on it,
and the jingle's real window vectors ask for every occurrence (world 0's mix holds its 7
airings). Truth: an original and its copies (by the track
number in their names) and the excerpt with the mix, within each world.

What it measures is the cost of ``duplicates`` and of an occurrence query at 10^4 files,
and that the worlds' made copies are still grouped; a rotated world is farther from the
others than a real collection's files are from each other, so the search finds its
neighbours a little more easily than in a real 10^4-file collection.

    python benchmarks/collection_scale.py --data data/debian/eval.csv --threads 1
    python benchmarks/collection_10k.py --worlds 10

Writes benchmarks/results/collection_10k.{json,md}.
"""

from __future__ import annotations

import re
import sys
import time
from itertools import combinations
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402
import duplicates as D  # noqa: E402

PRESETS = {"tiny": {"worlds": 2}, "quick": {"worlds": 3}, "full": {"worlds": 10}}


def parse_args(argv: list[str] | None = None):
    p = C.base_parser(__doc__.split("\n\n")[0])
    p.add_argument("--source", type=Path, default=None,
                   help="collection_scale.py's work folder (default: CACHE/"
                   "bench-collection-scale/full, or tiny with --tiny)")
    p.add_argument("--worlds", type=int, default=None, help="copies of the collection")
    args = p.parse_args(argv)
    C.preset(args, PRESETS)
    return args


class WorldEmbedder(D.VectorEmbedder):
    """Hands out each placeholder file's vectors with their real spans."""

    def __init__(self, model_path: Path, vectors: dict, spans: dict, fc):
        super().__init__(model_path, vectors)
        self.spans, self.feature_config = spans, fc

    def embed_file(self, path):
        from sonicsearch.embed.types import EmbeddedFile

        name = Path(path).name
        s = self.spans[name]
        return EmbeddedFile(self.vectors[name], s, None, float(s[-1, 1]), 22050)


def worlds(source: Path, n: int, seed: int):
    """(vectors by name, spans by name, feature config, jingle vectors and spans)."""
    from sonicsearch.index import AudioIndex

    rng = np.random.default_rng(seed)
    with AudioIndex.open(source / "idx", device="cpu") as real:
        rows, spans = np.asarray(real._exact, np.float32), real.store.all_spans()
        recs = [(Path(r.path).name, r.first_row, r.n_windows) for r in real.store.records]
        fc = real.embedder.feature_config
        jingle = real.embedder.embed_file(source / "jingle.wav")
    vectors, out_spans = {}, {}
    dim = rows.shape[1]
    for w in range(n):
        turn = np.eye(dim) if w == 0 else np.linalg.qr(rng.standard_normal((dim, dim)))[0]
        moved = rows @ turn.astype(np.float32)  # every cosine within the world kept
        for name, a, k in recs:
            key = f"w{w:02d}-{name.rsplit('.', 1)[0]}.wav"
            vectors[key], out_spans[key] = moved[a : a + k], spans[a : a + k]
    return vectors, out_spans, fc, jingle


def truth(names: list[str]) -> set[tuple[str, str]]:
    family: dict[tuple[str, str], list[str]] = {}
    for name in names:
        world = name[:3]
        track = re.search(r"t(\d{3})", name[4:])
        key = (world, track.group(1) if track and name[4] in "tc" else "mix")
        family.setdefault(key, []).append(name)
    return {tuple(sorted(p)) for fam in family.values() for p in combinations(fam, 2)}


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    C.set_threads(args.threads)
    from sonicsearch.config import IndexConfig
    from sonicsearch.index import AudioIndex, QueryRequest, build_index

    source = args.source or args.cache / "bench-collection-scale" / C.mode(args).replace(
        "quick", "full")
    vectors, spans, fc, jingle = worlds(source, args.worlds, args.seed)
    work = C.mkdir(args.cache / "bench-collection-10k" / C.mode(args))
    audio = C.mkdir(work / "audio")
    for old in audio.iterdir():
        old.unlink()
    for name in vectors:
        (audio / name).write_bytes(b"placeholder")
    emb = WorldEmbedder(work / "model.pt", vectors, spans, fc)
    with C.Timer() as t_build:
        build_index([audio], emb, work / "idx", IndexConfig(index_type="flat", device="cpu"),
                    rebuild=True)
    with AudioIndex.open(work / "idx", embedder=emb, device="cpu") as index:
        found = index.duplicates()
        t0 = time.perf_counter()
        occ = index.run(QueryRequest(vectors=jingle.vectors, spans=jingle.spans, k=None,
                                     occurrences=True, query="jingle.wav"))
        t_occ = time.perf_counter() - t0
        n_vectors = index.ntotal
    name = lambda p: Path(p).name  # noqa: E731
    got = {tuple(sorted((name(found.paths[a]), name(found.paths[b]))))
           for g in found.groups for a, b in combinations(g.files, 2)}
    want = truth(list(vectors))
    tp = len(got & want)
    row = {"worlds": args.worlds, "files": len(vectors), "vectors": n_vectors,
           "true_pairs": len(want), "build_seconds": round(t_build.seconds, 1),
           "duplicates_seconds": round(found.seconds, 2),
           "dup_precision": round(tp / max(len(got), 1), 4),
           "dup_recall": round(tp / max(len(want), 1), 4),
           "occ_seconds": round(t_occ, 2), "occurrences": len(occ),
           "occ_files": sorted({name(r["path"]) for r in occ})}
    C.log(str(row))
    table = {k: v for k, v in row.items() if k != "occ_files"}
    C.write_results("collection_10k", args.out,
                    {"benchmark": "collection_10k", "mode": C.mode(args),
                     "machine": C.machine(), "rows": [row]},
                    [("Duplicates and occurrences at 10^4 files",
                      C.markdown_table(list(table), [list(table.values())]))])
    return row


if __name__ == "__main__":
    with C.exit_on_error():
        main()

"""How fast is ``sonicsearch duplicates``, and does it find the copies? An index of
synthetic window vectors of the base model's dimension (files are smooth random walks
around a genre, as audio embeddings are), with made copies: noisy re-encodes of a whole
file, copies trimmed by a few windows, and tracks inside longer "mixes". Built through the
real build (its files are placeholders; an embedder hands out the vectors), then searched
by :func:`sonicsearch.index.duplicates.find_duplicates`: seconds, precision and recall of
the copy pairs.

    python benchmarks/duplicates.py --quick        # 10^3 files
    python benchmarks/duplicates.py --files 10000 --windows 20

Writes benchmarks/results/duplicates.{json,md}. Synthetic vectors measure the algorithm's
cost and its bookkeeping, not a model's robustness (tests/index/test_duplicates.py and
the real-audio benchmark of issue #27 do that).
"""

from __future__ import annotations

import hashlib
import sys
from itertools import combinations
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

PRESETS = {
    "tiny": {"files": 60, "windows": 20, "dim": 32},
    "quick": {"files": 1000, "windows": 40, "dim": 512},
    "full": {"files": 10000, "windows": 20, "dim": 512},
}
HOP = 1.5
GENRES = 32
COPY_SHARE = 0.03  # of the files get a copy of each kind


def parse_args(argv: list[str] | None = None):
    p = C.base_parser(__doc__.split("\n\n")[0])
    p.add_argument("--files", type=int, default=None, help="original files")
    p.add_argument("--windows", type=int, default=None, help="windows per file")
    p.add_argument("--dim", type=int, default=None, help="vector dimension (base model 512)")
    p.add_argument("--stride", type=float, default=3.0, help="duplicates --stride seconds")
    args = p.parse_args(argv)
    C.preset(args, PRESETS)
    return args


class VectorEmbedder:
    """Satisfies the index's Embedder protocol with vectors made in advance per file name."""

    arch = "synthetic"
    labels: list[str] = []

    def __init__(self, model_path: Path, vectors: dict[str, np.ndarray]):
        from sonicsearch.config import FeatureConfig

        model_path.write_bytes(b"synthetic vectors\n" * 64)
        self.model_path = model_path
        self.model_sha256 = hashlib.sha256(model_path.read_bytes()).hexdigest()
        self.vectors = vectors
        self.dim = next(iter(vectors.values())).shape[1]
        self.feature_config = FeatureConfig(window_seconds=2 * HOP, hop_seconds=HOP)

    def embed_file(self, path):
        from sonicsearch.embed.types import EmbeddedFile

        v = self.vectors[Path(path).name]
        starts = np.arange(len(v)) * HOP
        spans = np.stack([starts, starts + 2 * HOP], axis=1)
        return EmbeddedFile(v, spans, None, float(spans[-1, 1]), 22050)

    def embed_files(self, paths):
        for p in paths:
            yield Path(p), self.embed_file(p)


def make_vectors(n: int, windows: int, dim: int, seed: int):
    """Originals, copies and the true copy pairs (by file name)."""
    rng = np.random.default_rng(seed)
    genres = rng.standard_normal((GENRES, dim))

    def walk(length: int) -> np.ndarray:
        g = genres[rng.integers(GENRES)] + 0.7 * rng.standard_normal(dim)
        steps = np.cumsum(0.35 * rng.standard_normal((length, dim)), axis=0)
        drift = steps / np.sqrt(np.arange(1, length + 1))[:, None]
        return _unit(g + rng.standard_normal(dim) + drift)

    files = {f"o{i:05d}.wav": walk(windows) for i in range(n)}
    pairs = set()
    k = max(1, int(COPY_SHARE * n))
    for i in range(k):  # a noisy re-encode, a trimmed copy, a track inside a mix
        a, b, c = f"o{i:05d}.wav", f"o{k + i:05d}.wav", f"o{2 * k + i:05d}.wav"
        files[f"enc{i:05d}.wav"] = _unit(files[a] + 0.04 * rng.standard_normal(files[a].shape))
        files[f"trim{i:05d}.wav"] = files[b][3:]
        files[f"mix{i:05d}.wav"] = np.concatenate([walk(windows), files[c], walk(windows)])
        pairs |= {tuple(sorted((a, f"enc{i:05d}.wav"))), tuple(sorted((b, f"trim{i:05d}.wav"))),
                  tuple(sorted((c, f"mix{i:05d}.wav")))}
    return {name: v.astype(np.float32) for name, v in files.items()}, pairs


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    C.set_threads(args.threads)
    from sonicsearch.config import IndexConfig
    from sonicsearch.index import AudioIndex, build_index

    work = C.mkdir(args.cache / "bench-duplicates" / f"{args.files}x{args.windows}x{args.dim}")
    vectors, truth = make_vectors(args.files, args.windows, args.dim, args.seed)
    audio = C.mkdir(work / "audio")
    for name in vectors:
        (audio / name).write_bytes(b"placeholder")
    emb = VectorEmbedder(work / "model.pt", vectors)
    with C.Timer() as t:
        # flat: what duplicates costs does not hang on the index type (step 1 searches the
        # stored vectors above 20k windows); an HNSW build would only add build time
        build_index([audio], emb, work / "idx", IndexConfig(index_type="flat", device="cpu"),
                    rebuild=True)
    C.log(f"{len(vectors)} files, {sum(map(len, vectors.values()))} vectors built in "
          f"{t.seconds:.0f}s")
    with AudioIndex.open(work / "idx", embedder=emb, device="cpu") as index:
        found = index.duplicates(stride_seconds=args.stride)
        info = index.info()
    got = {tuple(sorted((Path(found.paths[x]).name, Path(found.paths[y]).name)))
           for g in found.groups for x, y in combinations(g.files, 2)}
    tp = len(got & truth)
    row = {"files": len(vectors), "vectors": info["vectors"], "dim": args.dim,
           "index_type": info["index_type"], "stride_seconds": args.stride,
           "seconds": round(found.seconds, 2), "groups": len(found.groups),
           "precision": round(tp / max(len(got), 1), 4), "recall": round(tp / len(truth), 4)}
    C.log(str(row))
    C.write_results("duplicates", args.out,
                    {"benchmark": "duplicates", "mode": C.mode(args), "machine": C.machine(),
                     "rows": [row]},
                    [("Duplicates", C.markdown_table(list(row), [list(row.values())]))])
    return row


if __name__ == "__main__":
    with C.exit_on_error():
        main()

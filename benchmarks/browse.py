"""Browsing on real music: the similarity path (three ways to make one, compared) and the
2-D map, on an index of the Debian evaluation pool built with the shipped base model.

Every track of the pool (217 tracks of 9 soundtracks, ``make-dataset debian ... --pool
eval``) is cut to SECONDS s from its 30th second into a folder named by its package, and
indexed (``--keep`` keeps the index, for ``benchmarks/page_screenshots.py``). For PAIRS
random pairs of tracks of two different packages, a path of N files is made:

- ``refine``: :func:`sonicsearch.index.browse.similarity_path` (what ``sonicsearch path``
  runs): the largest step split first by the file that lies best between its ends;
- ``interpolate``: the nearest unused file to each of N-2 points spaced evenly on the line
  between the two style vectors (normalised);
- ``knn-graph``: Dijkstra in the symmetrised 10-nearest-neighbour graph, edges weighted by
  the squared cosine distance (which favours small steps); its length is its own.

Per method: the worst step (lowest cosine of two consecutive files; mean over pairs, and
its 5th percentile), the mean step, the share of steps that move away from the end (the
cosine to the last file falls), the share of files from neither end's package, and how
often the path has exactly N files. Times: a path and the map at this size, and at 10^4
files made from the real style vectors (each repeated with distinct Gaussian perturbations,
sigma 0.05 per dimension, renormalised: the cost, not the quality).

    python benchmarks/browse.py --quick       # 60 tracks
    python benchmarks/browse.py               # all 217 tracks, 30 s each

Writes benchmarks/results/browse.{json,md}.
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

PRESETS = {"tiny": {"tracks": 12, "seconds": 6.0, "pairs": 10, "n": 4},
           "quick": {"tracks": 60, "seconds": 30.0, "pairs": 100, "n": 8},
           "full": {"tracks": 0, "seconds": 30.0, "pairs": 300, "n": 8}}
SR = 22050
KNN = 10


def parse_args(argv: list[str] | None = None):
    p = C.base_parser(__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=None,
                   help="evaluation CSV path,label,package (default: CACHE/debian/eval.csv)")
    p.add_argument("--tracks", type=int, default=None, help="tracks (0: all)")
    p.add_argument("--seconds", type=float, default=None, help="seconds of each track")
    p.add_argument("--pairs", type=int, default=None, help="random pairs of tracks")
    p.add_argument("--n", type=int, default=None, help="files in each path")
    p.add_argument("--model", default="base", help="model.pt, or base")
    p.add_argument("--keep", type=Path, default=None, help="build the index here and keep it")
    args = p.parse_args(argv)
    C.preset(args, PRESETS)
    return args


def corpus(args, audio: Path) -> None:
    """SECONDS s of each track from its 30th second, in a folder per package."""
    import soundfile as sf

    from sonicsearch.audio import load_audio
    from sonicsearch.eval.tracks import read_tracks, track_rows

    if args.tiny:
        rows = track_rows(C.synth_corpus(args.cache, 3, 4, args.seconds + 31, 16000, 0))
    else:
        rows = read_tracks(args.data or args.cache / "debian" / "eval.csv")
    rows = sorted((r for r in rows if r["duration"] >= args.seconds + 30),
                  key=lambda r: r["path"])
    if args.tracks:
        rows = rows[:: max(1, len(rows) // args.tracks)][: args.tracks]  # every package
    for r in rows:
        w, _ = load_audio(r["path"], sample_rate=SR, offset=30.0, duration=args.seconds)
        folder = C.mkdir(audio / r.get("package", r["label"]))
        sf.write(folder / (Path(r["path"]).stem + ".wav"), w, SR)


def interpolate(v: np.ndarray, a: int, b: int, n: int) -> list[int]:
    used, out = {a, b}, [a]
    for t in np.linspace(0, 1, n)[1:-1]:
        target = (1 - t) * v[a] + t * v[b]
        sims = v @ (target / max(np.linalg.norm(target), 1e-12))
        sims[list(used)] = -np.inf
        out.append(int(np.argmax(sims)))
        used.add(out[-1])
    return out + [b]


def knn_graph(v: np.ndarray):
    from scipy.sparse import csr_matrix

    sims = v @ v.T
    np.fill_diagonal(sims, -np.inf)
    nn = np.argsort(-sims, axis=1)[:, :KNN]
    rows = np.repeat(np.arange(len(v)), KNN)
    w = np.maximum(1.0 - sims[rows, nn.ravel()], 1e-9) ** 2
    g = csr_matrix((w, (rows, nn.ravel())), shape=(len(v), len(v)))
    return g.maximum(g.T)


def knn_path(graph, a: int, b: int) -> list[int]:
    from scipy.sparse.csgraph import dijkstra

    _, pred = dijkstra(graph, indices=a, return_predecessors=True)
    if pred[b] < 0:
        return [a, b]  # not connected: one jump
    out = [b]
    while out[-1] != a:
        out.append(int(pred[out[-1]]))
    return out[::-1]


def measure(v: np.ndarray, pkg: np.ndarray, ids: list[int], n: int) -> dict:
    steps = np.array([v[p] @ v[q] for p, q in zip(ids, ids[1:])])
    to_end = v[ids] @ v[ids[-1]]
    ends = {pkg[ids[0]], pkg[ids[-1]]}
    return {"worst": float(steps.min()), "mean": float(steps.mean()),
            "away": float(np.mean(np.diff(to_end) < 0)),
            "elsewhere": float(np.mean([pkg[i] not in ends for i in ids[1:-1]]))
            if len(ids) > 2 else 0.0,
            "exact_n": float(len(ids) == n and len(set(ids)) == len(ids))}


def compare(v: np.ndarray, pkg: np.ndarray, pairs: int, n: int, seed: int) -> list[dict]:
    from sonicsearch.index.browse import similarity_path

    rng = np.random.default_rng(seed)
    graph = knn_graph(v)
    got: dict[str, list[dict]] = {"refine": [], "interpolate": [], "knn-graph": []}
    while len(got["refine"]) < pairs:
        a, b = (int(x) for x in rng.choice(len(v), 2, replace=False))
        if pkg[a] == pkg[b]:
            continue
        got["refine"].append(measure(v, pkg, similarity_path(v, a, b, n), n))
        got["interpolate"].append(measure(v, pkg, interpolate(v, a, b, n), n))
        got["knn-graph"].append(measure(v, pkg, knn_path(graph, a, b), n))
    rows = []
    for name, ms in got.items():
        worst = np.array([m["worst"] for m in ms])
        rows.append({"method": name, "pairs": len(ms), "n": n,
                     "worst_step_mean": round(float(worst.mean()), 4),
                     "worst_step_p5": round(float(np.percentile(worst, 5)), 4),
                     **{k: round(float(np.mean([m[k] for m in ms])), 4)
                        for k in ("mean", "away", "elsewhere", "exact_n")}})
    return rows


def timings(index, v: np.ndarray, n: int, seed: int) -> dict:
    from sonicsearch.index.browse import pca_2d, similarity_path

    def seconds(fn, repeat: int = 5) -> float:
        t0 = time.perf_counter()
        for _ in range(repeat):
            fn()
        return round((time.perf_counter() - t0) / repeat, 4)

    rng = np.random.default_rng(seed)
    big = np.repeat(v, int(np.ceil(10_000 / len(v))), axis=0)[:10_000]
    big = big + 0.05 * rng.standard_normal(big.shape).astype(np.float32)
    big /= np.linalg.norm(big, axis=1, keepdims=True)
    return {"files": len(v), "path_seconds": seconds(lambda: index.path_between(0, 1, n)),
            "map_seconds": seconds(lambda: index.collection_map().to_dict()),
            "path_seconds_10k": seconds(lambda: similarity_path(big, 0, 1, n)),
            "path50_seconds_10k": seconds(lambda: similarity_path(big, 0, 1, 50), 1),
            "pca_seconds_10k": seconds(lambda: pca_2d(big))}


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    C.set_threads(args.threads)
    from sonicsearch.index import AudioIndex

    work = args.keep or args.cache / "bench-browse" / C.mode(args)
    shutil.rmtree(work, ignore_errors=True)
    audio = C.mkdir(work / "audio")
    corpus(args, audio)
    with C.Timer() as t_build:
        index = AudioIndex.build([audio], args.model, work / "idx", device="cpu")
    with index:
        v = index.style.files / np.linalg.norm(index.style.files, axis=1, keepdims=True)
        pkg = np.array([Path(r.path).parent.name for r in index.store.records])
        rows = compare(v, pkg, args.pairs, args.n, args.seed)
        times = timings(index, v, args.n, args.seed)
    times["build_seconds"] = round(t_build.seconds, 1)
    for r in rows:
        C.log(str(r))
    C.log(str(times))
    C.write_results("browse", args.out,
                    {"benchmark": "browse", "mode": C.mode(args), "machine": C.machine(),
                     "rows": rows, "timings": times},
                    [("Similarity paths", C.markdown_table(list(rows[0]),
                                                           [list(r.values()) for r in rows])),
                     ("Seconds", C.markdown_table(list(times), [list(times.values())]))])
    return {"rows": rows, "timings": times}


if __name__ == "__main__":
    with C.exit_on_error():
        main()

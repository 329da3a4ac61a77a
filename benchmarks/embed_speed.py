"""Windows per second, float32 vs the int8 path (``--fast``), end to end in build-index, and
the levers one by one with the model alone.

    python benchmarks/embed_speed.py --data data/debian/eval.csv --tracks 10 --threads 2

End to end: ``sonicsearch.index.builder.build_index`` (the library call of ``build-index``)
builds a fresh index of the same real tracks with the base model, float32 and ``--fast``
in turn (float, fast, float, fast, ...: paired rounds, because the machine is shared),
each in a new index folder; windows/s is the index's windows over the build's own time
(decode, embed, write, commit), and the model load (with the int8 derivation) is timed
apart. The two indexes' vectors are compared row by row (cosine). The ratio quoted is
the median of the per-round ratios.

Levers (``--levers``): the backbone alone on real log-mels of those tracks, in turn per
round: float32 at batch 32 (today's build) and 64, channels-last, TorchScript
trace + freeze, int8 at 32 and 64. Writes benchmarks/results/embed_speed.{json,md}.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

PRESETS = {"tiny": {"tracks": 1, "rounds": 1}, "quick": {"tracks": 4, "rounds": 2},
           "full": {"tracks": 10, "rounds": 2}}


def main(argv: list[str] | None = None) -> dict:
    p = C.base_parser(__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, required=True, help="a manifest CSV of real audio")
    p.add_argument("--tracks", type=int, default=None, help="tracks, at an even stride")
    p.add_argument("--rounds", type=int, default=None, help="paired rounds")
    p.add_argument("--levers", action="store_true", help="also time each lever, model alone")
    args = p.parse_args(argv)
    C.preset(args, PRESETS)
    C.set_threads(args.threads)
    from sonicsearch.data.manifest import read_items

    items = read_items(args.data, allow_external_paths=True)[1]
    files = [str(it.path) for it in items[::max(1, len(items) // args.tracks)][:args.tracks]]
    results = {"benchmark": "embed_speed", "mode": C.mode(args), "machine": C.machine(),
               "threads": args.threads, "data": str(args.data), "tracks": len(files),
               "end_to_end": end_to_end(files, args.rounds)}
    if args.levers:
        results["levers"] = levers(files, args.rounds)
    sections = tables(results)
    js, md = C.write_results("embed_speed", args.out, results, sections)
    print("\n\n".join(body for _, body in sections))
    C.log(f"wrote {js} and {md}")
    return results


def end_to_end(files: list[str], rounds: int) -> dict:
    """Paired builds of the same files, float32 then int8, ``rounds`` times."""
    from sonicsearch.index import builder

    runs: dict[str, list[dict]] = {"float32": [], "int8": []}
    with tempfile.TemporaryDirectory(prefix="embed-speed-") as tmp:
        for r in range(rounds):
            for name, fast in (("float32", False), ("int8", True)):
                index = Path(tmp) / f"{name}-{r}"
                t0 = time.perf_counter()
                report = builder.build_index(files, model="base", index=index, fast=fast,
                                             vectors="float32", device="cpu")
                total = time.perf_counter() - t0
                run = {"windows": report.vectors, "build_s": round(report.seconds, 2),
                       "load_s": round(total - report.seconds, 2),
                       "windows_per_s": round(report.vectors / report.seconds, 2),
                       "audio_h_per_h": round(report.audio_seconds / report.seconds, 1)}
                runs[name].append(run)
                C.log(f"round {r + 1} {name}: {run}")
        cos = _cosines(Path(tmp) / "float32-0", Path(tmp) / "int8-0")
    ratios = [b["windows_per_s"] / a["windows_per_s"] for a, b in zip(runs["float32"],
                                                                      runs["int8"])]
    return {"runs": runs, "ratios": [round(x, 3) for x in ratios],
            "ratio_median": round(statistics.median(ratios), 3), "cosine": cos}


def _cosines(a: Path, b: Path) -> dict:
    """Row-by-row cosine of two indexes' float32 vectors (the same files and windows)."""
    from sonicsearch.index import layout as L

    va, vb = (np.load(L.IndexLayout(p).current() / L.VECTORS) for p in (a, b))
    cos = (va * vb).sum(1) / (np.linalg.norm(va, axis=1) * np.linalg.norm(vb, axis=1))
    return {"windows": len(cos), "min": round(float(cos.min()), 5),
            **{f"p{q}": round(float(np.percentile(cos, q)), 5) for q in (1, 5, 50)},
            "share_below_0.99": float((cos < 0.99).mean())}


def levers(files: list[str], rounds: int) -> dict:
    """Windows/s of the backbone alone per lever, on 256 real log-mels, in turn per round."""
    import copy

    import torch

    from sonicsearch.audio import iter_windows
    from sonicsearch.embed.embedder import Embedder

    emb = Embedder.from_checkpoint("base", device="cpu")
    fc, model = emb.feature_config, emb.model
    wins = [w for f in files for i, (_, w) in enumerate(
        iter_windows(f, fc.sample_rate, fc.window_seconds, fc.hop_seconds)) if i % 5 == 0]
    with torch.no_grad():
        mel = model.features(torch.from_numpy(np.stack(wins[:256])))
    net = model.backbone
    cl = copy.deepcopy(net).to(memory_format=torch.channels_last)
    jit = torch.jit.freeze(torch.jit.trace(copy.deepcopy(net).eval(), mel[:32], strict=False))
    q = emb.int8()._int8
    nhwc = mel.contiguous(memory_format=torch.channels_last)
    cases = {"float32, batch 32": (lambda x: net(x), mel, 32),
             "float32, batch 64": (lambda x: net(x), mel, 64),
             "float32 channels-last, batch 64": (lambda x: cl(x), nhwc, 64),
             "TorchScript freeze, batch 32": (lambda x: jit(x), mel, 32),
             "int8, batch 32": (lambda x: q(x), nhwc, 32),
             "int8, batch 64": (lambda x: q(x), nhwc, 64)}
    out: dict[str, list[float]] = {k: [] for k in cases}
    with torch.no_grad():
        for f, x, b in cases.values():
            f(x[:b])  # warm-up
        for _ in range(rounds):
            for k, (f, x, b) in cases.items():
                t0 = time.perf_counter()
                for i in range(0, len(x), b):
                    f(x[i:i + b])
                out[k].append(len(x) / (time.perf_counter() - t0))
    base = out["float32, batch 32"]
    return {k: {"windows_per_s": round(statistics.median(v), 2),
                "ratio": round(statistics.median(a / b for a, b in zip(v, base)), 3)}
            for k, v in out.items()}


def tables(results: dict) -> list[tuple[str, str]]:
    e = results["end_to_end"]
    rows = [[name, statistics.median(r["windows_per_s"] for r in runs),
             statistics.median(r["audio_h_per_h"] for r in runs),
             statistics.median(r["load_s"] for r in runs), runs[0]["windows"]]
            for name, runs in e["runs"].items()]
    c = e["cosine"]
    text = (f"{results['tracks']} tracks of {results['data']}, base model, "
            f"{results['threads'] or 'default'} torch threads; median of "
            f"{len(e['ratios'])} paired rounds.\n\n" + C.markdown_table(
                ["path", "windows/s", "audio h/h", "model load s", "windows"], rows)
            + f"\n\nint8 / float32 (paired, per round): {e['ratios']}; median "
            f"**{e['ratio_median']}x**. Cosine int8 vs float32 over {c['windows']} windows: "
            f"min {c['min']}, p1 {c['p1']}, p5 {c['p5']}, median {c['p50']}.")
    sections = [("End to end in build-index", text)]
    if "levers" in results:
        lv = results["levers"]
        sections.append(("Levers, model alone", C.markdown_table(
            ["lever", "windows/s", "vs float32 batch 32"],
            [[k, v["windows_per_s"], v["ratio"]] for k, v in lv.items()])))
    return sections


if __name__ == "__main__":
    with C.exit_on_error():
        main()

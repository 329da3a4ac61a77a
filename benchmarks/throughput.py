"""How fast is embedding? Windows/s and audio seconds/s at several batch sizes, for the model
alone against the whole pipeline, so the share of time lost outside the model shows.

    backbone      standardised log-mels already on the device -> CNN -> embedding
    model         waveform windows already on the device -> log-mel -> CNN -> embedding
    decode        files -> decode -> mono -> resample -> windows (no model)
    end-to-end    Embedder.embed_files: decode on a thread + log-mel + CNN + L2-normalise

    python benchmarks/throughput.py --quick                  # CPU
    python benchmarks/throughput.py --device cuda            # absolute GPU numbers

Weights do not change speed, so without --model the backbone runs at random init.
Audio seconds/s counts each window as one hop of new audio (windows overlap). FAISS is not
needed. Writes benchmarks/results/throughput.{json,md}.
"""

from __future__ import annotations

import importlib.util
import sys
import time
import types
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

PRESETS = {
    "tiny": {"batch_sizes": "1,4", "files": 2, "seconds": 8.0, "min_time": 0.2},
    "quick": {"batch_sizes": "1,8,32", "files": 3, "seconds": 60.0, "min_time": 3.0},
    "full": {"batch_sizes": "1,8,32,128", "files": 4, "seconds": 240.0, "min_time": 10.0},
}


def parse_args(argv: list[str] | None = None):
    p = C.base_parser(__doc__.split("\n\n")[0])
    p.add_argument("--model", type=Path, default=None, help="a model.pt (default: random init)")
    p.add_argument("--arch", default="resnet18", help="backbone when no --model is given")
    p.add_argument("--data", type=Path, nargs="*", default=None,
                   help="audio files/folders for end-to-end (default: synthetic long clips)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--batch-sizes", default=None, help="comma-separated")
    p.add_argument("--files", type=int, default=None, help="synthetic files")
    p.add_argument("--seconds", type=float, default=None, help="length of each synthetic file")
    p.add_argument("--min-time", type=float, default=None,
                   help="seconds each model-only measurement runs for at least")
    args = p.parse_args(argv)
    C.preset(args, PRESETS)
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    C.set_threads(args.threads)
    _faiss_optional()
    import torch

    from sonicsearch.audio import find_audio_files
    from sonicsearch.utils.runtime import resolve_device

    device = resolve_device(args.device)
    embedder = load_model(args, device)
    fc = embedder.feature_config
    if args.data:
        files = find_audio_files(args.data)
    else:
        corpus = C.synth_corpus(args.cache, 2, -(-args.files // 2), args.seconds,
                                fc.sample_rate, args.seed)
        files = find_audio_files([corpus])[: args.files]
    sizes = [int(b) for b in args.batch_sizes.split(",")]
    C.log(f"{embedder.arch} on {device}; {len(files)} files; batch sizes {sizes}")

    rows = []
    decode = measure_decode(files, fc)
    for b in sizes:
        backbone = measure_model(embedder, b, args.min_time, device, torch, features=False)
        model = measure_model(embedder, b, args.min_time, device, torch, features=True)
        e2e = measure_end_to_end(embedder, files, b, device, torch)
        row = {"batch_size": b, "backbone": backbone, "model": model, "end_to_end": e2e,
               "outside_model_share": round(1.0 - e2e["windows_per_s"] / model["windows_per_s"],
                                            4),
               "end_to_end_vs_model": round(e2e["windows_per_s"] / model["windows_per_s"], 4)}
        rows.append(row)
        C.log(f"batch {b}: backbone {backbone['windows_per_s']:.1f} w/s, model "
              f"{model['windows_per_s']:.1f} w/s, end-to-end {e2e['windows_per_s']:.1f} w/s")

    results = {"benchmark": "throughput", "mode": C.mode(args), "machine": C.machine(),
               "device": str(device), "arch": embedder.arch,
               "model": str(args.model) if args.model else "random init",
               "features": {"sample_rate": fc.sample_rate, "n_mels": fc.n_mels,
                            "window_seconds": fc.window_seconds, "hop_seconds": fc.hop_seconds},
               "files": len(files), "decode": decode, "rows": rows}
    sections = tables(results)
    js, md = C.write_results("throughput", args.out, results, sections)
    print("\n\n".join(body for _, body in sections))
    C.log(f"wrote {js} and {md}")
    return results


def load_model(args, device):
    """An Embedder of ``--model``, or of a random-init backbone with the default features."""
    from sonicsearch.embed.embedder import Embedder

    if args.model is not None:
        return Embedder.from_checkpoint(args.model, device=str(device))
    import torch

    from sonicsearch.config import FeatureConfig, ModelConfig
    from sonicsearch.model.backbones import AudioModel

    torch.manual_seed(args.seed)
    fc = FeatureConfig(sample_rate=8000, n_mels=32, n_fft=512, hop_length=256,
                       window_seconds=1.0, hop_seconds=0.5) if args.tiny else FeatureConfig()
    model = AudioModel.from_config(fc, ModelConfig(args.arch, "none"), ["a", "b"]).to(device)
    info = {"arch": args.arch, "sha256": "random-init", "labels": ["a", "b"]}
    return Embedder(model.eval(), info, Path("random-init"), device)


def measure_model(embedder, batch: int, min_time: float, device, torch, features: bool) -> dict:
    """Windows/s of the model on random inputs already on the device."""
    fc, model = embedder.feature_config, embedder.model
    gen = torch.Generator().manual_seed(batch)
    wave = (0.1 * torch.randn(batch, fc.window_samples, generator=gen)).to(device)
    with torch.no_grad():
        mel = model.features(wave)

        def step():
            if features:
                emb, _ = model.embed(wave)
            else:
                emb = model.backbone(mel)[1]
            return torch.nn.functional.normalize(emb.float(), dim=1)

        step()  # warm-up (lazy init, cudnn autotuning)
        calls, t = 0, 0.0
        while t < min_time or calls < 2:
            _sync(device, torch)
            t0 = time.perf_counter()
            step()
            _sync(device, torch)
            t += time.perf_counter() - t0
            calls += 1
    wps = calls * batch / t
    return {"windows_per_s": round(wps, 2), "audio_s_per_s": round(wps * fc.hop_seconds, 2),
            "ms_per_batch": round(1000 * t / calls, 3), "calls": calls}


def measure_end_to_end(embedder, files, batch: int, device, torch) -> dict:
    """Windows/s and audio seconds/s of Embedder.embed_files over all files (one warm-up)."""
    embedder.batch_size = batch
    for _ in embedder.embed_files(files[:1]):
        pass
    windows = calls = 0
    audio = 0.0
    _sync(device, torch)
    t0 = time.perf_counter()
    for _, out in embedder.embed_files(files):
        if isinstance(out, Exception):
            C.log(f"skipped {out}")
            continue
        windows += len(out.vectors)
        calls += -(-len(out.vectors) // batch)
        audio += out.duration
    _sync(device, torch)
    t = time.perf_counter() - t0
    return {"windows_per_s": round(windows / t, 2), "audio_s_per_s": round(audio / t, 2),
            "windows": windows, "seconds": round(t, 3),
            "mean_batch": round(windows / max(calls, 1), 2)}


def measure_decode(files, fc) -> dict:
    """Decode, mix down, resample and cut windows of every file, without a model."""
    from sonicsearch.audio import iter_windows

    windows = 0
    t0 = time.perf_counter()
    for f in files:
        for _ in iter_windows(f, fc.sample_rate, fc.window_seconds, fc.hop_seconds):
            windows += 1
    t = time.perf_counter() - t0
    return {"windows_per_s": round(windows / t, 2),
            "audio_s_per_s": round(windows * fc.hop_seconds / t, 2), "seconds": round(t, 3)}


def tables(results: dict) -> list[tuple[str, str]]:
    head = ["batch", "backbone w/s", "model w/s", "end-to-end w/s", "end-to-end audio s/s",
            "end-to-end / model", "time outside the model", "mean e2e batch"]
    rows = [[r["batch_size"], r["backbone"]["windows_per_s"], r["model"]["windows_per_s"],
             r["end_to_end"]["windows_per_s"], r["end_to_end"]["audio_s_per_s"],
             r["end_to_end_vs_model"], f"{100 * r['outside_model_share']:.0f} %",
             r["end_to_end"]["mean_batch"]] for r in results["rows"]]
    d, f = results["decode"], results["features"]
    text = (f"{results['arch']} ({results['model']}) on {results['device']}; "
            f"{f['window_seconds']:g} s windows every {f['hop_seconds']:g} s at "
            f"{f['sample_rate']} Hz, {f['n_mels']} mels; {results['files']} files. "
            f"Decoding alone: {d['windows_per_s']:.0f} windows/s "
            f"({d['audio_s_per_s']:.0f} audio s/s).\n\n" + C.markdown_table(head, rows))
    return [("Embedding throughput", text)]


def _sync(device, torch) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _faiss_optional() -> None:
    """Embedding needs no FAISS, but importing sonicsearch.embed imports the index package,
    which imports faiss. Without FAISS installed, put a placeholder in its place that fails
    only if it is actually used."""
    if importlib.util.find_spec("faiss") is not None:
        return

    def missing(name: str):
        raise ImportError(f"faiss is not installed (faiss.{name} was used)")

    stub = types.ModuleType("faiss")
    stub.__getattr__ = missing  # type: ignore[method-assign]
    sys.modules["faiss"] = stub
    C.log("faiss is not installed: embedding only (it is not needed here)")


if __name__ == "__main__":
    main()

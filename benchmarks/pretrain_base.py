"""Pretrain base-model candidates on one GPU at once, from a pack of Opus audio held in GPU
memory, and score each on held-out music: the levers table and the base model in one run.

The pack (``sonicsearch make-dataset debian ... --pack-hours 6``) is decoded once, in
parallel, into one int16 array; each variant is its own process on the same GPU, drawing
random excerpts straight from GPU memory, so the GPU never waits on decoding. Every variant
gets the same wall-clock budget (its step count is set from its measured step time), the
same seed and the same audio. Afterwards each variant embeds the validation tracks (full
tracks, never in the pack) and 8 s excerpts of them under each degradation, and ranks the
tracks by time-consistent voting, as ``query`` does.

    python benchmarks/pretrain_base.py --pack data/gpu/pack --val data/gpu/val \\
        --out runs/base --minutes 6 --variants old,level,views,pcen

Writes ``OUT/VARIANT/model.pt`` (fp16 weights: the shipped size), ``OUT/results.json`` and a
markdown table on stdout. ``--tiny`` runs everything for a few seconds on the CPU.
"""

from __future__ import annotations

import argparse
import csv
import json
import multiprocessing as mp
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

SR = 16000
# The base front end: 16 kHz, 64 mels, 64 ms FFT, 16 ms hop, 2 s windows.
BASE = {
    "features.sample_rate": SR, "features.n_fft": 1024, "features.hop_length": 256,
    "features.n_mels": 64, "features.f_min": 30.0, "features.window_seconds": 2.0,
    "features.hop_seconds": 1.0, "features.min_seconds": 0.5,
    "model.arch": "resnet18", "model.weights": "none",
    "pretrain.batch_size": 256, "pretrain.lr": 0.002, "pretrain.temperature": 0.1,
    "pretrain.pair_shift_seconds": 0.5, "pretrain.normalization_excerpts": 512,
}
NEW_VIEWS = {
    "pretrain.telephone_prob": 0.3, "pretrain.reverb_prob": 0.5, "pretrain.reverb_room": True,
    "pretrain.reverb_max_seconds": 1.0, "pretrain.mix_prob": 0.5, "pretrain.band_prob": 0.3,
    "pretrain.noise_prob": 0.6, "pretrain.speed": 0.04, "pretrain.gain_db": 12.0,
}
VARIANTS = {
    "old": {"features.level": "absolute"},  # today's pretrain recipe at this budget
    "level": {"features.level": "window"},
    "views": {"features.level": "window", **NEW_VIEWS},
    "pcen": {"features.level": "pcen", **NEW_VIEWS},
    # compound captures (issue "phone in a room"): the phone band, EQ and dynamics more often,
    # on top of the shipped views; measure it on CPU with robust_music.py --degradations compound
    "capture": {"features.level": "window", **NEW_VIEWS, "pretrain.telephone_prob": 0.4,
                "pretrain.eq_prob": 0.5, "pretrain.dynamics_prob": 0.5},
}
DEGRADATIONS = ("clean", "noise_snr10", "pink_snr10", "mix_snr10", "telephone", "reverb",
                "reverb_room", "mp3_low", "ogg_low", "gain_-12db", "gain_+6db", "speed_0.97",
                "speed_1.03")
QUERY_SECONDS, QUERY_HOP = 8.0, 0.5
PROBE_STEPS = 30  # steps timed before the run is sized
if os.environ.get("PRETRAIN_BASE_TINY"):  # set by --tiny, seen by the spawned variants too
    BASE.update({"pretrain.batch_size": 8, "pretrain.normalization_excerpts": 16})
    PROBE_STEPS = 4


def _decode(path: str) -> np.ndarray:
    import soundfile as sf

    x, sr = sf.read(path, dtype="int16", always_2d=True)
    if sr != SR:
        raise SystemExit(f"{path}: {sr} Hz, the pack must be {SR} Hz")
    return x.mean(axis=1).astype(np.int16)


def load_pack(folder: Path, workers: int) -> tuple[np.ndarray, np.ndarray]:
    """All pieces of a pack as one int16 array and the (start, length) of each piece."""
    with open(folder / "manifest.csv", newline="", encoding="utf-8") as fh:
        paths = [str(folder / r["path"]) for r in csv.DictReader(fh)]
    with mp.get_context("spawn").Pool(workers) as pool:
        pieces = pool.map(_decode, paths, chunksize=16)
    lengths = np.array([len(p) for p in pieces], dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    return np.concatenate(pieces), np.stack([starts, lengths], axis=1)


class GpuExcerpts:
    """Random excerpts of ``span`` samples straight from a device-resident corpus; pieces are
    drawn in proportion to their length, shorter ones are zero-padded, near-silent excerpts
    are drawn again once."""

    def __init__(self, audio: torch.Tensor, index: np.ndarray, span: int):
        self.audio, self.span = audio, span
        self.starts = torch.as_tensor(index[:, 0], device=audio.device)
        self.lengths = torch.as_tensor(index[:, 1], device=audio.device)
        self.weights = self.lengths.double().clamp_min(span / 4)

    def _draw(self, n: int, gen: torch.Generator) -> torch.Tensor:
        piece = torch.multinomial(self.weights, n, replacement=True, generator=gen)
        slack = (self.lengths[piece] - self.span).clamp_min(0)
        off = (torch.rand(n, generator=gen, device=slack.device) * (slack + 1)).long()
        pos = self.starts[piece, None] + off[:, None] + torch.arange(self.span,
                                                                     device=slack.device)
        end = (self.starts[piece] + self.lengths[piece])[:, None]
        x = self.audio[pos.clamp(max=len(self.audio) - 1)].float() / 32768.0
        return torch.where(pos < end, x, torch.zeros_like(x))

    def __call__(self, n: int, gen: torch.Generator) -> torch.Tensor:
        x = self._draw(n, gen)
        quiet = x.abs().amax(dim=1) < 1e-3
        if bool(quiet.any()):
            x[quiet] = self._draw(int(quiet.sum()), gen)
        return x


def train_variant(name: str, overrides: dict, audio_path: str, index: np.ndarray,
                  out: Path, seconds: float, device: str, seed: int = 0) -> dict:
    """Pretrain one variant for ``seconds`` of wall clock; write OUT/NAME/model.pt (fp16)."""
    from sonicsearch.config import load_config
    from sonicsearch.model.checkpoint import save_checkpoint
    from sonicsearch.training.pretrain import pretrain_optimizer
    from sonicsearch.training.run import warmup_schedule
    from sonicsearch.training.views import ViewMaker

    torch.set_flush_denormal(True)
    dev = torch.device(device)
    config = load_config(None, {**BASE, **overrides, "runtime.seed": seed,
                                "runtime.device": device})
    pc, fc = config.pretrain, config.features
    audio = torch.from_numpy(np.load(audio_path, mmap_mode="r")[:].copy()).to(dev)
    views = ViewMaker(pc, fc.sample_rate, fc.window_samples)
    draw = GpuExcerpts(audio, index, views.span_samples())
    gen = torch.Generator(device=dev).manual_seed(seed)
    clean = draw(pc.normalization_excerpts, gen)[:, :fc.window_samples]
    cuda = dev.type == "cuda"
    model, objective = _fresh_model(config, clean, dev, seed)
    params = None

    def step(optimizer, scheduler, total: int) -> float:
        v1, v2 = views.pair(draw(pc.batch_size, gen), gen)
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=cuda):
            loss = objective.loss(model, v1, v2)
        if not torch.isfinite(loss):
            raise RuntimeError(f"{name}: loss became {loss.item()}")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, pc.grad_clip)
        optimizer.step()
        scheduler.step()
        objective.after_step(model, scheduler.last_epoch / max(1, total))
        return float(loss.detach())

    # Probe the step time at full load (the other variants start together), then fix the
    # step count so that warm-up and cosine decay fit the budget.
    t0 = time.monotonic()
    probe_steps = PROBE_STEPS
    optimizer, scheduler = pretrain_optimizer(model, objective, pc, probe_steps)
    params = [p for g in optimizer.param_groups for p in g["params"]]
    model.train()
    objective.train()
    for _ in range(3):
        step(optimizer, scheduler, probe_steps)
    if cuda:
        torch.cuda.synchronize()
    t1 = time.monotonic()
    for _ in range(probe_steps - 3):
        step(optimizer, scheduler, probe_steps)
    if cuda:
        torch.cuda.synchronize()
    per_step = (time.monotonic() - t1) / (probe_steps - 3)
    left = max(0.0, seconds - (time.monotonic() - t0))
    total = max(20, int(left / per_step))
    epoch_steps = max(1, total // 20)
    model, objective = _fresh_model(config, clean, dev, seed)  # the probe only timed steps
    optimizer, _ = pretrain_optimizer(model, objective, pc, epoch_steps)
    scheduler = warmup_schedule(optimizer, epoch_steps, 20, 1)
    params = [p for g in optimizer.param_groups for p in g["params"]]
    model.train()
    objective.train()
    losses = []
    t2 = time.monotonic()
    for i in range(epoch_steps * 20):
        losses.append(step(optimizer, scheduler, epoch_steps * 20))
        if (i + 1) % epoch_steps == 0:
            print(f"[{name}] step {i + 1}/{epoch_steps * 20} loss "
                  f"{np.mean(losses[-epoch_steps:]):.4f} ({time.monotonic() - t2:.0f}s)",
                  flush=True)
    trained = time.monotonic() - t2
    model.eval()
    run = out / name
    run.mkdir(parents=True, exist_ok=True)
    excerpts = len(losses) * pc.batch_size
    model.to("cpu").half()
    save_checkpoint(run / "model.pt", model, config=config.to_dict(), labels=[],
                    metrics={"pretrain": {"loss_first": losses[0], "loss_last": losses[-1],
                                          "steps": len(losses), "excerpts": excerpts,
                                          "seconds": trained}},
                    extra={"pretrain": {"variant": name, "overrides": overrides,
                                        "device": torch.cuda.get_device_name(dev) if cuda
                                        else "cpu"}})
    model.float()
    return {"variant": name, "steps": len(losses), "excerpts": excerpts,
            "step_ms": 1000 * trained / len(losses), "loss_first": losses[0],
            "loss_last": float(np.mean(losses[-max(1, epoch_steps):])), "train_s": trained}


def _fresh_model(config, clean: torch.Tensor, dev: torch.device, seed: int):
    """A seeded label-free model standardised on ``clean`` excerpts, and its objective,
    on ``dev`` (channels_last on a GPU)."""
    from sonicsearch.training.objectives import make_pretrain_objective
    from sonicsearch.training.pretrain import build_pretrain_model

    torch.manual_seed(seed)
    model = build_pretrain_model(config)
    with torch.no_grad():
        model.fit_normalization(model.frontend(clean.cpu()))
    model.backbone.set_trainable("all")
    objective = make_pretrain_objective(config.pretrain.method, model, config.pretrain)
    model.to(dev)
    objective.to(dev)
    if dev.type == "cuda":
        model.to(memory_format=torch.channels_last)
        objective.to(memory_format=torch.channels_last)
    return model, objective


# -- validation: identification of held-out music under degradations -------------------
def _windows(x: np.ndarray, win: int, hop: int) -> np.ndarray:
    if len(x) < win:
        x = np.pad(x, (0, win - len(x)))
    n = 1 + (len(x) - win) // hop
    return np.stack([x[i * hop:i * hop + win] for i in range(n)])


@torch.no_grad()
def _embed(model, x: np.ndarray, dev, hop_s: float = QUERY_HOP) -> torch.Tensor:
    win = model.feature_config.window_samples
    w = torch.from_numpy(_windows(x, win, int(hop_s * SR)))
    out = []
    for chunk in w.split(256):
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):
            emb, _ = model.embed(chunk.to(dev))
        out.append(torch.nn.functional.normalize(emb.float(), dim=1))
    return torch.cat(out)


def _vote(sim: torch.Tensor) -> torch.Tensor:
    """Query windows x track windows (both at the same hop) -> the best offset's score:
    the mean over query windows of the positive similarity on one diagonal (or the next,
    so a speed change that drifts by one window is not split), as the ``vote`` roll-up."""
    nq, nt = sim.shape
    s = sim.clamp_min(0)
    pad = torch.nn.functional.pad(s, (nq, nq + 1))  # offsets -nq..nt
    j = torch.arange(nq, device=sim.device)[:, None]
    o = torch.arange(-nq, nt, device=sim.device)[None]
    a = pad.gather(1, (o + j + nq).expand(nq, -1))
    b = pad.gather(1, (o + j + nq + 1).expand(nq, -1))
    return torch.maximum(a, b).sum(0).max() / nq


def validate(model_path: Path, val: Path, device: str, per_track: int = 3,
             seed: int = 0) -> dict:
    """R@1 / R@10 of each degradation on the validation tracks, and the mean over them."""
    from sonicsearch.eval.degrade import apply
    from sonicsearch.model.checkpoint import load_checkpoint

    dev = torch.device(device)
    model, _ = load_checkpoint(model_path, dev)
    model.float()
    meta = json.loads((val / "val.json").read_text())
    tracks = [_decode(str(val / m["path"])).astype(np.float32) / 32768.0 for m in meta]
    index = [_embed(model, t, dev) for t in tracks]
    rng = np.random.default_rng(seed)
    noise = tracks  # background for mix_snr10: another validation track
    qlen = int(QUERY_SECONDS * SR)
    results: dict[str, list[int]] = {d: [] for d in DEGRADATIONS}
    for ti, t in enumerate(tracks):
        for _ in range(per_track):
            off = int(rng.integers(0, max(1, len(t) - qlen)))
            clip = t[off:off + qlen]
            for d in DEGRADATIONS:
                if d == "mix_snr10":
                    other = noise[(ti + 1 + int(rng.integers(len(tracks) - 1))) % len(tracks)]
                    bo = int(rng.integers(0, max(1, len(other) - qlen)))
                    back = np.resize(other[bo:bo + qlen], clip.shape)
                    p = float(np.mean(clip ** 2)) / max(float(np.mean(back ** 2)), 1e-12)
                    y = clip + back * np.sqrt(p / 10.0)
                else:
                    y = apply(d, clip, SR, rng)
                q = _embed(model, np.asarray(y, np.float32), dev)
                scores = torch.stack([_vote(q @ ix.T) for ix in index])
                rank = int((scores > scores[ti]).sum())
                results[d].append(rank)
    table = {d: {"r1": float(np.mean([r < 1 for r in v])),
                 "r10": float(np.mean([r < 10 for r in v]))} for d, v in results.items()}
    table["mean"] = {k: float(np.mean([table[d][k] for d in DEGRADATIONS]))
                     for k in ("r1", "r10")}
    return table


def _worker(name, overrides, audio_path, index, out, seconds, device, val, queue):
    try:
        torch.set_num_threads(max(1, (os.cpu_count() or 4) // 5))
        row = train_variant(name, overrides, audio_path, index, out, seconds, device)
        row["val"] = validate(out / name / "model.pt", val, device) if val else {}
        queue.put(row)
    except Exception as exc:  # reported by the parent, the other variants go on
        import traceback

        traceback.print_exc()
        queue.put({"variant": name, "error": f"{type(exc).__name__}: {exc}"})


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--pack", type=Path, required=True)
    p.add_argument("--val", type=Path, default=None, help="validation tracks (val.json)")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--minutes", type=float, default=6.0, help="training time per variant")
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--tiny", action="store_true", help="a smoke run: tiny batch, seconds")
    p.add_argument("--export", type=Path, default=None,
                   help="copy the best variants' model files here, cut in 15 MiB parts")
    p.add_argument("--export-top", type=int, default=2)
    args = p.parse_args(argv)
    names = [v for v in args.variants.split(",") if v]
    unknown = [v for v in names if v not in VARIANTS]
    if unknown:
        raise SystemExit(f"unknown variant(s) {unknown}; choose from {list(VARIANTS)}")
    if args.tiny:
        os.environ["PRETRAIN_BASE_TINY"] = "1"
        BASE.update({"pretrain.batch_size": 8, "pretrain.normalization_excerpts": 16})
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    audio, index = load_pack(args.pack, max(1, (os.cpu_count() or 2) - 1))
    audio_path = args.out / "pack.npy"
    np.save(audio_path, audio)
    print(f"decoded {len(index)} pieces, {len(audio) / SR / 3600:.2f} h, in "
          f"{time.monotonic() - t0:.0f}s", flush=True)
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(n, VARIANTS[n], str(audio_path), index,
                                               args.out, args.minutes * 60, args.device,
                                               args.val, queue)) for n in names]
    for proc in procs:
        proc.start()
    rows = [queue.get() for _ in procs]
    for proc in procs:
        proc.join()
    audio_path.unlink()
    rows.sort(key=lambda r: names.index(r["variant"]))
    result = {"device": args.device, "minutes": args.minutes, "pack_hours":
              len(audio) / SR / 3600, "variants": rows}
    (args.out / "results.json").write_text(json.dumps(result, indent=1))
    cols = [r for r in rows if "val" in r and r["val"]]
    if cols:
        print("| degradation | " + " | ".join(r["variant"] for r in cols) + " |")
        print("|---|" + "---|" * len(cols))
        for d in (*DEGRADATIONS, "mean"):
            print(f"| {d} | " + " | ".join(f"{r['val'][d]['r1']:.3f} / {r['val'][d]['r10']:.3f}"
                                            for r in cols) + " |")
    for r in rows:
        print(json.dumps({k: v for k, v in r.items() if k != "val"}))
    if args.export is not None:
        export(rows, args.out, args.export, args.export_top)
    return result


def export(rows: list[dict], out: Path, dest: Path, top: int, part: int = 15 << 20) -> None:
    """The ``top`` variants by validation mean R@1, each model file cut into parts
    (``cat VARIANT.pt.part* > model.pt`` joins them)."""
    dest.mkdir(parents=True, exist_ok=True)
    ranked = sorted((r for r in rows if r.get("val")), key=lambda r: -r["val"]["mean"]["r1"])
    for r in ranked[:top]:
        data = (out / r["variant"] / "model.pt").read_bytes()
        for i in range(0, len(data), part):
            (dest / f"{r['variant']}.pt.part{i // part}").write_bytes(data[i:i + part])
        print(f"exported {r['variant']} ({len(data) / 2**20:.1f} MiB)")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    main()

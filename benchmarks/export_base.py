"""Export a pretraining run's model as a shippable base-model file.

The shipped file keeps the weights in fp16 (they load into a float32 model) and nothing a
user does not need; the run's config, metrics and provenance stay with it. The export is
checked before it is written: its embeddings of random windows must match the float32
model's (cosine >= 0.999 for every window). Prints the file's size and sha256, the two facts
``sonicsearch/model/base.py`` and the model card name.

    python benchmarks/export_base.py runs/base-v2/model.pt sonicsearch/assets/base-v2.pt \\
        --note "base-v1 continued on a CPU with harder recorded-background views"

``--style-head HEAD.pt`` (written by ``benchmarks/style_levers.py --export-head``) adds a
style head to the exported model; its style vectors are checked the same way. That is how
base-v2 was made: base-v1's backbone unchanged, plus the head distilled from musicnn.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

MIN_COSINE = 0.999


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("model", type=Path, help="the run's model.pt (sonicsearch pretrain)")
    p.add_argument("out", type=Path, help="the file to write (must not exist)")
    p.add_argument("--note", default="", help="one line of provenance kept in the file")
    p.add_argument("--windows", type=int, default=16, help="random windows for the check")
    p.add_argument("--style-head", type=Path, help="a style head to add (style_levers.py "
                   "--export-head)")
    return p.parse_args(argv)


def export(model_path: Path, out: Path, note: str = "", windows: int = 16,
           style_head: Path | None = None) -> dict:
    """Write ``out`` (fp16) from ``model_path`` (with ``style_head`` added); return size,
    sha256 and the worst cosine of the embeddings (and of the style vectors).

    Raises:
        SystemExit: ``out`` exists, the model has labels, or the check fails.
    """
    import torch

    from sonicsearch.model.checkpoint import load_checkpoint, save_checkpoint
    from sonicsearch.model.infer import embed_windows

    if out.exists():
        sys.exit(f"{out} exists; a shipped model file is never overwritten")
    model, info = load_checkpoint(model_path)
    if info["labels"]:
        sys.exit(f"{model_path} has a classification head ({len(info['labels'])} labels); "
                 "the base model is label-free")
    extra = dict(info.get("extra") or {})
    extra["export"] = {"from_sha256": info["sha256"], "note": note}
    if style_head is not None:
        model.style_head, extra["style_head"] = read_head(style_head)
    fc = model.feature_config
    gen = torch.Generator().manual_seed(0)
    wave = 0.1 * torch.randn(windows, int(fc.window_seconds * fc.sample_rate), generator=gen)
    before = embed_windows(model, wave)
    style_before = _style(model, wave)
    half = model.half()
    out.parent.mkdir(parents=True, exist_ok=True)
    sha = save_checkpoint(out, half, config=info["config"], labels=[],
                          metrics=info.get("metrics"), extra=extra)
    again, _ = load_checkpoint(out)
    after = embed_windows(again, wave)
    cos = torch.nn.functional.cosine_similarity(torch.as_tensor(before),
                                                torch.as_tensor(after), dim=1)
    worst = float(cos.min())
    if style_before is not None:
        worst = min(worst, float(torch.nn.functional.cosine_similarity(
            style_before, _style(again, wave), dim=1).min()))
    if worst < MIN_COSINE:
        out.unlink()
        sys.exit(f"fp16 export changed the embeddings (worst cosine {worst:.5f} < "
                 f"{MIN_COSINE}); nothing written")
    return {"path": str(out), "bytes": out.stat().st_size, "sha256": sha,
            "worst_cosine": worst}


def read_head(path: Path):
    """A StyleHead from ``style_levers.py --export-head``'s file (``weights_only``), and
    its provenance."""
    import torch

    from sonicsearch.model.style import StyleHead

    obj = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(obj, dict) or obj.get("kind") != "sonicsearch.style_head":
        sys.exit(f"{path} is not a style head written by style_levers.py --export-head")
    head = StyleHead.from_shape(obj["shape"])
    head.load_state_dict(obj["state_dict"])
    return head.eval(), dict(obj.get("provenance") or {})


def _style(model, wave):
    """The style head's output for the windows' statistics as one clip each, or None."""
    import torch

    from sonicsearch.model.style import forward_with_stats

    if getattr(model, "style_head", None) is None:
        return None
    with torch.no_grad():
        _, _, stats = forward_with_stats(model.eval(), wave)
        return model.style_head(stats.to(next(model.style_head.parameters()).dtype)).float()


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    res = export(args.model, args.out, args.note, args.windows, args.style_head)
    print(f"wrote {res['path']}: {res['bytes'] / 2**20:.1f} MiB, sha256 {res['sha256']}, "
          f"fp16 embeddings match float32 (worst cosine {res['worst_cosine']:.5f})")
    return res


if __name__ == "__main__":
    main()

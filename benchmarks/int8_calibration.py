"""Write the int8 calibration of a model (``build-index --fast``): the activation ranges of
its quantised backbone, measured on real windows of the training pool.

    python benchmarks/int8_calibration.py --data data/debian/train.csv --model base

Windows: ``--per-file`` windows spread over each of ``--files`` files taken at an even
stride through the manifest (music, effects and speech alike). Writes
``sonicsearch/assets/int8-<sha256[:16]>.json`` (text; see sonicsearch/model/int8.py).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402


def main(argv: list[str] | None = None) -> Path:
    p = C.base_parser(__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, required=True, help="a manifest CSV (path column)")
    p.add_argument("--model", default="base", help="base, or a model.pt")
    p.add_argument("--files", type=int, default=64)
    p.add_argument("--per-file", type=int, default=4)
    args = p.parse_args(argv)
    C.set_threads(args.threads)
    from sonicsearch.data.manifest import read_items
    from sonicsearch.embed.embedder import Embedder
    from sonicsearch.model import int8

    emb = Embedder.from_checkpoint(args.model, device="cpu")
    items = read_items(args.data, allow_external_paths=True)[1]
    windows = _windows(items, emb.feature_config, args.files, args.per_file)
    C.log(f"calibrating {emb.arch} ({emb.model_sha256[:12]}) on {len(windows)} windows")
    cal = int8.calibrate(emb.model, windows)
    cal = {"sha256": emb.model_sha256, "data": args.data.name, **cal}
    out = int8.calibration_path(emb.model_sha256)
    out.write_text(json.dumps(cal, indent=1) + "\n")
    C.log(f"wrote {out}")
    return out


def _windows(items, fc, files: int, per_file: int) -> np.ndarray:
    """``per_file`` windows spread evenly over each chosen file (files too short skipped)."""
    from sonicsearch.audio import iter_windows

    stride = max(1, len(items) // files)
    out = []
    for item in items[::stride][:files]:
        wins = [w for _, w in iter_windows(item.path, fc.sample_rate, fc.window_seconds,
                                           fc.hop_seconds)]
        if wins:
            pick = np.linspace(0, len(wins) - 1, min(per_file, len(wins))).round().astype(int)
            out += [wins[i] for i in sorted(set(pick))]
    return np.stack(out).astype(np.float32)


if __name__ == "__main__":
    with C.exit_on_error():
        main()

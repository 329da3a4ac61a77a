"""Shared by the benchmark scripts: the machine description, JSON + markdown output, the
cache folder, and the synthetic corpus they fall back on.

Not part of the package: the scripts import it as a sibling module (``python
benchmarks/NAME.py`` puts this folder on ``sys.path``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
DEFAULT_CACHE = Path(os.environ.get("SONICSEARCH_CACHE", Path.home() / ".cache" / "sonicsearch"))


def base_parser(description: str) -> argparse.ArgumentParser:
    """An argparse parser with the options every benchmark takes."""
    p = argparse.ArgumentParser(description=description,
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="small settings that end in a few minutes on 2 CPU cores")
    p.add_argument("--tiny", action="store_true",
                   help="smallest settings (seconds; for the smoke tests, not for numbers)")
    p.add_argument("--out", type=Path, default=RESULTS,
                   help="folder for NAME.json and NAME.md")
    p.add_argument("--cache", type=Path, default=DEFAULT_CACHE,
                   help="folder for generated corpora, models and downloads")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (default: torch's choice)")
    p.add_argument("--seed", type=int, default=0)
    return p


def add_corpus_args(p: argparse.ArgumentParser, presets: dict[str, dict[str, Any]]) -> None:
    """--genres, --per-genre, --seconds, --sample-rate of the synthetic corpus (None: the
    mode's preset)."""
    for name in ("genres", "per_genre", "seconds", "sample_rate"):
        p.add_argument(f"--{name.replace('_', '-')}", type=type(presets["full"][name]),
                       default=None, help=f"synthetic corpus {name.replace('_', ' ')}")


def add_near_duplicate_args(p: argparse.ArgumentParser) -> None:
    """--dup-queries, --excerpt, --degradations of the near-duplicate benchmark (None: the
    mode's preset)."""
    p.add_argument("--dup-queries", type=int, default=None, help="near-duplicate source files")
    p.add_argument("--excerpt", default=None, help="MIN,MAX near-duplicate excerpt seconds")
    p.add_argument("--degradations", default=None, help="comma-separated names (default: all)")


def mode(args: argparse.Namespace) -> str:
    if args.tiny:
        return "tiny"
    return "quick" if args.quick else "medium" if getattr(args, "medium", False) else "full"


def preset(args: argparse.Namespace, presets: dict[str, dict[str, Any]]) -> None:
    """Fill every option left at None from the preset of the run's mode."""
    for key, value in presets[mode(args)].items():
        if getattr(args, key, None) is None:
            setattr(args, key, value)


def set_threads(threads: int | None) -> None:
    if threads:
        import torch

        torch.set_num_threads(threads)


def machine() -> dict[str, Any]:
    """What the numbers came from: CPU model and cores, memory, library versions, GPU."""
    import torch

    info: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu": _cpu_model(),
        "cpu_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
        else os.cpu_count(),
        "memory_gib": _memory_gib(),
        "load_average_1min": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg")
        else None,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    try:
        from sonicsearch._version import __version__

        info["sonicsearch"] = __version__
    except ImportError:
        pass
    try:  # optional: the GPU machine may have no FAISS
        import faiss

        info["faiss"] = faiss.__version__
        info["faiss_gpus"] = int(faiss.get_num_gpus()) if hasattr(faiss, "get_num_gpus") else 0
    except ImportError:
        info["faiss"] = None
    return info


def describe(m: dict[str, Any]) -> str:
    gpu = f", GPU {m['gpu']}" if m.get("gpu") else ", no GPU"
    load = m.get("load_average_1min")
    return (f"{m['cpu']} ({m['cpu_cores']} cores, {m['memory_gib']:.0f} GiB"
            + (f", load average {load:.1f} at the end" if load is not None else "") + f"){gpu}; "
            f"torch {m['torch']} ({m['torch_threads']} thread(s))"
            + (f", faiss {m['faiss']}" if m.get("faiss") else "") + f"; {m['date']}")


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub markdown table; floats with 3 decimals below 10, 1 below 1000, else none;
    None as a dash."""
    def cell(v: Any) -> str:
        if v is None:
            return "–"
        if isinstance(v, float):
            return f"{v:.3f}" if abs(v) < 10 else f"{v:.1f}" if abs(v) < 1000 else f"{v:,.0f}"
        return str(v)

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def write_results(name: str, out: Path, results: dict[str, Any],
                  sections: Sequence[tuple[str, str]]) -> tuple[Path, Path]:
    """Write ``out/NAME.json`` (``results``) and ``out/NAME.md`` (the machine, then each
    ``(title, markdown)`` section); return both paths."""
    out.mkdir(parents=True, exist_ok=True)
    js, md = out / f"{name}.json", out / f"{name}.md"
    js.write_text(json.dumps(results, indent=2, default=_jsonable) + "\n")
    text = [f"# {name}", "", f"Mode: {results.get('mode', '?')}. Machine: "
            f"{describe(results['machine'])}.", ""]
    for title, body in sections:
        text += [f"## {title}", "", body, ""]
    md.write_text("\n".join(text))
    return js, md


def synth_corpus(cache: Path, genres: int, per_genre: int, seconds: float,
                 sample_rate: int = 22050, seed: int = 0) -> Path:
    """The synthetic genre corpus with these settings, made once in the cache."""
    from sonicsearch.data.synth import make_synth_corpus

    path = cache / "corpora" / f"synth-{genres}x{per_genre}x{seconds:g}s-{sample_rate}-s{seed}"
    if not path.is_dir() or not any(path.iterdir()):
        log(f"synthesising {genres} genres x {per_genre} clips x {seconds:g}s into {path}")
        make_synth_corpus(path, genres=genres, per_genre=per_genre, seconds=seconds,
                          sample_rate=sample_rate, seed=seed)
    return path


@contextmanager
def exit_on_error() -> Iterator[None]:
    """Stop the script with the message of a library error (``sys.exit(message)``)."""
    from sonicsearch.errors import SonicsearchError

    try:
        yield
    except SonicsearchError as exc:
        sys.exit(str(exc))


def mkdir(p: Path) -> Path:
    """``p``, made (with its parents) when missing."""
    p.mkdir(parents=True, exist_ok=True)
    return p


class Timer:
    """``with Timer() as t: ...; t.seconds``"""

    def __enter__(self) -> Timer:
        self.t0 = time.perf_counter()
        self.seconds = 0.0
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.t0


def log(msg: str) -> None:
    print(f"[{datetime.now().strftime('%H:%M:%S')}] {msg}", flush=True)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_gib() -> float:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError, AttributeError):
        return 0.0


def _jsonable(v: Any) -> Any:
    try:
        import numpy as np

        if isinstance(v, np.generic):
            return v.item()
        if isinstance(v, np.ndarray):
            return v.tolist()
    except ImportError:
        pass
    if isinstance(v, Path):
        return str(v)
    raise TypeError(f"not JSON serialisable: {type(v).__name__}")

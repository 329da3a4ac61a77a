"""A labelled corpus of real recordings, fetched from Debian's package archive, so that
recall_at_k also runs on audio that nobody here made.

Default: the Asterisk telephony voice prompts (asterisk-core-sounds-LANG-wav: English,
Spanish, French, Italian, Russian; 8 kHz 16-bit WAV, one professional speaker per
language), labelled by language. Any other package with audio in it can be added with
``--package LABEL=PACKAGE`` (e.g. ``--package music=freedroidrpg-data`` for Ogg music).

    python benchmarks/real_corpus.py                       # download, extract, write the CSV
    python benchmarks/recall_at_k.py --data ~/.cache/sonicsearch/debian/corpus.csv --quick

Packages are fetched as ``sonicsearch make-dataset debian`` fetches them
(:func:`sonicsearch.data.debian.fetch`: ``apt-get download``, no root needed, then
``dpkg-deb -x``) into the cache (default ~/.cache/sonicsearch/debian), and never copied or
converted: the CSV points at the extracted files. Nothing downloaded goes into the repo.
"""

from __future__ import annotations

import csv
import sys
import zlib
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

from sonicsearch.data.debian import fetch  # noqa: E402

LANGUAGES = ("en", "es", "fr", "it", "ru")
PROMPTS = "asterisk-core-sounds-{}-wav"
# single words, letters, digits and silence: too short or not speech
SKIP_DIRS = ("digits", "letters", "phonetic", "silence", "ascii")
PRESETS = {"tiny": {"per_label": 5}, "quick": {"per_label": 60}, "full": {"per_label": 300}}


def parse_args(argv: list[str] | None = None):
    p = C.base_parser(__doc__.split("\n\n")[0])
    p.add_argument("--languages", default=",".join(LANGUAGES),
                   help=f"prompt languages ({PROMPTS.format('LANG')})")
    p.add_argument("--package", action="append", default=[], metavar="LABEL=PACKAGE",
                   help="another Debian package whose audio files get LABEL (repeatable)")
    p.add_argument("--per-label", type=int, default=None, help="most files per label")
    p.add_argument("--min-seconds", type=float, default=1.5, help="skip shorter files")
    p.add_argument("--csv", type=Path, default=None,
                   help="DATA CSV to write (default: CACHE/debian/corpus.csv)")
    p.add_argument("--extracted", type=Path, default=None,
                   help="use this already extracted tree (ROOT/PACKAGE/...) instead of "
                        "downloading")
    args = p.parse_args(argv)
    C.preset(args, PRESETS)
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    packages = {lang: PROMPTS.format(lang) for lang in args.languages.split(",") if lang}
    for spec in args.package:
        label, _, pkg = spec.partition("=")
        if not label or not pkg:
            sys.exit(f"--package wants LABEL=PACKAGE, got '{spec}'")
        packages[label] = pkg
    debian = args.cache / "debian"
    root = args.extracted or debian / "extracted"
    if args.extracted is None:  # into debian/extracted/PKG, as make-dataset debian does
        with C.exit_on_error():
            fetch(packages.values(), debian, log=C.log)
    out_csv = args.csv or debian / "corpus.csv"
    summary = assemble(root, packages, out_csv, args.per_label, args.min_seconds, args.seed)
    results = {"benchmark": "real_corpus", "mode": C.mode(args), "machine": C.machine(),
               "packages": packages, **summary}
    head = ["label", "package", "files (of usable)", "minutes", "sample rates", "formats"]
    rows = [[lab, packages[lab], f"{s['files']} ({s['available']})", f"{s['seconds'] / 60:.1f}",
             ", ".join(str(r) for r in s["sample_rates"]), ", ".join(s["formats"])]
            for lab, s in summary["labels"].items()]
    text = (f"{summary['files']} files, {summary['hours']:.2f} h, in `{out_csv}` "
            f"(at most {args.per_label} per label, at least {args.min_seconds:g} s each).\n\n"
            + C.markdown_table(head, rows))
    js, md = C.write_results("real_corpus", args.out, results, [("Real-recordings corpus", text)])
    print(text)
    C.log(f"wrote {js} and {md}; next: python benchmarks/recall_at_k.py --data {out_csv}")
    return results


def assemble(root: Path, packages: dict[str, str], out_csv: Path, per_label: int,
             min_seconds: float, seed: int) -> dict:
    """Write ``path,label`` for the audio files of each extracted package under ``root``.

    Files in SKIP_DIRS, unreadable files and files shorter than ``min_seconds`` are left
    out; of the rest, at most ``per_label`` per label are drawn (seeded). Paths are relative
    to the CSV's folder when the files lie under it, else absolute.
    """
    from sonicsearch.audio import audio_info, find_audio_files
    from sonicsearch.errors import AudioError

    base = out_csv.parent.resolve()
    rows, labels = [], {}
    for label, pkg in packages.items():
        tree = root / pkg
        if not tree.is_dir():
            sys.exit(f"{tree} is missing: extract {pkg} there first")
        found = []
        for path in find_audio_files([tree]):
            if set(path.relative_to(tree.absolute()).parts[:-1]) & set(SKIP_DIRS):
                continue
            try:
                info = audio_info(path)
            except AudioError:
                continue
            if info.duration >= min_seconds:
                found.append((path, info))
        if not found:
            sys.exit(f"no audio of at least {min_seconds:g} s in {tree}")
        rng = np.random.default_rng((seed, zlib.crc32(label.encode())))
        keep = sorted(rng.choice(len(found), min(per_label, len(found)), replace=False))
        chosen = [found[i] for i in keep]
        labels[label] = {"files": len(chosen), "available": len(found),
                         "seconds": round(sum(i.duration for _, i in chosen), 1),
                         "sample_rates": sorted({i.sample_rate for _, i in chosen}),
                         "formats": sorted(Counter(i.format for _, i in chosen))}
        rows += [(p, label) for p, _ in chosen]
    out_csv.parent.mkdir(parents=True, exist_ok=True)
    with open(out_csv, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "label"])
        for p, label in rows:
            p = p.resolve()
            w.writerow([p.relative_to(base).as_posix() if p.is_relative_to(base) else str(p),
                        label])
    seconds = sum(s["seconds"] for s in labels.values())
    return {"csv": str(out_csv), "files": len(rows), "hours": round(seconds / 3600, 3),
            "labels": labels}


if __name__ == "__main__":
    main()

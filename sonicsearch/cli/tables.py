"""The terminal tables of query results: rank, score, match confidence, spans, paths."""

from __future__ import annotations

import typer

from sonicsearch.utils.reporting import display_path


def print_result(result, segments: bool) -> None:
    """A table: rank, score, the match confidence (recording mode), the matching span
    (with the query's span in segments mode), the model's predicted label for the match,
    and its path."""
    head = f"{display_path(result.query)}  ({result.duration:.1f}s"
    if result.predicted_label:
        head += f", predicted: {result.predicted_label}"
    typer.echo(head + ")")
    labelled = result.predicted_label is not None or any(r.get("label") for r in result)
    sure = any(r.get("confidence") is not None for r in result)  # recording mode, fitted
    header = (["rank", "score"] + (["sure"] if sure else []) + ["match"]
              + (["query"] if segments else [])
              + (["predicted"] if labelled else []))  # a label-free model predicts nothing
    rows = []
    for r in result:
        row = [str(r["rank"]), f"{r['score']:.3f}"] + (
            [percent(r.get("confidence"))] if sure else []) + [
            f"{clock(r['start'])}-{clock(r['end'])}"]
        if segments:
            row.append(f"{clock(r['query_start'])}-{clock(r['query_end'])}")
        rows.append((row + ([r.get("label") or "-"] if labelled else []),
                     display_path(r["path"])))
    widths = [max(len(h), *(len(row[i]) for row, _ in rows)) if rows else len(h)
              for i, h in enumerate(header)]
    typer.echo("  " + "  ".join(h.ljust(w) for h, w in zip(header, widths)) + "  path")
    for row, path in rows:
        typer.echo("  " + "  ".join(c.rjust(w) if i < 2 + sure else c.ljust(w)
                                    for i, (c, w) in enumerate(zip(row, widths))) + f"  {path}")
    if not rows:
        typer.echo(f"  ({result.get('reason') or 'no results'})")
    typer.echo("")


def percent(confidence: float | None) -> str:
    """A confidence as the page shows it: 97%, 99.6% and 0.2% (a decimal near the ends),
    or - (none)."""
    if confidence is None:
        return "-"
    pct = 100 * confidence
    return f"{pct:.1f}%" if pct >= 99.5 or pct < 0.5 else f"{pct:.0f}%"


def clock(seconds: float) -> str:
    """0:42.0, 3:05.5, or 1:02:03.0."""
    m, s = divmod(max(0.0, seconds), 60)
    h, m = divmod(int(m), 60)
    return f"{h}:{m:02d}:{s:04.1f}" if h else f"{m}:{s:04.1f}"

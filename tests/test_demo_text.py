"""The demo prints its result in the words, order and precision the README quotes."""

from __future__ import annotations

import re
from pathlib import Path

from sonicsearch.cli.demo import summary_line

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_quotes_the_demo_summary_line():
    row = next(line for line in README.read_text(encoding="utf-8").splitlines()
               if line.startswith("| `sonicsearch demo`"))
    quoted = row.split("|")[2].replace("*", "").strip()
    figures = re.findall(r"(recall@1|recall@10|label accuracy) ([0-9.]+)", quoted)
    assert [name for name, _ in figures] == ["recall@1", "recall@10", "label accuracy"]
    minutes = re.search(r"([0-9.]+) min in all", quoted)
    assert minutes, quoted
    values = dict(figures)
    queries = int(re.search(r"(\d+) held-out queries", row).group(1))
    line = summary_line({"queries": queries, "recall@1": float(values["recall@1"]),
                         "recall@10": float(values["recall@10"]),
                         "query_label_accuracy": float(values["label accuracy"]),
                         "precision@10": 0.5, "seconds": float(minutes.group(1)) * 60})
    # the same figures, to the same decimals, in the same order, with the same time wording
    for name, value in figures:
        assert f"{name} {value}" in line, (name, value, line)
    assert line.index("recall@1 ") < line.index("recall@10") < line.index("label accuracy")
    assert line.endswith(f"{minutes.group(1)} min in all")
    assert line.startswith(f"held-out queries: {queries}")

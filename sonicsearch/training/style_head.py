"""A fine-tuned model's style head: the user's labels shape what "sounds like" means.

A model that starts from a file with a style head (the shipped base model) changes its
backbone during fine-tuning, so the start's head no longer fits the new stage statistics;
without a head, ``--mode style`` would fall back to window means, which cross-entropy tunes
for the labels of the training files and which know little else. After the last epoch
:func:`fit_style_head` fits a new head on the fine-tuned backbone's statistics with two
objectives on the training split:

- distillation: cosine to the start model's own style vector of the same span (what the
  start knew about style in general stays);
- supervised contrastive on the labels, weighted by ``weight`` (spans of files with one
  label are pulled together: what the user means by alike).

The weight is chosen on the validation split (label mAP of one vector per file, each
ranking the other files; :mod:`sonicsearch.eval.style`'s scoring), among
:data:`WEIGHTS` (0: distillation alone). Each file gives up to :data:`CLIPS_PER_FILE`
stretches of one style segment (non-overlapping windows, quiet ones left out), run once
through both models; the heads then train on cached statistics in seconds.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score
from sklearn.preprocessing import StandardScaler

from sonicsearch.audio import frame_windows, load_audio
from sonicsearch.data.manifest import Dataset, Item
from sonicsearch.embed.embedder import window_rms_dbfs
from sonicsearch.embed.types import SEGMENT_SECONDS
from sonicsearch.errors import AudioError, ModelError
from sonicsearch.eval.style import QUIET_DBFS, style_map
from sonicsearch.model.backbones import AudioModel
from sonicsearch.model.checkpoint import load_checkpoint, save_checkpoint
from sonicsearch.model.style import StyleHead, embed_with_stats

WEIGHTS = (0.0, 0.3, 1.0, 3.0)
"""Supervised-contrastive weights tried on the validation split (0: distillation only)."""
CLIPS_PER_FILE = 3
STEPS = 600
BATCH = 96
TEMPERATURE = 0.1


@dataclass
class SpanStats:
    """Per file: its loud windows' statistics under the fine-tuned model (``student``) and
    the start model (``teacher``), in time order, and the file's label index."""

    student: list[np.ndarray]
    teacher: list[np.ndarray]
    targets: np.ndarray
    embeddings: list[np.ndarray] = field(default_factory=list)
    """The fine-tuned model's normalised window vectors of the same windows: what its style
    vectors would be without a head (their mean)."""


def windows_per_segment(window_seconds: float) -> int:
    """Non-overlapping windows in one style segment."""
    return max(1, int(round(SEGMENT_SECONDS / window_seconds)))


@torch.no_grad()
def collect(student: AudioModel, teacher: AudioModel, items: Sequence[Item],
            labels: Sequence[str], clips: int = CLIPS_PER_FILE,
            log: Callable[[str], None] = lambda _m: None) -> SpanStats:
    """Windows of up to ``clips`` evenly spread style segments of each readable file, run
    through both models (files that do not decode are left out, with a line in the log)."""
    fc = student.feature_config
    per_clip = windows_per_segment(fc.window_seconds)
    out = SpanStats([], [], np.zeros(0, np.int64))
    targets = []
    for item in items:
        try:
            wave, _ = load_audio(item.path, fc.sample_rate)
        except AudioError as exc:
            log(f"style head: left out {exc}")
            continue
        windows, _ = frame_windows(wave, fc.sample_rate, fc.window_seconds, fc.window_seconds)
        if not len(windows):
            continue
        starts = np.linspace(0, max(0, len(windows) - per_clip), clips).astype(int)
        idx = np.unique(np.concatenate([np.arange(s, min(s + per_clip, len(windows)))
                                        for s in starts]))
        loud = window_rms_dbfs(windows[idx]) > QUIET_DBFS
        if loud.any():  # a file that is all quiet keeps its windows
            idx = idx[loud]
        x = np.ascontiguousarray(windows[idx])
        emb, stats = embed_with_stats(student, x)
        out.student.append(stats)
        out.embeddings.append(emb)
        out.teacher.append(embed_with_stats(teacher, x)[1])
        targets.append(labels.index(item.label))
    out.targets = np.asarray(targets, np.int64)
    return out


class _Spans:
    """Random runs of consecutive windows (a quarter to a whole segment) of random files,
    their mean statistics read off cumulative sums: one batch costs a few array operations."""

    def __init__(self, data: SpanStats, per_clip: int, rng: np.random.Generator):
        self.lengths = np.array([len(s) for s in data.student])
        self.offsets = np.concatenate([[0], np.cumsum(self.lengths)[:-1]])
        self.sums = [np.concatenate([np.zeros((1, rows[0].shape[1])),
                                     np.cumsum(np.concatenate(rows), axis=0, dtype=np.float64)])
                     for rows in (data.student, data.teacher)]
        self.targets, self.per_clip, self.rng = data.targets, per_clip, rng

    def batch(self, size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(student means, teacher means, labels)`` of ``size`` random spans."""
        files = self.rng.integers(0, len(self.lengths), size)
        n = self.lengths[files]
        length = np.minimum(n, self.rng.integers(max(1, self.per_clip // 4), self.per_clip + 1,
                                                 size))
        a = self.offsets[files] + (self.rng.random(size) * (n - length + 1)).astype(int)
        b = a + length

        def means(sums: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(((sums[b] - sums[a]) / length[:, None]).astype(np.float32))

        return means(self.sums[0]), means(self.sums[1]), torch.from_numpy(self.targets[files])


def supcon(z: torch.Tensor, y: torch.Tensor, temperature: float = TEMPERATURE) -> torch.Tensor:
    """Supervised contrastive loss of normalised ``z`` with labels ``y`` (Khosla et al.)."""
    eye = torch.eye(len(z), dtype=torch.bool, device=z.device)
    logits = (z @ z.T / temperature).masked_fill(eye, -1e9)
    pos = (y[:, None] == y[None, :]) & ~eye
    logp = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    has = pos.any(1)
    if not has.any():
        return z.sum() * 0.0
    return -((logp * pos).sum(1)[has] / pos.sum(1)[has]).mean()


def train_head(data: SpanStats, start_head: StyleHead, weight: float, per_clip: int,
               steps: int = STEPS, seed: int = 0) -> StyleHead:
    """A new head (the start head's shape) on ``data``'s student statistics: distillation
    of the start head's vectors plus ``weight`` x supervised contrastive on the labels."""
    spans = _Spans(data, per_clip, np.random.default_rng(seed))
    torch.manual_seed(seed)
    fit = np.concatenate(data.student)
    head = StyleHead(fit.shape[1], start_head.hidden, start_head.dim)
    with torch.no_grad():
        head.mu.copy_(torch.from_numpy(fit.mean(0)))
        head.sd.copy_(torch.from_numpy(fit.std(0) + 1e-3))
    teacher = start_head.float().eval()
    opt = torch.optim.AdamW(head.parameters(), lr=1e-3, weight_decay=1e-2)
    head.train()
    for _ in range(steps):
        x, t, y = spans.batch(BATCH)
        with torch.no_grad():
            target = F.normalize(teacher(t), dim=-1)
        z = F.normalize(head(x), dim=-1)
        loss = (1 - (z * target).sum(-1)).mean()
        if weight > 0:
            loss = loss + weight * supcon(z, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return head.eval()


@torch.no_grad()
def label_map(data: SpanStats, project: Callable[[np.ndarray], np.ndarray],
              source: str = "student") -> float:
    """Label mAP of one vector per file (``project`` of the mean of its windows' rows in
    ``source``: student or teacher statistics, or the student's embeddings), each ranking
    the other files; nan when no label has two files."""
    rows = {"student": data.student, "teacher": data.teacher,
            "embeddings": data.embeddings}[source]
    labels = data.targets.tolist()
    if not rows or max(np.bincount(labels)) < 2:
        return float("nan")
    return style_map(project(np.stack([r.mean(0) for r in rows])), labels,
                     list(range(len(rows))))[0]


def probe_f1(train: SpanStats, test: SpanStats,
             project: Callable[[np.ndarray], np.ndarray]) -> float:
    """Macro-F1 on ``test`` (over the labels present there) of a logistic probe fitted on
    ``train``'s file vectors (``project`` of the teacher's mean statistics): what the
    start model's frozen style vectors give without fine-tuning."""
    def vectors(data: SpanStats) -> np.ndarray:
        v = project(np.stack([s.mean(0) for s in data.teacher]))
        return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)

    if not len(train.teacher) or not len(test.teacher) or len(set(train.targets)) < 2:
        return float("nan")
    scaler = StandardScaler().fit(vectors(train))
    clf = LogisticRegression(max_iter=2000).fit(scaler.transform(vectors(train)),
                                                train.targets)
    pred = clf.predict(scaler.transform(vectors(test)))
    return float(f1_score(test.targets, pred, labels=sorted(set(test.targets.tolist())),
                          average="macro", zero_division=0))


def head_projector(head: StyleHead) -> Callable[[np.ndarray], np.ndarray]:
    """Mean statistics -> the head's vectors, as numpy."""
    def project(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return head.float().eval()(torch.from_numpy(x.astype(np.float32))).numpy()
    return project


def fit_style_head(student: AudioModel, teacher: AudioModel, train: SpanStats,
                   val: SpanStats, seed: int = 0) -> tuple[StyleHead, dict]:
    """The best head by validation label mAP among :data:`WEIGHTS`, and the report
    (``{"weight", "val_map": {weight: mAP}, "val_map_start": mAP}``)."""
    per_clip = windows_per_segment(student.feature_config.window_seconds)
    start_head = teacher.style_head
    scores, heads = {}, {}
    for w in WEIGHTS:
        heads[w] = train_head(train, start_head, w, per_clip, seed=seed)
        scores[w] = label_map(val, head_projector(heads[w]))
    finite = {w: s for w, s in scores.items() if np.isfinite(s)}
    best = max(finite, key=finite.get) if finite else WEIGHTS[0]
    report = {"weight": best, "val_map": {str(w): s for w, s in scores.items()},
              "val_map_start": label_map(val, head_projector(start_head), source="teacher")}
    return heads[best], report


def add_style_head(weights: str, dataset: Dataset, model_path: Path, device: torch.device,
                   seed: int = 0, say: Callable[[str], None] = lambda _m: None) -> dict | None:
    """When the start model (``weights``) has a style head, fit one for the fine-tuned
    model at ``model_path`` on ``dataset``'s splits, write it into that file and return the
    report (the validation scores, and the test split's label mAP of the start's and the
    new style vectors and the start's probe macro-F1); None when the start has no head."""
    start = _start_with_style_head(weights)
    if start is None:
        return None
    model, info = load_checkpoint(model_path, device=device)
    start = start.to(device)
    labels = list(info["labels"])
    split = {name: collect(model, start, dataset.split(name), labels, log=say)
             for name in ("train", "val", "test")}
    if not len(split["val"].student):
        split["val"] = split["test"]
    say(f"style head: fitting on {len(split['train'].student)} training files")
    head, report = fit_style_head(model, start, split["train"], split["val"], seed=seed)
    start_vectors = head_projector(start.style_head)
    report["test_map_start"] = label_map(split["test"], start_vectors, source="teacher")
    report["test_map"] = label_map(split["test"], head_projector(head))
    report["test_map_window_mean"] = label_map(split["test"], lambda v: v, source="embeddings")
    report["test_probe_f1_start"] = probe_f1(split["train"], split["test"], start_vectors)
    report = _finite(report)
    model.style_head = head.to(device)
    save_checkpoint(model_path, model, config=info["config"], labels=labels,
                    metrics=info.get("metrics"),
                    extra={**(info.get("extra") or {}), "style_head": report})
    say(f"style head: label mAP on test {_fmt(report['test_map_start'])} (start model) -> "
        f"{_fmt(report['test_map'])} (fine-tuned; contrastive weight {report['weight']})")
    return report


def _fmt(x: float | None) -> str:
    return "n/a (too few test files a label)" if x is None else f"{x:.3f}"


def _finite(value):
    """The report with every nan (too few files of a label to rank) as None, for JSON."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def _start_with_style_head(weights: str) -> AudioModel | None:
    """The start model when ``weights`` is one of our model files with a style head."""
    if str(weights).lower() in ("imagenet", "none"):
        return None
    try:
        model, _ = load_checkpoint(weights)
    except ModelError:
        return None  # a plain state_dict (--weights PATH): no style head to start from
    return model if getattr(model, "style_head", None) is not None else None


__all__ = ["SpanStats", "add_style_head", "collect", "fit_style_head", "label_map", "probe_f1",
           "supcon", "train_head"]

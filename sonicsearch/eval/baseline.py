"""The MFCC-statistics baseline: per-file MFCC and delta means and standard deviations,
standardised, then a logistic regression. It is the yardstick in the README and benchmarks
that a fine-tuned CNN has to beat, and its standardised, L2-normalised features give an
exact-search retrieval baseline as well.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torchaudio
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from sonicsearch.audio import load_audio, window_starts
from sonicsearch.errors import DataError, ModelError
from sonicsearch.eval.metrics import classification_report

SAMPLE_RATE = 22050
N_FFT = 2048
HOP = 512
N_MELS = 64


def mfcc_stats(wave: np.ndarray, sample_rate: int, n_mfcc: int = 20) -> np.ndarray:
    """Summarise a clip as MFCC statistics.

    Args:
        wave: 1-D mono samples.
        sample_rate: their rate.
        n_mfcc: MFCC coefficients (from 64 mel bands, 2048-point FFT, hop 512).

    Returns:
        float32 ``(4 * n_mfcc,)``: per-coefficient mean and std of the MFCCs, then mean and
        std of their deltas. The same input always gives the same vector.

    Raises:
        ValueError: ``wave`` is not 1-D or is empty.
    """
    x = np.asarray(wave, dtype=np.float32)
    if x.ndim != 1 or x.size == 0:
        raise ValueError(f"expected a non-empty 1-D wave, got shape {x.shape}")
    if x.size < N_FFT:  # reflect padding needs more than half an FFT of signal
        x = np.pad(x, (0, N_FFT - x.size))
    with torch.no_grad():
        m = _mfcc(sample_rate, n_mfcc)(torch.from_numpy(x))  # (n_mfcc, frames)
        d = torchaudio.functional.compute_deltas(m)
        stats = [m.mean(1), m.std(1, correction=0), d.mean(1), d.std(1, correction=0)]
    return torch.cat(stats).numpy().astype(np.float32)


def mfcc_window_stats(wave: np.ndarray, sample_rate: int, window: float, hop: float,
                      n_mfcc: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """MFCC statistics per window: :func:`mfcc_stats` over each window of a clip.

    Args:
        wave: 1-D mono samples.
        sample_rate: their rate.
        window, hop: window length and hop, seconds.
        n_mfcc: MFCC coefficients.

    Returns:
        ``(stats, spans)``: float32 ``(windows, 4 * n_mfcc)`` (mean and std of the MFCCs,
        then of their deltas, over the frames a window covers), and float64
        ``(windows, 2)`` start and end seconds.
    """
    x = np.asarray(wave, np.float32)
    n = x.size
    if x.size < N_FFT:
        x = np.pad(x, (0, N_FFT - x.size))
    with torch.no_grad():
        m = _mfcc(sample_rate, n_mfcc)(torch.from_numpy(x))
        d = torchaudio.functional.compute_deltas(m)
    feats = torch.cat([m, d]).numpy().astype(np.float64).T  # (frames, 2 * n_mfcc)
    win, step = int(round(window * sample_rate)), int(round(hop * sample_rate))
    c1 = np.vstack([np.zeros(feats.shape[1]), np.cumsum(feats, axis=0)])
    c2 = np.vstack([np.zeros(feats.shape[1]), np.cumsum(feats**2, axis=0)])
    rows, spans = [], []
    for s in window_starts(n, win, step):
        a = min(s // HOP, feats.shape[0] - 1)
        b = max(a + 1, min(-(-(s + win) // HOP), feats.shape[0]))
        mean = (c1[b] - c1[a]) / (b - a)
        std = np.sqrt(np.maximum((c2[b] - c2[a]) / (b - a) - mean**2, 0.0))
        rows.append(np.concatenate([mean[:n_mfcc], std[:n_mfcc], mean[n_mfcc:], std[n_mfcc:]]))
        spans.append((s / sample_rate, min(s + win, n) / sample_rate))
    return np.asarray(rows, np.float32), np.asarray(spans, np.float64)


def unit_rows(z: np.ndarray) -> np.ndarray:
    """``z`` with every row scaled to unit L2 norm (an all-zero row stays zero)."""
    return z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-12)


class MfccBaseline:
    """MFCC statistics -> StandardScaler -> LogisticRegression.

    Args:
        sample_rate: files are decoded to mono at this rate.
        n_mfcc: MFCC coefficients; the feature vector has ``4 * n_mfcc`` values.
        C: inverse L2 regularisation strength of the logistic regression.
        max_iter: solver iterations (plenty for a few hundred standardised features).
    """

    def __init__(self, sample_rate: int = SAMPLE_RATE, n_mfcc: int = 20, C: float = 1.0,
                 max_iter: int = 5000):
        self.sample_rate = sample_rate
        self.n_mfcc = n_mfcc
        self.scaler = StandardScaler()
        self.clf = LogisticRegression(C=C, max_iter=max_iter)
        self.labels: list[str] = []

    def features(self, paths: Sequence[str | Path]) -> np.ndarray:
        """Raw MFCC statistics, ``(len(paths), 4 * n_mfcc)`` float32.

        Raises:
            AudioError: a file cannot be decoded.
        """
        rows = [mfcc_stats(_read(p, self.sample_rate), self.sample_rate, self.n_mfcc)
                for p in paths]
        return np.stack(rows) if rows else np.zeros((0, 4 * self.n_mfcc), np.float32)

    def fit(self, paths: Sequence[str | Path], labels: Sequence[str]) -> MfccBaseline:
        """Fit the scaler and the classifier on labelled files.

        Raises:
            DataError: lengths differ, or fewer than two labels.
            AudioError: a file cannot be decoded.
        """
        if len(paths) != len(labels):
            raise DataError(f"{len(paths)} paths but {len(labels)} labels")
        if len(set(labels)) < 2:
            raise DataError("the baseline needs files of at least two labels")
        x = self.scaler.fit_transform(self.features(paths))
        self.clf.fit(x, [str(label) for label in labels])
        self.labels = [str(c) for c in self.clf.classes_]
        return self

    def predict(self, paths: Sequence[str | Path]) -> list[str]:
        """Predicted label of each file."""
        self._check_fitted()
        if not len(paths):
            return []
        return [str(y) for y in self.clf.predict(self.scaler.transform(self.features(paths)))]

    def embed(self, paths: Sequence[str | Path]) -> np.ndarray:
        """Standardised, L2-normalised features ``(len(paths), 4 * n_mfcc)`` float32, so inner
        product is cosine similarity (for exact search)."""
        self._check_fitted()
        return unit_rows(self.scaler.transform(self.features(paths))).astype(np.float32)

    def _check_fitted(self) -> None:
        if not self.labels:
            raise ModelError("the MFCC baseline is not fitted; call fit() first")


def evaluate_baseline(
    train: Sequence[tuple[str | Path, str]],
    test: Sequence[tuple[str | Path, str]],
    **kwargs,
) -> dict:
    """Fit :class:`MfccBaseline` on ``train`` and score it on ``test``.

    Args:
        train: ``(path, label)`` pairs to fit on.
        test: ``(path, label)`` pairs to score.
        **kwargs: passed to :class:`MfccBaseline`.

    Returns:
        The evaluate JSON of docs/formats.md: ``n``, ``accuracy``, ``macro_precision``,
        ``macro_recall``, ``macro_f1``, ``per_class``.

    Raises:
        DataError: an empty test set, or fewer than two training labels.
    """
    if not test:
        raise DataError("the test set is empty")
    model = MfccBaseline(**kwargs).fit([p for p, _ in train], [y for _, y in train])
    predicted = model.predict([p for p, _ in test])
    labels = sorted(set(model.labels) | {str(y) for _, y in test})
    index = {label: i for i, label in enumerate(labels)}
    return classification_report([index[str(y)] for _, y in test],
                                 [index[y] for y in predicted], labels)


@lru_cache(maxsize=8)
def _mfcc(sample_rate: int, n_mfcc: int) -> torchaudio.transforms.MFCC:
    return torchaudio.transforms.MFCC(
        sample_rate=sample_rate, n_mfcc=n_mfcc,
        melkwargs={"n_fft": N_FFT, "hop_length": HOP, "n_mels": N_MELS},
    )


def _read(path: str | Path, sample_rate: int) -> np.ndarray:
    return load_audio(path, sample_rate=sample_rate)[0]

"""Classification metrics: macro averages over the labels present in the split."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import f1_score, precision_score, recall_score

from sonicsearch.eval.metrics import classification_report

LABELS = ["blues", "disco", "folk", "jazz", "metal", "pop", "rock"]


def _split_without_rock():
    """A test split of 6 of the 7 labels: no file is rock, yet one is predicted rock."""
    y_true = [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
    y_pred = [0, 1, 1, 1, 2, 6, 3, 0, 4, 4, 5, 2]
    return y_true, y_pred


def test_macro_averages_leave_out_a_label_absent_from_the_split():
    y_true, y_pred = _split_without_rock()
    report = classification_report(y_true, y_pred, LABELS)
    present = sorted(set(y_true))
    per_f1 = [report["per_class"][LABELS[i]]["f1"] for i in present]
    assert report["macro_f1"] == pytest.approx(np.mean(per_f1))  # not sum / 7
    # scikit-learn's macro average with labels= the true labels
    for key, score in (("macro_f1", f1_score), ("macro_precision", precision_score),
                       ("macro_recall", recall_score)):
        assert report[key] == pytest.approx(score(y_true, y_pred, labels=present,
                                                  average="macro", zero_division=0)), key
    assert report["absent_labels"] == ["rock"]
    # the absent label keeps its row, with support 0
    assert report["per_class"]["rock"]["support"] == 0
    assert set(report["per_class"]) == set(LABELS)


def test_a_prediction_of_the_absent_label_still_costs_its_file():
    y_true, y_pred = _split_without_rock()
    right = list(y_pred)
    right[5] = 2  # the folk file predicted rock, now predicted folk
    wrong, fixed = (classification_report(y_true, p, LABELS) for p in (y_pred, right))
    assert wrong["per_class"]["folk"]["recall"] == 0.5
    assert fixed["per_class"]["folk"]["recall"] == 1.0
    assert wrong["macro_f1"] < fixed["macro_f1"] and wrong["accuracy"] < fixed["accuracy"]


def test_every_label_present_is_the_plain_macro_average():
    y_true = [0, 1, 2, 0, 1, 2]
    y_pred = [0, 2, 2, 0, 1, 1]
    report = classification_report(y_true, y_pred, ["a", "b", "c"])
    assert report["absent_labels"] == []
    assert report["macro_f1"] == pytest.approx(f1_score(y_true, y_pred, average="macro"))

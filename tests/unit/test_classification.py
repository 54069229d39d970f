"""Classification, calibration and multi-label metrics on hand-checked inputs."""

from __future__ import annotations

import numpy as np
import pytest

from recfusion.metrics.classification import (
    auc,
    calibration,
    log_loss,
    multilabel_report,
    threshold_metrics,
)


def test_auc_by_hand() -> None:
    # positives scored 0.8 and 0.4, negatives 0.6 and 0.2: of the 4 (pos, neg) pairs three are
    # ordered right (0.8>0.6, 0.8>0.2, 0.4>0.2) -> 0.75
    assert auc(np.array([1, 0, 1, 0]), np.array([0.8, 0.6, 0.4, 0.2])) == pytest.approx(0.75)
    # a tie between a positive and a negative counts one half
    assert auc(np.array([1, 0]), np.array([0.5, 0.5])) == pytest.approx(0.5)
    assert np.isnan(auc(np.array([1, 1]), np.array([0.1, 0.2])))


def test_threshold_metrics_and_log_loss() -> None:
    y = np.array([1, 1, 0, 0])
    p = np.array([0.9, 0.4, 0.6, 0.1])
    # at 0.5: predicted [1, 0, 1, 0] -> tp 1, fp 1, fn 1, accuracy 2/4
    m = threshold_metrics(y, p, 0.5)
    assert m == {"accuracy": 0.5, "precision": 0.5, "recall": 0.5, "f1": 0.5}
    expected = -np.mean(np.log([0.9, 0.4, 0.4, 0.9]))
    assert log_loss(y, p) == pytest.approx(expected)


def test_calibration_error() -> None:
    # bin 0.8-0.9 holds two predictions of 0.8 with one positive: |0.8 - 0.5| = 0.3 on half the
    # data; bin 0.2-0.3 holds two of 0.2 with no positive: |0.2 - 0| = 0.2 on the other half
    c = calibration(np.array([1, 0, 0, 0]), np.array([0.8, 0.8, 0.2, 0.2]))
    assert c["ece"] == pytest.approx(0.5 * 0.3 + 0.5 * 0.2)
    assert [b["count"] for b in c["bins"]] == [2, 2]


def test_multilabel_report() -> None:
    truth = np.array([[1, 0, 1], [0, 1, 0]], dtype=bool)
    pred = np.array([[1, 1, 0], [0, 1, 0]], dtype=bool)
    # tp = 2 (user0 tag0, user1 tag1), fp = 1 (user0 tag1), fn = 1 (user0 tag2)
    m = multilabel_report(truth, pred)
    assert m["precision"] == pytest.approx(2 / 3) and m["recall"] == pytest.approx(2 / 3)
    # per tag F1: tag0 2*1/(2*1+0+0) = 1, tag1 2*1/(2+1) = 2/3, tag2 0 -> macro (1 + 2/3 + 0)/3
    assert m["macro_f1"] == pytest.approx((1 + 2 / 3) / 3)

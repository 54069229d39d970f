"""Binary-classification and calibration metrics for the ranking heads (pure NumPy)."""

from __future__ import annotations

import numpy as np


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U with tied scores sharing ranks); nan when only
    one class is present."""
    labels = np.asarray(labels, dtype=bool)
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    sorted_scores = np.asarray(scores)[order]
    ranks = np.empty(len(scores), dtype=np.float64)
    # average ranks over ties
    _, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    avg = first + (counts + 1) / 2.0
    ranks[order] = np.repeat(avg, counts)
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def log_loss(labels: np.ndarray, probs: np.ndarray, eps: float = 1e-7) -> float:
    p = np.clip(np.asarray(probs, dtype=np.float64), eps, 1 - eps)
    y = np.asarray(labels, dtype=np.float64)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def threshold_metrics(labels: np.ndarray, probs: np.ndarray, threshold: float) -> dict[str, float]:
    """Accuracy, precision, recall and F1 of predicting `probs >= threshold`."""
    y = np.asarray(labels, dtype=bool)
    pred = np.asarray(probs) >= threshold
    tp = int((pred & y).sum())
    fp = int((pred & ~y).sum())
    fn = int((~pred & y).sum())
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "accuracy": float(np.mean(pred == y)) if len(y) else float("nan"),
        "precision": precision,
        "recall": recall,
        "f1": f1,
    }


def best_f1_threshold(labels: np.ndarray, probs: np.ndarray) -> float:
    """The threshold among 99 percentiles of `probs` that maximises F1 (chosen on validation)."""
    candidates = np.unique(np.percentile(probs, np.linspace(1, 99, 99)))
    if len(candidates) == 0:
        return 0.5
    f1 = [threshold_metrics(labels, probs, t)["f1"] for t in candidates]
    return float(candidates[int(np.argmax(f1))])


def calibration(labels: np.ndarray, probs: np.ndarray, bins: int = 10) -> dict:
    """Expected calibration error over equal-width probability bins, and the bins themselves
    (mean predicted probability vs observed rate) for a reliability plot."""
    y = np.asarray(labels, dtype=np.float64)
    p = np.asarray(probs, dtype=np.float64)
    which = np.minimum((p * bins).astype(int), bins - 1)
    table, ece = [], 0.0
    for b in range(bins):
        mask = which == b
        if not mask.any():
            continue
        predicted, observed = float(p[mask].mean()), float(y[mask].mean())
        ece += mask.mean() * abs(predicted - observed)
        table.append({"bin": b, "count": int(mask.sum()), "predicted": predicted,
                      "observed": observed})  # fmt: skip
    return {"ece": float(ece), "bins": table}


def binary_report(labels: np.ndarray, probs: np.ndarray, threshold: float) -> dict:
    """AUC, log loss, threshold metrics and calibration of one head."""
    return {
        "auc": auc(labels, probs),
        "log_loss": log_loss(labels, probs),
        "threshold": threshold,
        **threshold_metrics(labels, probs, threshold),
        "positive_rate": float(np.mean(labels)) if len(labels) else float("nan"),
        "calibration": calibration(labels, probs),
    }


def multilabel_report(labels: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    """Micro precision / recall / F1 and macro F1 of [users, tags] boolean predictions; macro F1
    averages over tags that occur in the labels or the predictions."""
    y = np.asarray(labels, dtype=bool)
    p = np.asarray(predicted, dtype=bool)
    tp, fp, fn = (p & y).sum(0), (p & ~y).sum(0), (~p & y).sum(0)
    micro_p = tp.sum() / max(tp.sum() + fp.sum(), 1)
    micro_r = tp.sum() / max(tp.sum() + fn.sum(), 1)
    micro_f1 = 2 * micro_p * micro_r / (micro_p + micro_r) if micro_p + micro_r else 0.0
    present = (tp + fp + fn) > 0
    per_tag = np.where(present, 2 * tp / np.maximum(2 * tp + fp + fn, 1), 0.0)
    return {
        "precision": float(micro_p),
        "recall": float(micro_r),
        "micro_f1": float(micro_f1),
        "macro_f1": float(per_tag[present].mean()) if present.any() else 0.0,
        "users": int(len(y)),
    }

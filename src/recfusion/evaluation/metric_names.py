"""What the reports know about metric names: which way is better, the order to list them in, and
what a slice row measures. evaluation.html, the model card and gate.md all ask here, so a new
metric is taught to every report at once.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TypeVar

from recfusion.config import RANKING_METRICS

# base names (see `base_name`) where a smaller value is the better one; every other metric of the
# reports is better when larger
LOWER_IS_BETTER = frozenset({
    "log_loss",  # ranking heads: cross-entropy of the predicted probabilities
    "ece",  # ranking heads: expected calibration error
    "rmse",  # rating heads
    "mae",  # rating heads
    "latency_p95_ms",  # gate.json: the fresh-process check's p95 answer time
    "gap",  # a slice attribute's largest gap between groups (fairness)
})  # fmt: skip
# families in the order reports list them: the ranking metrics as config defines them, then the
# beyond-accuracy ones (evaluation/beyond.py); each family's k ascending
FAMILY_ORDER: tuple[str, ...] = (*RANKING_METRICS, "coverage", "diversity", "novelty",
                                 "long_tail_share")  # fmt: skip
# what serving/scoring.py and evaluation/slices.py measure in every slice
SLICE_METRIC = "ndcg@10"

V = TypeVar("V")


def base_name(name: str) -> str:
    """The metric a name stands for, without its cut-off or prefixes: `log_loss` -> `log_loss`,
    `ndcg@10` -> `ndcg`, `slice.gender.gap` and `gender: gap` -> `gap`."""
    return re.split(r"[.:\s]+", name.split("@")[0].strip())[-1]


def lower_is_better(name: str) -> bool:
    """True when a smaller value of metric `name` is the better one (LOWER_IS_BETTER)."""
    return base_name(name) in LOWER_IS_BETTER


def metric_sort_key(name: str) -> tuple[int, str, int]:
    """Orders metrics by family (FAMILY_ORDER, then unknown families by name), then by k as a
    number: recall@5, recall@10, recall@20, ..., ndcg@5, ..., coverage@10, then the rest."""
    family, _, k = name.partition("@")
    rank = FAMILY_ORDER.index(family) if family in FAMILY_ORDER else len(FAMILY_ORDER)
    return (rank, family if rank == len(FAMILY_ORDER) else "", int(k) if k.isdigit() else -1)


def ordered(metrics: Mapping[str, V]) -> dict[str, V]:
    """`metrics` as a dict in `metric_sort_key` order (the reports' one order)."""
    return {name: metrics[name] for name in sorted(metrics, key=metric_sort_key)}


def slice_label(name: str) -> str:
    """A slice's row label that says what it measures: `gender=F` -> `ndcg@10, slice gender=F`."""
    return f"{SLICE_METRIC}, slice {name}"

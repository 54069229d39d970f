"""Train / validation / test splits of the event log, and cold-start marking.

Methods (params `prepare.split.method`):
- temporal: one global time cut; every val event is at or after the val cut, every test event
  at or after the test cut, so nothing in train is later than anything in test.
- leave_last_n: each user's last N events go to test and the N before them to val.
- random_ratio: each user's events are shuffled and cut by ratio (RecBole's per-user "RS"
  split), for comparison with published benchmarks.
- predefined: the events' own `split` column.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from recfusion.config import SplitConfig
from recfusion.data.schema import SPLITS


@dataclass(frozen=True)
class SplitResult:
    labels: pd.Series  # "train" | "val" | "test", aligned with the events' index
    cuts: dict[str, str]  # temporal: the val and test cut times (ISO); empty otherwise


def split_events(events: pd.DataFrame, cfg: SplitConfig, seed: int) -> SplitResult:
    """Assigns every event to train, val or test.

    Args:
        events: cleaned events with user_id, timestamp (and split for `predefined`).
        cfg: the split parameters.
        seed: seed for `random_ratio`.

    Raises:
        ValueError: fractions out of range, or `predefined` without a complete split column.
    """
    fractions_ok = 0 <= cfg.val_frac < 1 and 0 <= cfg.test_frac < 1
    if cfg.method in ("temporal", "random_ratio") and not (
        fractions_ok and cfg.val_frac + cfg.test_frac < 1
    ):
        raise ValueError(
            "prepare.split.val_frac and test_frac must be in [0, 1) and sum below 1, got "
            f"{cfg.val_frac} and {cfg.test_frac}"
        )
    if cfg.method == "temporal":
        return _temporal(events, cfg.val_frac, cfg.test_frac)
    if cfg.method == "leave_last_n":
        if cfg.last_n < 1 or cfg.min_train_events < 1:
            raise ValueError("prepare.split.last_n and min_train_events must be >= 1")
        return SplitResult(_leave_last_n(events, cfg.last_n, cfg.min_train_events), {})
    if cfg.method == "random_ratio":
        ratios = (1.0 - cfg.val_frac - cfg.test_frac, cfg.val_frac, cfg.test_frac)
        return SplitResult(_random_ratio(events, ratios, seed), {})
    return SplitResult(_predefined(events), {})


def _temporal(events: pd.DataFrame, val_frac: float, test_frac: float) -> SplitResult:
    ts = events["timestamp"]
    if len(ts) == 0:
        return SplitResult(pd.Series([], index=events.index, dtype=object), {})
    sorted_ts = np.sort(ts.to_numpy())
    n = len(sorted_ts)
    val_cut = sorted_ts[min(n - 1, int(np.floor(n * (1.0 - val_frac - test_frac))))]
    test_cut = sorted_ts[min(n - 1, int(np.floor(n * (1.0 - test_frac))))]
    labels = np.where(ts >= test_cut, "test", np.where(ts >= val_cut, "val", "train"))
    if test_frac == 0:
        labels = np.where(labels == "test", "val" if val_frac > 0 else "train", labels)
    if val_frac == 0:
        labels = np.where(labels == "val", "train", labels)
    cuts = {"val_cut": str(pd.Timestamp(val_cut)), "test_cut": str(pd.Timestamp(test_cut))}
    return SplitResult(pd.Series(labels, index=events.index, dtype=object), cuts)


def _leave_last_n(events: pd.DataFrame, n: int, min_train: int) -> pd.Series:
    order = events.assign(_pos=np.arange(len(events))).sort_values(
        ["user_id", "timestamp", "_pos"], kind="stable"
    )
    from_end = order.groupby("user_id", sort=False).cumcount(ascending=False).to_numpy()
    size = order.groupby("user_id", sort=False)["user_id"].transform("size").to_numpy()
    labels = np.where(from_end < n, "test", np.where(from_end < 2 * n, "val", "train"))
    labels = np.where(size - 2 * n < min_train, "train", labels)
    return pd.Series(labels, index=order.index, dtype=object).reindex(events.index)


def split_counts(total: np.ndarray, ratios: tuple[float, float, float]) -> np.ndarray:
    """Per-user (train, val, test) counts, as RecBole's `_calcu_split_ids` computes them.

    Val and test get floor(ratio * total); a split whose share is between 0 and 1 row gets one
    row while train keeps more than one. E.g. total 10 at (0.8, 0.1, 0.1) -> (8, 1, 1);
    total 5 -> val 0.5 and test 0.5 round up to one each -> (3, 1, 1).

    Returns:
        [len(total), 3] integer counts summing to `total` row-wise.
    """
    total = np.asarray(total, dtype=np.int64)
    cnt = np.stack([np.floor(r * total).astype(np.int64) for r in ratios], axis=1)
    cnt[:, 0] = total - cnt[:, 1:].sum(axis=1)
    for i in (2, 1):  # RecBole walks from the last split backwards
        share = ratios[i] * total
        bump = (cnt[:, 0] > 1) & (share > 0) & (share < 1)
        cnt[bump, i] += 1
        cnt[bump, 0] -= 1
    return cnt


def _random_ratio(events: pd.DataFrame, ratios: tuple[float, float, float], seed: int) -> pd.Series:
    rng = np.random.default_rng(seed)
    shuffled = events.assign(_r=rng.random(len(events))).sort_values(
        ["user_id", "_r"], kind="stable"
    )
    pos = shuffled.groupby("user_id", sort=False).cumcount().to_numpy()
    size = shuffled.groupby("user_id", sort=False)["user_id"].transform("size").to_numpy()
    uniq, inverse = np.unique(size, return_inverse=True)
    cnt = split_counts(uniq, ratios)[inverse]  # computed once per distinct history length
    n_train, n_val = cnt[:, 0], cnt[:, 1]
    labels = np.where(pos < n_train, "train", np.where(pos < n_train + n_val, "val", "test"))
    return pd.Series(labels, index=shuffled.index, dtype=object).reindex(events.index)


def _predefined(events: pd.DataFrame) -> pd.Series:
    if "split" not in events.columns or events["split"].isna().all():
        raise ValueError(
            "prepare.split.method is 'predefined' but the events have no 'split' column; "
            "add one (train/val/test) to your events file or choose another method"
        )
    missing = int(events["split"].isna().sum())
    if missing:
        raise ValueError(f"predefined split: {missing} events have no split value")
    bad = set(events["split"].unique()) - set(SPLITS)
    if bad:
        raise ValueError(f"predefined split: unknown split values {sorted(bad)[:5]}")
    return events["split"].astype(object)


def split_queries(
    queries: pd.DataFrame, cuts: dict[str, str], val_frac: float, test_frac: float
) -> pd.Series:
    """Query log split by time: at the events' temporal cuts when there are some, else at the
    query log's own time quantiles with the same fractions."""
    ts = queries["timestamp"]
    if len(ts) == 0:
        return pd.Series([], index=queries.index, dtype=object)
    if cuts:
        val_cut, test_cut = pd.Timestamp(cuts["val_cut"]), pd.Timestamp(cuts["test_cut"])
    else:
        val_cut = ts.quantile(1.0 - val_frac - test_frac)
        test_cut = ts.quantile(1.0 - test_frac)
    labels = np.where(ts >= test_cut, "test", np.where(ts >= val_cut, "val", "train"))
    return pd.Series(labels, index=queries.index, dtype=object)


def mark_cold(events: pd.DataFrame, labels: pd.Series) -> tuple[set[str], set[str], pd.DataFrame]:
    """Users and items seen in train, and `events` with boolean cold_user / cold_item columns
    (true for events of users or items absent from train)."""
    train = events.loc[labels == "train"]
    warm_users, warm_items = set(train["user_id"]), set(train["item_id"])
    marked = events.assign(
        cold_user=~events["user_id"].isin(warm_users),
        cold_item=~events["item_id"].isin(warm_items),
    )
    return warm_users, warm_items, marked

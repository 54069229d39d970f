"""Stacking: a LightGBM lambdarank model over per-source scores and ranks plus item and user
features, trained on the validation split's candidates (label: the user chose the item in the
validation period) and applied to the test candidates.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import lightgbm as lgb
import numpy as np
import pandas as pd

from recfusion.config import StackingConfig
from recfusion.fusion.candidates import CandidateSet
from recfusion.fusion.methods import normalised

log = logging.getLogger(__name__)


def feature_matrix(
    cands: CandidateSet, extra: dict[str, np.ndarray]
) -> tuple[np.ndarray, list[str]]:
    """[U * C, F] features of every candidate slot (row-major by user) and their names.

    Args:
        cands: the candidates.
        extra: more [U, C] features (item popularity, ranking-model probabilities, ...).
    """
    names, columns = [], []
    for name in cands.scores:
        # ranks and per-user normalised scores: raw scores shift between the validation period
        # (models fitted on train) and the test period (refitted on train + validation)
        names += [f"{name}_norm", f"{name}_rank"]
        columns += [normalised(cands, name), cands.ranks[name].astype(np.float32)]
    for name, value in extra.items():
        names.append(name)
        columns.append(value.astype(np.float32))
    x = np.stack([c.reshape(-1) for c in columns], axis=1).astype(np.float32)
    return x, names


def labels_of(cands: CandidateSet, relevant: Sequence[np.ndarray]) -> np.ndarray:
    """[U, C] 1 where the candidate is relevant for the user."""
    out = np.zeros(cands.items.shape, dtype=np.int32)
    for u, rel in enumerate(relevant):
        out[u] = np.isin(cands.items[u], rel) & (cands.items[u] >= 0)
    return out


def fit_stacker(cands: CandidateSet, extra: dict[str, np.ndarray], relevant: Sequence[np.ndarray],
                params: StackingConfig, seed: int) -> lgb.LGBMRanker:  # fmt: skip
    """Trains lambdarank on users with at least one relevant candidate; a fifth of them are held
    out for early stopping."""
    x, names = feature_matrix(cands, extra)
    y = labels_of(cands, relevant)
    width = cands.items.shape[1]
    users = np.flatnonzero(y.sum(axis=1) > 0)
    if len(users) < 10:
        raise ValueError(f"only {len(users)} validation users have a relevant candidate: "
                         "too few to train the stacker")  # fmt: skip
    rng = np.random.default_rng(seed)
    rng.shuffle(users)
    n_hold = max(1, len(users) // 5)
    parts = {"train": np.sort(users[n_hold:]), "hold": np.sort(users[:n_hold])}

    def select(us: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[int]]:
        idx = (us[:, None] * width + np.arange(width)[None, :]).reshape(-1)
        valid = cands.valid[us].reshape(-1)
        counts = cands.valid[us].sum(axis=1).tolist()
        return x[idx[valid]], y[us].reshape(-1)[valid], counts

    xt, yt, gt = select(parts["train"])
    xh, yh, gh = select(parts["hold"])
    xt, xh = pd.DataFrame(xt, columns=names), pd.DataFrame(xh, columns=names)
    model = lgb.LGBMRanker(
        objective="lambdarank",
        num_leaves=params.num_leaves,
        learning_rate=params.learning_rate,
        n_estimators=params.n_estimators,
        min_child_samples=params.min_child_samples,
        random_state=seed,
        deterministic=True,
        force_row_wise=True,
        n_jobs=2,
        verbose=-1,
    )
    model.fit(xt, yt, group=gt, eval_X=(xh,), eval_y=(yh,), eval_group=[gh], eval_at=[10],
              callbacks=[lgb.early_stopping(params.early_stopping_rounds, verbose=False)])  # fmt: skip
    log.info("stacker: %d trees, held-out ndcg@10 %.4f", model.best_iteration_ or params.n_estimators,
             model.best_score_.get("valid_0", {}).get("ndcg@10", float("nan")))  # fmt: skip
    return model


def stack_scores(model: lgb.Booster, cands: CandidateSet, extra: dict[str, np.ndarray]
                 ) -> np.ndarray:  # fmt: skip
    """[U, C] stacker scores (empty slots get -inf)."""
    x, names = feature_matrix(cands, extra)
    scores = np.asarray(model.predict(pd.DataFrame(x, columns=names))).reshape(cands.items.shape)
    return np.where(cands.valid, scores, -np.inf)


def context_features(cands: CandidateSet, item_pop: np.ndarray, item_age_days: np.ndarray,
                     user_activity: np.ndarray) -> dict[str, np.ndarray]:  # fmt: skip
    """[U, C] item popularity (log), days since the item was last chosen, the user's activity
    (log number of history items) and whether the item is cold (never chosen)."""
    items = np.maximum(cands.items, 0)
    return {
        "item_log_popularity": np.log1p(item_pop[items]),
        "item_days_since_last": item_age_days[items],
        "item_is_cold": (item_pop[items] == 0).astype(np.float32),
        "user_log_activity": np.broadcast_to(
            np.log1p(user_activity[cands.rows])[:, None], cands.items.shape
        ),  # fmt: skip
    }

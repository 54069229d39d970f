"""Metrics per slice of users (cold / warm, demographic groups) and of items (long tail), with
the largest gap between the groups of each attribute (a fairness signal)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from recfusion.evaluation.metrics import ndcg_per_user
from recfusion.models.dataset import ModelData, PreparedData

MIN_GROUP_USERS = 20  # smaller groups are reported but left out of the gap (too noisy)


def age_band(age: float | None) -> str:
    if age is None or age != age:
        return "unknown"
    return "<25" if age < 25 else "25-34" if age < 35 else "35-49" if age < 50 else "50+"


def slice_ndcg(
    ranked: np.ndarray,
    relevant: Sequence[np.ndarray],
    groups: dict[str, dict[str, np.ndarray]],
    tail: np.ndarray,
    k: int,
) -> dict:
    """NDCG@k per group of each attribute, the gap (max - min over groups of at least
    MIN_GROUP_USERS users) per attribute, and NDCG@k on the long-tail items only (relevant items
    restricted to `tail`).

    Args:
        ranked: [U, >=k] top lists.
        relevant: per user, relevant catalogue positions.
        groups: attribute -> group name -> boolean mask over the users.
        tail: [n_items] True for long-tail items.
    """
    rel_sizes = np.array([len(r) for r in relevant])
    per_user = np.full(len(relevant), np.nan)
    per_user[rel_sizes > 0] = ndcg_per_user(ranked, relevant, k)
    out: dict = {}
    for attribute, masks in groups.items():
        values = {g: float(np.nanmean(per_user[m])) for g, m in masks.items()
                  if m.any() and np.isfinite(per_user[m]).any()}  # fmt: skip
        sizes = {g: int(m.sum()) for g, m in masks.items()}
        counted = [v for g, v in values.items() if sizes[g] >= MIN_GROUP_USERS]
        gap = float(max(counted) - min(counted)) if len(counted) > 1 else 0.0
        out[attribute] = {"groups": values, "users": sizes, "gap": gap}
    tail_rel = [r[tail[r]] for r in relevant]
    has = np.array([len(r) > 0 for r in tail_rel])
    out["long_tail_items"] = {
        "ndcg": float(ndcg_per_user(ranked[has], [tail_rel[i] for i in np.flatnonzero(has)],
                                    k).mean()) if has.any() else float("nan"),
        "users": int(has.sum()),
    }  # fmt: skip
    return out


def user_groups(prepared: PreparedData, data: ModelData, rows: np.ndarray) -> dict:
    """Attribute -> group -> [U] mask over user `rows`: cold start, gender, age band."""
    users = prepared.users.set_index("user_id").reindex(data.users.user_ids[rows])
    cold = data.users.id_idx[rows] == 0
    gender = users["gender"].fillna("unknown").astype(str).to_numpy()
    band = np.array([age_band(a) for a in users["age"].astype("float64")])
    return {
        "cold_start": {"cold": cold, "warm": ~cold},
        "gender": {g: gender == g for g in sorted(set(gender))},
        "age_band": {b: band == b for b in sorted(set(band))},
    }

"""Metrics per slice of users (cold / warm, demographic groups) and of items (long tail), with
the largest gap between the groups of each attribute (a fairness signal)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from recfusion.metrics.ranking import ndcg_per_user
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
    return summarise_slices(slice_ndcg_per_user(ranked, relevant, groups, tail, k), groups)


def summarise_slices(per: dict[str, np.ndarray], groups: dict[str, dict[str, np.ndarray]]) -> dict:
    """`slice_ndcg`'s report from the per-user vectors of `slice_ndcg_per_user`."""
    out: dict = {}
    for attribute, masks in groups.items():
        of = {g: per[f"{attribute}={g}"] for g in masks}
        values = {g: float(np.nanmean(v)) for g, v in of.items() if np.isfinite(v).any()}
        sizes = {g: int(m.sum()) for g, m in masks.items()}
        counted = [v for g, v in values.items() if sizes[g] >= MIN_GROUP_USERS]
        gap = float(max(counted) - min(counted)) if len(counted) > 1 else 0.0
        out[attribute] = {"groups": values, "users": sizes, "gap": gap}
    tail_users = per["long_tail_items"]
    out["long_tail_items"] = {
        "ndcg": float(tail_users.mean()) if len(tail_users) else float("nan"),
        "users": len(tail_users),
    }
    return out


def slice_ndcg_per_user(
    ranked: np.ndarray,
    relevant: Sequence[np.ndarray],
    groups: dict[str, dict[str, np.ndarray]],
    tail: np.ndarray,
    k: int,
) -> dict[str, np.ndarray]:
    """Per slice ("attribute=group", and "long_tail_items" for the users with a long-tail
    positive), NDCG@k of each of its users in user order, NaN for a user without relevant items.
    A slice's NDCG@k is the nanmean; two models scored on the same users give paired vectors."""
    rel_sizes = np.array([len(r) for r in relevant])
    per_user = np.full(len(relevant), np.nan)
    per_user[rel_sizes > 0] = ndcg_per_user(ranked, relevant, k)
    out = {f"{attribute}={g}": per_user[m] for attribute, masks in groups.items()
           for g, m in masks.items()}  # fmt: skip
    tail_rel = [r[tail[r]] for r in relevant]
    has = np.flatnonzero([len(r) > 0 for r in tail_rel])
    out["long_tail_items"] = (ndcg_per_user(ranked[has], [tail_rel[i] for i in has], k)
                              if len(has) else np.zeros(0))  # fmt: skip
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

"""Numeric normalisation and id / token vocabularies.

Id vocabularies hold only what train saw (so val/test ids outside them are exactly the flagged
cold-start ones); content vocabularies (categories, brands, title tokens) cover the whole
catalogue, because an item's content is known the moment it is listed.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable

import numpy as np
import pandas as pd

from recfusion.preparation.clean import UNKNOWN

TOKEN_RE = re.compile(r"[a-z0-9]+")


def tokenize(text: str) -> list[str]:
    """Lower-cased alphanumeric tokens: "Zorvo Wireless-headphones X2" -> [zorvo, wireless,
    headphones, x2]."""
    return TOKEN_RE.findall(str(text).lower())


def item_text(items: pd.DataFrame) -> pd.Series:
    """The text an item's tokens come from: its title, plus its genres when the source has them."""
    text = items["title"].fillna("").astype(str)
    if "genres" in items.columns:
        text = text + " " + items["genres"].fillna("").astype(str).str.replace("|", " ")
    return text


def category_levels(category: str) -> list[str]:
    """Every prefix of a category path: "a>b>c" -> ["a", "a>b", "a>b>c"]."""
    parts = [p.strip() for p in str(category).split(">") if p.strip()]
    return [">".join(parts[: i + 1]) for i in range(len(parts))]


def zscore(values: pd.Series) -> tuple[pd.Series, dict[str, float]]:
    """(values - mean) / std, with std 1 for a constant column; returns the stats too."""
    x = values.astype("float64")
    mean = float(x.mean()) if len(x) else 0.0
    std = float(x.std(ddof=0)) if len(x) else 1.0
    std = std if std > 0 and np.isfinite(std) else 1.0
    return (x - mean) / std, {"mean": mean, "std": std}


def quantile_buckets(values: pd.Series, n: int) -> tuple[pd.Series, list[float]]:
    """Bucket index 0..n-1 by quantile edges (ties share a bucket); returns the inner edges."""
    if n < 1:
        raise ValueError(f"prepare.price_buckets must be >= 1, got {n}")
    x = values.astype("float64").to_numpy()
    if len(x) == 0:
        return pd.Series([], dtype="int64"), []
    edges = np.unique(np.quantile(x, np.linspace(0, 1, n + 1)[1:-1]))
    return pd.Series(np.searchsorted(edges, x, side="right"), index=values.index), edges.tolist()


def add_item_features(items: pd.DataFrame, price_buckets: int) -> tuple[pd.DataFrame, dict]:
    """Adds price_norm (z-score of log1p price), price_bucket and the category levels."""
    log_price = np.log1p(items["price"].astype("float64").clip(lower=0))
    price_norm, price_stats = zscore(log_price)
    bucket, edges = quantile_buckets(items["price"], price_buckets)
    levels = items["category"].map(category_levels)
    out = items.assign(
        price_norm=price_norm,
        price_bucket=bucket.astype("int64"),
        category_l1=levels.map(lambda lv: lv[0] if lv else ""),
        category_l2=levels.map(lambda lv: lv[min(1, len(lv) - 1)] if lv else ""),
    )
    return out, {"log1p_price": price_stats, "price_bucket_edges": edges}


def add_user_features(users: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
    """Adds age_norm (z-score; 0 where age is unknown)."""
    age = users["age"].astype("float64")
    _, stats = zscore(age.dropna())
    out = users.assign(age_norm=((age - stats["mean"]) / stats["std"]).fillna(0.0))
    return out, {"age": stats}


def build_vocab(values: Iterable[str], min_count: int = 1) -> list[str]:
    """Sorted distinct values seen at least `min_count` times."""
    counts = Counter(v for v in values if v is not None and v == v)
    return sorted(v for v, c in counts.items() if c >= min_count)


def build_vocabularies(
    train_events: pd.DataFrame, users: pd.DataFrame, items: pd.DataFrame, min_token_count: int
) -> dict[str, list[str]]:
    """Every vocabulary the models use, by name."""
    return {
        "user_id": build_vocab(train_events["user_id"]),
        "item_id": build_vocab(train_events["item_id"]),
        "category": build_vocab(lv for c in items["category"] for lv in category_levels(c)),
        # a missing brand is no brand: the fill token stays out, so it maps to index 0, which
        # no brand rule (the cascade's cap per brand) counts as a brand
        "brand": build_vocab(b for b in items["brand"].astype(str) if b != UNKNOWN),
        "token": build_vocab(
            (t for text in item_text(items) for t in tokenize(text)), min_count=min_token_count
        ),
        "gender": build_vocab(users["gender"].astype(str)),
        "region": build_vocab(users["region"].astype(str)),
    }

"""Split methods on hand-made logs whose expected labels are worked out in comments."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recfusion.config import SplitConfig
from recfusion.preparation.split import mark_cold, split_counts, split_events, split_queries


def events_frame(rows: list[tuple[str, str, int]]) -> pd.DataFrame:
    """rows of (user, item, day) -> events on 2024-01-<day>."""
    return pd.DataFrame(
        {
            "user_id": [r[0] for r in rows],
            "item_id": [r[1] for r in rows],
            "event_type": "view",
            "timestamp": [pd.Timestamp(2024, 1, r[2]) for r in rows],
            "split": None,
        }
    )


def cfg(method: str, **kw) -> SplitConfig:
    base = dict(method=method, val_frac=0.2, test_frac=0.2, last_n=1, min_train_events=1)
    return SplitConfig(**{**base, **kw})


def test_temporal_cut_has_no_leakage() -> None:
    # ten events on days 1..10 at 60/20/20: the val cut is sorted time index floor(10 * 0.6) = 6
    # (day 7), the test cut index floor(10 * 0.8) = 8 (day 9) -> 6 train, 2 val, 2 test
    ev = events_frame([(f"u{d % 3}", f"i{d}", d) for d in range(1, 11)])
    result = split_events(ev, cfg("temporal"), seed=0)
    assert result.labels.tolist() == ["train"] * 6 + ["val"] * 2 + ["test"] * 2
    assert result.cuts == {"val_cut": "2024-01-07 00:00:00", "test_cut": "2024-01-09 00:00:00"}
    train_max = ev.loc[result.labels == "train", "timestamp"].max()
    test_min = ev.loc[result.labels == "test", "timestamp"].min()
    assert train_max < test_min


def test_temporal_on_synthetic_never_puts_test_before_cut(tiny_tables) -> None:
    ev = tiny_tables["events"]
    result = split_events(ev, cfg("temporal", val_frac=0.1, test_frac=0.1), seed=0)
    test_cut = pd.Timestamp(result.cuts["test_cut"])
    assert (ev.loc[result.labels == "test", "timestamp"] >= test_cut).all()
    assert (ev.loc[result.labels != "test", "timestamp"] < test_cut).all()
    share = (result.labels == "test").mean()
    assert 0.08 < share < 0.12


def test_leave_last_n() -> None:
    # u1 has 4 events (days 1..4): last -> test, one before -> val, two in train.
    # u2 has 2 events: leaving 2 out would leave 0 train events (< min 1), so all train.
    ev = events_frame([("u1", "a", 3), ("u1", "b", 1), ("u2", "c", 5), ("u1", "d", 4),
                       ("u1", "e", 2), ("u2", "f", 6)])  # fmt: skip
    labels = split_events(ev, cfg("leave_last_n"), seed=0).labels
    assert labels.tolist() == ["val", "train", "train", "test", "train", "train"]


@pytest.mark.parametrize(
    ("total", "expected"),
    [
        (10, (8, 1, 1)),  # floor(1.0) each for val and test, no bumps needed
        (5, (3, 1, 1)),  # floor gives (5, 0, 0); test (0.5) then val (0.5) round up to one each
        (3, (1, 1, 1)),  # (3, 0, 0) -> test bump (2, 0, 1) -> train still > 1 -> val bump
        (2, (1, 0, 1)),  # (2, 0, 0) -> test bump (1, 0, 1) -> train is 1, RecBole stops
        (1, (1, 0, 0)),  # a single event stays in train
    ],
)
def test_split_counts_follow_recbole(total: int, expected: tuple[int, int, int]) -> None:
    counts = split_counts(np.array([total]), (0.8, 0.1, 0.1))[0]
    assert tuple(int(c) for c in counts) == expected


def test_random_ratio_per_user_counts_and_seed() -> None:
    ev = events_frame([("u1", f"i{k}", k + 1) for k in range(10)] +
                      [("u2", f"j{k}", k + 1) for k in range(5)])  # fmt: skip
    a = split_events(ev, cfg("random_ratio", val_frac=0.1, test_frac=0.1), seed=1).labels
    b = split_events(ev, cfg("random_ratio", val_frac=0.1, test_frac=0.1), seed=1).labels
    c = split_events(ev, cfg("random_ratio", val_frac=0.1, test_frac=0.1), seed=2).labels
    assert a.equals(b) and not a.equals(c)
    u1 = a[ev.user_id == "u1"].value_counts().to_dict()
    u2 = a[ev.user_id == "u2"].value_counts().to_dict()
    assert u1 == {"train": 8, "val": 1, "test": 1}
    assert u2 == {"train": 3, "val": 1, "test": 1}


def test_predefined_uses_split_column_and_rejects_gaps() -> None:
    ev = events_frame([("u1", "a", 1), ("u1", "b", 2), ("u2", "c", 3)])
    ev["split"] = ["train", "test", "val"]
    assert split_events(ev, cfg("predefined"), 0).labels.tolist() == ["train", "test", "val"]
    ev.loc[2, "split"] = None
    with pytest.raises(ValueError, match="1 events have no split value"):
        split_events(ev, cfg("predefined"), 0)
    with pytest.raises(ValueError, match="no 'split' column"):
        split_events(ev.drop(columns="split"), cfg("predefined"), 0)


def test_bad_fractions_are_rejected() -> None:
    ev = events_frame([("u1", "a", 1)])
    with pytest.raises(ValueError, match="sum below 1"):
        split_events(ev, cfg("temporal", val_frac=0.6, test_frac=0.5), 0)


def test_mark_cold() -> None:
    ev = events_frame([("u1", "a", 1), ("u2", "b", 2), ("u1", "b", 3)])
    labels = pd.Series(["train", "test", "test"])
    warm_users, warm_items, marked = mark_cold(ev, labels)
    assert warm_users == {"u1"} and warm_items == {"a"}
    assert marked["cold_user"].tolist() == [False, True, False]
    assert marked["cold_item"].tolist() == [False, True, True]


def test_queries_follow_event_cuts() -> None:
    q = pd.DataFrame({"timestamp": [pd.Timestamp(2024, 1, d) for d in (1, 6, 9)]})
    labels = split_queries(q, {"val_cut": "2024-01-06", "test_cut": "2024-01-08"}, 0.2, 0.2)
    assert labels.tolist() == ["train", "val", "test"]

"""Cleaning policies, row conservation and the prepare stage's outputs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recfusion.config import MissingConfig
from recfusion.preparation.clean import Ledger, clean_events, clean_items, clean_users
from recfusion.preparation.vocab import category_levels, quantile_buckets, tokenize, zscore
from recfusion.stages import prepare
from tests.conftest import repo_config


def corrupt(tables: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """Copies of `tables` with known faults: 5 duplicate events, 3 events of an unknown user,
    2 of an unknown item, 4 with a bad event type, 1 without timestamp; 1 duplicate user id;
    2 items with a negative price; 3 users without age."""
    ev = tables["events"].copy()
    bad = ev.head(15).copy()
    bad.loc[bad.index[5:8], "user_id"] = "ghost"
    bad.loc[bad.index[8:10], "item_id"] = "phantom"
    bad.loc[bad.index[10:14], "event_type"] = "teleport"
    bad.loc[bad.index[14], "timestamp"] = pd.NaT
    users = tables["users"].copy()
    users.loc[users.index[:3], "age"] = pd.NA
    users = pd.concat([users, users.tail(1)], ignore_index=True)
    items = tables["items"].copy()
    items.loc[items.index[-2:], "price"] = -1.0
    return {
        "users": users,
        "items": items,
        "events": pd.concat([ev, bad], ignore_index=True),
        "queries": tables["queries"].copy(),
    }


def test_cleaning_conserves_rows_and_names_reasons(tiny_tables) -> None:
    tables = corrupt(tiny_tables)
    ledger = Ledger()
    users = clean_users(tables["users"], MissingConfig("median", "unknown"), ledger)
    items = clean_items(tables["items"], MissingConfig("median", "unknown"), ledger)
    clean_events(tables["events"], users, items, True, ledger)
    ledger.check()
    d = ledger.as_dict()
    assert d["users"]["dropped"] == {"duplicate_user_id": 1}
    assert d["users"]["filled"]["age"] >= 3
    assert d["items"]["dropped"] == {"negative_price": 2}
    ev = d["events"]["dropped"]
    assert ev["duplicate"] == 5
    assert ev["unknown_user"] == 3
    assert ev["bad_event_type"] == 4
    assert ev["missing_timestamp"] == 1
    # 2 "phantom" rows plus the real events of the 2 dropped negative-price items
    assert ev["unknown_item"] >= 2
    for t in d.values():
        assert t["rows_in"] == t["rows_out"] + t["dropped_total"]


def test_drop_policy_drops_instead_of_filling(tiny_tables) -> None:
    users = tiny_tables["users"].copy()
    users.loc[users.index[:4], "age"] = pd.NA
    n_missing = int(users["age"].isna().sum())
    ledger = Ledger()
    out = clean_users(users, MissingConfig("drop", "unknown"), ledger)
    assert len(out) == len(users) - n_missing
    assert ledger.tables["users"].dropped["missing_age"] == n_missing
    assert out["age"].notna().all()


def test_ledger_check_catches_lost_rows() -> None:
    ledger = Ledger()
    t = ledger.start("events", pd.DataFrame({"a": range(3)}))
    t.rows_out = 2
    with pytest.raises(RuntimeError, match="rows were lost without a reason"):
        ledger.check()


def test_prepare_run_outputs(tiny_tables) -> None:
    cfg = repo_config()
    p = prepare.run(cfg, corrupt(tiny_tables))
    s = p.summary
    ev_out = s["tables"]["events"]["rows_out"]
    assert sum(v["events"] for v in s["splits"].values()) == ev_out
    assert s["tables"]["events"]["rows_in"] == ev_out + s["tables"]["events"]["dropped_total"]
    # no val/test id outside the vocabularies except the flagged cold-start ones
    user_vocab, item_vocab = set(p.vocabularies["user_id"]), set(p.vocabularies["item_id"])
    for name in ("val", "test"):
        df = p.splits[name]
        assert (~df["user_id"].isin(user_vocab) == df["cold_user"]).all()
        assert (~df["item_id"].isin(item_vocab) == df["cold_item"]).all()
    assert not p.splits["train"][["cold_user", "cold_item"]].any().any()
    assert p.users["is_cold"].sum() == s["cold_users"] > 0
    assert p.items["is_cold"].sum() == s["cold_items"] > 0
    # normalised features
    assert abs(p.items["price_norm"].mean()) < 1e-9
    assert set(p.items["price_bucket"]) == set(range(cfg.prepare.price_buckets))
    assert p.users["age"].notna().all()
    # inputs are not modified
    assert "cold_user" not in tiny_tables["events"].columns


def test_prepare_writes_files(tmp_path, tiny_tables) -> None:
    p = prepare.run(repo_config(), tiny_tables)
    prepare.write_outputs(p, tmp_path / "prepared", tmp_path / "reports")
    for name in ("train", "val", "test", "users", "items", "queries"):
        assert (tmp_path / "prepared" / f"{name}.parquet").is_file()
    vocab = (tmp_path / "prepared" / "vocab" / "item_id.txt").read_text().splitlines()
    assert vocab == p.vocabularies["item_id"]
    assert (tmp_path / "reports" / "prepare.json").is_file()


@pytest.mark.parametrize("method", ["leave_last_n", "random_ratio"])
def test_prepare_with_other_splits(tiny_tables, method: str) -> None:
    p = prepare.run(repo_config({"prepare": {"split": {"method": method}}}), tiny_tables)
    assert all(len(df) > 0 for df in p.splits.values())
    assert p.summary["cuts"] == {}


def test_vocab_helpers() -> None:
    assert tokenize("Zorvo Wireless-headphones X2") == ["zorvo", "wireless", "headphones", "x2"]
    assert category_levels("a>b>c") == ["a", "a>b", "a>b>c"]
    z, stats = zscore(pd.Series([1.0, 3.0]))  # mean 2, population std 1
    assert z.tolist() == [-1.0, 1.0] and stats == {"mean": 2.0, "std": 1.0}
    buckets, edges = quantile_buckets(pd.Series([1.0, 2.0, 3.0, 4.0]), 2)  # median edge 2.5
    assert buckets.tolist() == [0, 0, 1, 1] and edges == [2.5]
    assert np.isclose(zscore(pd.Series([5.0, 5.0]))[1]["std"], 1.0)  # constant column

"""Every stage's `run` chained in one process on the tiny synthetic tables, as Kedro's starters
test a pipeline in memory: each stage gets the previous stages' outputs as objects (the only
file hop is the retrieval export, which the later stages use as a SavedModel), so the stage
logic is tested without DVC, subprocesses or a tracking server. What only DVC, MLflow and the
servers can show stays in tests/e2e and tests/flows.

The two-tower model is the session's `trained_retrieval` (train_retrieval.run on the same data
with the same settings); the other models train here with few epochs.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recfusion.config import RANKING_METRICS, with_overrides
from recfusion.data.schema import SPLITS, TABLES
from recfusion.evaluation import header
from recfusion.evaluation.search_report import HISTORY as SEARCH_HISTORY
from recfusion.fusion.assemble import SubModels, period
from recfusion.models.dataset import build_model_data
from recfusion.models.export import load_retrieval
from recfusion.models.tags import TagHead, item_tags, load_frozen_user_tower
from recfusion.models.towers import TowerSizes
from recfusion.registry.gate import Infra
from recfusion.registry.tracking import lineage_tags
from recfusion.search.searcher import personalise
from recfusion.serving.recommender import Recommender
from recfusion.serving.scoring import build_test_set, score_recommender
from recfusion.serving.store import StoreError, materialize, prepared_store, write_store
from recfusion.stages import (
    evaluate,
    fuse,
    gate,
    ingest,
    package,
    prepare,
    register,
    train_ranking,
    train_retrieval,
    train_search,
    train_tags,
    validate,
    validate_prepared,
)
from tests.conftest import REPO, repo_config
from tests.model.conftest import TRAIN, prepared_data

NOW = pd.Timestamp("2026-06-01")  # "now" for the validation suites' future-date checks
# the model tests' retrieval settings (the session model), few epochs for the rest
CHAIN = {
    "train": {
        **TRAIN["train"],
        "ranking": {"epochs": 2},
        "tags": {"epochs": 10},
        "search": {"epochs": 3},
    },
    "evaluate": {"bootstrap_samples": 200},
    "registry": {"gate": {"bootstrap_samples": 200}},
}


def in_unit_interval(metrics: dict[str, float]) -> bool:
    return all(0.0 <= v <= 1.0 for v in metrics.values())


def test_every_stage_runs_in_memory(tiny_tables, tiny_model_data, trained_retrieval,
                                    tmp_path: Path) -> None:  # fmt: skip
    cfg = repo_config(CHAIN)

    # ingest: the generator's tables are the source
    ingested = ingest.run(cfg, tiny_tables)
    assert ingested.info["rows"] == {name: len(tiny_tables[name]) for name in TABLES}
    assert all(len(ingested.tables[name]) for name in TABLES)

    # validate: good data passes; every row is either clean or quarantined
    checked = validate.run(cfg, validate.RawInputs(ingested.tables,
                                                   validate.read_suites(REPO / "expectations")),
                           docs_dir=tmp_path / "docs_raw", now=NOW)  # fmt: skip
    assert not checked.stopped and checked.summary["success"]
    for d in checked.decisions.values():
        assert d.rows_in == len(d.clean) + len(d.quarantined) > 0
    validated = {name: d.clean for name, d in checked.decisions.items()}

    # prepare: rows in = rows out + rows dropped, per table; the splits hold every kept event
    prepared = prepare.run(cfg, validated)
    for name, t in prepared.summary["tables"].items():
        assert t["rows_in"] == t["rows_out"] + t["dropped_total"], name
    events_out = prepared.summary["tables"]["events"]["rows_out"]
    assert sum(len(prepared.splits[s]) for s in SPLITS) == events_out > 0

    # validate_prepared: no leakage, cold ids flagged, no drift
    vocab = {name: prepared.vocabularies[name] for name in ("user_id", "item_id")}
    checked_prepared = validate_prepared.run(
        cfg,
        validate_prepared.PreparedInputs(prepared.splits, prepared.items, vocab,
                                         prepared.summary["cuts"],
                                         validate_prepared.read_suite(REPO / "expectations")),
        docs_dir=tmp_path / "docs_prepared",
    )  # fmt: skip
    assert not checked_prepared.stopped, checked_prepared.summary["stop_reasons"]

    # the model data, as every training stage's read_inputs builds it from prepare's outputs
    prep = prepared_data(prepared)
    data = build_model_data(prep, cfg.train)

    # train_retrieval: the session's run, on the same data and settings as this chain
    _, session_data = tiny_model_data
    assert list(data.catalog.item_ids) == list(session_data.catalog.item_ids)
    assert all(data.pairs[s].equals(session_data.pairs[s]) for s in SPLITS)
    retrieval = trained_retrieval
    assert retrieval.report["best_epoch"] >= 1
    assert in_unit_interval(retrieval.report["test"]["all"]["two_tower"])
    train_retrieval.write_outputs(retrieval, tmp_path / "models/retrieval", tmp_path / "reports")
    export = load_retrieval(data, tmp_path / "models/retrieval")
    assert export.items.shape == (len(data.catalog), retrieval.meta["sizes"]["dim"])

    # train_ranking: hard negatives from the exported retrieval model
    ranking = train_ranking.run(cfg, train_ranking.RankingInputs(
        prep, data, retrieval.meta["sizes"]["dim"], export.encode, export.item_index,
        tmp_path / "ranking_backup"))  # fmt: skip
    assert ranking.report["hard_negatives"]
    assert set(ranking.report["heads"]) == set(ranking.heads) and ranking.heads
    for head, r in ranking.report["heads"].items():
        assert r["examples"] > 0, head
        if "auc" in r:
            assert 0.0 <= r["auc"] <= 1.0, head

    # train_tags: the head on the user tower, frozen as train_tags.read_inputs freezes it
    sizes = TowerSizes(**retrieval.meta["sizes"])
    tower = load_frozen_user_tower(sizes, tmp_path / "models/retrieval/weights/towers",
                                   retrieval.meta["history_len"])  # fmt: skip
    tags = train_tags.run(cfg, train_tags.TagsInputs(data, tower, retrieval.meta["sizes"]))
    assert len(tags.names) == tags.report["tags"] > 1
    assert in_unit_interval({k: v for k, v in tags.report["all"]["model"].items()
                             if isinstance(v, float)})  # fmt: skip
    tag_of_item, categories = item_tags(data, tags.meta["level"])
    models = SubModels(export, ranking.model, TagHead(tags.fitted.head, tag_of_item, categories))

    # train_search: query tower, BM25 and the weights chosen on validation queries
    search = train_search.run(cfg, train_search.SearchInputs(
        data, prepared.items, prepared.queries, export.items, export.item_index,
        ranking.model))  # fmt: skip
    assert search.searcher.tower is not None and search.report["train_queries"] > 0
    for variant, m in search.report["val"].items():
        assert in_unit_interval(m), variant

    # fuse: weights and stacker fitted on the validation period
    fused = fuse.run(cfg, fuse.FuseInputs(data, models))
    assert set(fused.fitted.weights) == set(cfg.fusion.sources)
    assert fused.report["stacker_trees"] > 0 and fused.report["validation_users"] > 0
    for name, m in fused.report["validation"].items():
        assert in_unit_interval(m), name
    # fusion.max_users: fuse fits on a seeded sample of the validation users
    few_users = with_overrides(cfg, {"fusion": {"max_users": 40}})
    assert fused.report["validation_users"] > 40
    assert fuse.run(few_users, fuse.FuseInputs(data, models)).report["validation_users"] == 40

    # evaluate: every source and method on the test users, and search on the test queries
    searcher = personalise(search.searcher, ranking.model, data, SEARCH_HISTORY)
    about = header.Provenance("abc123", False, "2026-06-01 12:00 UTC", "synthetic, size tiny")
    evaluation = evaluate.run(cfg, evaluate.EvaluateInputs(
        prep, data, models, fused.fitted, searcher, prepared.queries, ranking.report, about,
        b"test-key"))  # fmt: skip
    result = evaluation.result
    packaged = f"fusion:{cfg.fusion.method}"
    assert result["packaged"] == packaged and result["test_users"] > 0
    assert result["test_users_total"] == result["test_users"]  # below evaluate.max_users
    ci = result["packaged_ndcg@10_interval"]
    assert (
        ci["low"] <= result["methods"][packaged]["ndcg@10"] <= ci["high"] and ci["low"] < ci["high"]
    )
    assert {f"source:{s}" for s in cfg.fusion.sources} < set(result["methods"])
    for name, m in result["methods"].items():
        ranking_only = {k: v for k, v in m.items() if k.split("@")[0] in RANKING_METRICS}
        assert len(ranking_only) == len(RANKING_METRICS) * len(cfg.evaluate.ks), name
        assert in_unit_interval(ranking_only), name
        assert 0.0 < m["coverage@10"] <= 1.0, name
    assert len(result["examples"]) == min(cfg.evaluate.example_users, result["test_users"])
    assert all(r["reason"] for ex in result["examples"] for r in ex["recommendations"])
    # the examples name users by keyed pseudonym: no raw id in the report (recfusion.privacy)
    assert all(ex["user"].startswith("user-") and "user_id" not in ex for ex in result["examples"])
    assert result["search"]["test_queries"] > 0 and "ranking_heads" in result
    assert evaluation.ks == sorted(cfg.evaluate.ks)
    evaluate.write_outputs(evaluation, tmp_path / "reports")
    page = (tmp_path / "reports/evaluation.html").read_text()
    assert "git abc123" in page and f"{packaged} (params.yaml fusion.method)" in page
    assert "abc123" not in (tmp_path / "reports/metrics.json").read_text()
    assert (tmp_path / "reports/plots/slices.csv").is_file()

    # register's pure part: what it would log (no tracking store here)
    registration = register.run(cfg, register.RegisterInputs(
        result, lineage_tags(tmp_path, cfg, checked.summary)))  # fmt: skip
    assert registration.params["fusion.method"] == cfg.fusion.method
    assert registration.metrics and all(np.isfinite(list(registration.metrics.values())))
    assert registration.tags["gx.success"] == "true"
    # the logged input example names no customer
    assert not set(registration.input_example["user_id"]) & set(data.users.user_ids)
    card = registration.model_card("7")
    assert f"method `{cfg.fusion.method}`" in card
    assert f"{cfg.registry.model_name} version 7" in card
    assert list(registration.input_example.columns) == ["user_id", "k", "query", "exclude"]

    # gate's pure part: the packaged recommender assembled from these parts, scored through its
    # request interface against itself as the champion (so every paired interval is zero)
    # (the package stage's fitted state, and a store knowing users by train + validation events)
    fitted = package.run(cfg, data, b"test-key")
    store = prepared_store(prep, gate.EVAL_HISTORY, b"test-key", tmp_path / "store.sqlite")
    candidate = Recommender.assemble(cfg, fitted, models, fused.fitted, search.searcher, store)
    candidate.warm_up()  # the models traced before the first request; the store untouched
    assert store.lookup(["warm-up-0", "warm-up-1"]).events.empty
    test = build_test_set(prep, data, cfg.evaluate.head_share)
    # served through the request interface, the packaged method scores as the evaluate stage
    # measured it (the same fitted state, the same histories)
    served = score_recommender(candidate, test, sorted(cfg.evaluate.ks)).overall
    for metric in ("ndcg@10", "recall@10"):
        assert served[metric] == pytest.approx(result["methods"][packaged][metric], abs=1e-4)
    # evaluate.max_users: evaluate and the gate draw the same test users
    few = period(cfg.fusion, data, ["train", "val"], ["test"], models, 7, cfg.seed).candidates.rows
    sampled = build_test_set(prep, data, cfg.evaluate.head_share, 7, cfg.seed)
    assert len(few) == 7 and list(data.users.user_ids[few]) == list(sampled.user_ids)
    assert set(sampled.user_ids) < set(test.user_ids)
    live_events_change_the_next_answer(candidate, prep, tmp_path / "store.sqlite",
                                       str(test.user_ids[0]))  # fmt: skip
    other_key = prepared_store(prep, gate.EVAL_HISTORY, b"another key", tmp_path / "other.sqlite")
    with pytest.raises(StoreError, match="different pseudonym keys"):
        Recommender.assemble(cfg, fitted, models, fused.fitted, search.searcher, other_key)
    users = test.user_ids[:20]
    answer = candidate.recommend(pd.DataFrame({"user_id": users, "k": 10}))
    assert answer.groupby("user_id").size().reindex(users).tolist() == [10] * len(users)
    registered = {"model_name": cfg.registry.model_name, "version": "2", "run_id": "run",
                  "registered_uri": f"models:/{cfg.registry.model_name}/2"}  # fmt: skip
    decided = gate.run(cfg, gate.GateInputs(registered, test, Infra(True, True, 1.0),
                                            candidate, "1", candidate))  # fmt: skip
    summary = decided.summary
    assert in_unit_interval(summary["candidate"])
    assert summary["candidate"] == summary["production"]
    assert summary["drop_intervals"] and all(lo == hi == 0.0
                                             for lo, hi in summary["drop_intervals"].values())  # fmt: skip
    expected = cfg.registry.gate.auto_promote if decided.decision.passed else "rejected"
    # the test users go in requests of at most serving.max_rows (the default data has 1,276
    # test users and a limit of 1,000): a smaller limit scores the same
    small = dataclasses.replace(candidate, cfg=with_overrides(cfg, {"serving": {"max_rows": 7}}))
    assert len(test.user_ids) > 7
    assert (
        score_recommender(small, test, [10]).overall
        == score_recommender(candidate, test, [10]).overall
    )
    assert decided.outcome == expected, (decided.outcome, decided.decision)
    assert decided.report.startswith(f"# Gate: {cfg.registry.model_name} version 2")


def live_events_change_the_next_answer(recommender: Recommender, prep, path: Path,
                                       user: str) -> None:  # fmt: skip
    """Events written to the store reach the next request (no reload): a known user's list and
    a new user's (no row, only the events) move toward the category the events are in."""
    catalog = recommender.package.catalog
    top_level = catalog.category[:, 0]

    def share(answer: pd.DataFrame, category: int) -> float:
        return float(np.mean(top_level[catalog.positions(answer["item_id"])] == category))

    ask = pd.DataFrame({"user_id": [user, "new-shopper"], "k": 10})
    before = recommender.recommend(ask)
    assert set(before.loc[before["user_id"] == "new-shopper", "reason"]) == {"popular right now"}
    # the top-level category least present in the user's list, and its most popular items
    mine = before[before["user_id"] == user]
    shares = {int(c): share(mine, int(c)) for c in np.unique(top_level) if c > 0}
    target = min(shares, key=lambda c: (shares[c], c))
    order = np.argsort(-recommender.package.counts, kind="stable")
    picked = [i for i in order if top_level[i] == target and catalog.in_stock[i]][:5]
    contents = materialize(prep, gate.EVAL_HISTORY, b"test-key")
    now = pd.Timestamp("2030-01-01", tz="UTC").value
    extra = pd.DataFrame({"user_id": [u for u in (user, "new-shopper") for _ in picked],
                          "item_id": [str(catalog.item_ids[i]) for _ in range(2) for i in picked],
                          "event_type": "click",
                          "timestamp": [now + n for n in range(2 * len(picked))]})  # fmt: skip
    write_store(dataclasses.replace(
        contents, events=pd.concat([contents.events, extra], ignore_index=True)), path)  # fmt: skip
    after = recommender.recommend(ask)
    for who in (user, "new-shopper"):
        was, now_ = before[before["user_id"] == who], after[after["user_id"] == who]
        assert share(now_, target) > share(was, target), (who, target)
        # the clicked items themselves are history now: never recommended back
        assert not set(now_["item_id"]) & {str(catalog.item_ids[i]) for i in picked}
    assert set(after.loc[after["user_id"] == "new-shopper", "reason"]) != {"popular right now"}

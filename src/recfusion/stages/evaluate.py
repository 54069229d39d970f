"""Stage `evaluate`: every candidate source and every fusion method on the same test users.

Reads data/prepared/ (with the query log), models/ (retrieval, ranking, tags, fusion, search)
and reports/ranking.json; for the HTML report's header also the git state and
data/raw/source.json. The test period's sources see train + validation. Writes
- reports/metrics.json (DVC metrics): Recall, Precision, NDCG, MRR, MAP and hit rate at each
  k of `evaluate.ks`; coverage, intra-list diversity, novelty and long-tail share at 10; NDCG@10
  per slice (cold / warm users, gender, age band, long-tail items) with the gap between groups;
  a paired bootstrap interval of each fusion method against the best single source; the ranking
  heads' test metrics;
- reports/plots/ndcg_at_k.csv and reports/plots/slices.csv (DVC plots);
- reports/evaluation.html, a self-contained page with a header (commit, date, data source, the
  packaged method and why it ships), the tables, plots and example recommendations with their
  reasons; the header's date and commit stay out of metrics.json, which stays reproducible;
- search: NDCG@10, MRR@10 and Recall@10 of lexical (BM25), semantic (query tower), hybrid and
  personalised search on the test-split queries (models/search/), in both files.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from recfusion.config import Config
from recfusion.data.io import read_json, read_table, write_json
from recfusion.evaluation import html
from recfusion.evaluation.beyond import (
    coverage,
    intra_list_diversity,
    long_tail_items,
    long_tail_share,
    novelty,
)
from recfusion.evaluation.header import Provenance, describe_source, report_header
from recfusion.evaluation.search_report import HISTORY as SEARCH_HISTORY
from recfusion.evaluation.search_report import evaluate_search, search_section
from recfusion.evaluation.slices import slice_ndcg, user_groups
from recfusion.fusion.assemble import SubModels, load_sub_models, period, purchases
from recfusion.fusion.fused import FittedFusion, rank_all, reasons
from recfusion.fusion.period import Period
from recfusion.metrics.ranking import ndcg_per_user, paired_bootstrap, ranking_metrics
from recfusion.models.dataset import ModelData, PreparedData, build_model_data, read_prepared
from recfusion.paths import MODELS_DIR, PREPARED_DIR, RAW_DIR, REPORTS_DIR
from recfusion.privacy import pseudonym, pseudonym_key
from recfusion.registry.tracking import git_state
from recfusion.search.searcher import Searcher, load_searcher
from recfusion.stages.entry import guarded, stage_config

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EvaluateInputs:
    prepared: PreparedData  # the prepared splits (purchases, user attributes)
    data: ModelData  # the same as the models see it
    models: SubModels  # retrieval, ranking and tag models
    fusion: FittedFusion  # fuse's weights and stacker
    searcher: Searcher  # train_search's, personalised for users known by SEARCH_HISTORY
    queries: pd.DataFrame  # the prepared query log, with its split column
    ranking_report: dict | None  # reports/ranking.json, when train_ranking wrote one
    provenance: Provenance  # commit, date and data source, for the HTML report's header
    pseudonym_key: bytes  # the key of the user pseudonyms the report shows (recfusion.privacy)


@dataclass(frozen=True)
class Evaluation:
    result: dict[str, Any]  # reports/metrics.json
    ranking_report: dict | None  # the ranking heads' section of the HTML report
    ks: list[int]  # evaluate.ks, sorted
    header: str  # the HTML report's header: what was evaluated, and why the packaged method


def evaluate_all(cfg: Config, prepared: PreparedData, data: ModelData, test: Period,
                 fitted: FittedFusion, item_embeddings: np.ndarray,
                 pseudonym_key: bytes) -> dict[str, Any]:  # fmt: skip
    """Every metric of the stage docstring for every source and method; the example lists name
    their users by pseudonym (recfusion.privacy)."""
    ks = sorted(cfg.evaluate.ks)
    c, rel = test.candidates, test.relevant
    bought = purchases(prepared, data, ["train", "val"], c.rows)
    rankings = rank_all(test, fitted, cfg.fusion, data, item_embeddings, bought, max(ks))
    counts = np.asarray(test.history.matrix.sum(axis=0)).ravel()
    tail = long_tail_items(counts, cfg.evaluate.head_share)
    groups = user_groups(prepared, data, c.rows)
    methods: dict[str, dict[str, float]] = {}
    slices: dict[str, dict] = {}
    for name, ranked in rankings.items():
        top10 = ranked[:, :10]
        methods[name] = {
            **ranking_metrics(ranked, rel, ks),
            "coverage@10": coverage(top10, len(data.catalog)),
            "diversity@10": intra_list_diversity(top10, item_embeddings),
            "novelty@10": novelty(top10, counts, len(data.users)),
            "long_tail_share@10": long_tail_share(top10, tail),
        }
        slices[name] = slice_ndcg(ranked, rel, groups, tail, 10)
    sources = [n for n in rankings if n.startswith("source:")]
    best = max(sources, key=lambda n: methods[n]["ndcg@10"])
    base = ndcg_per_user(rankings[best][:, :10], rel, 10)
    bootstrap = {
        n: paired_bootstrap(ndcg_per_user(rankings[n][:, :10], rel, 10), base,
                            cfg.evaluate.bootstrap_samples, cfg.seed)
        for n in rankings if n.startswith("fusion:")
    }  # fmt: skip
    packaged = f"fusion:{cfg.fusion.method}"
    own = ndcg_per_user(rankings[packaged][:, :10], rel, 10)  # its interval over these users
    interval = paired_bootstrap(own, np.zeros_like(own), cfg.evaluate.bootstrap_samples, cfg.seed)
    examples = []
    for u in range(min(cfg.evaluate.example_users, len(c.rows))):
        items = rankings[packaged][u, :10]
        examples.append({
            "user": pseudonym(str(data.users.user_ids[c.rows[u]]), pseudonym_key),
            "recommendations": [
                {"item_id": str(data.catalog.item_ids[i]), "title": str(data.catalog.titles[i]),
                 "source": src, "reason": why}
                for i, (src, why) in zip(items[items >= 0], reasons(test, u, items), strict=True)
            ],
        })  # fmt: skip
    return {"packaged": packaged, "best_source": best, "test_users": len(c.rows),
            "packaged_ndcg@10_interval": {"low": interval["ci_low"], "high": interval["ci_high"],
                                          "level": interval["level"]},
            "methods": methods, "slices": slices, "bootstrap_vs_best_source": bootstrap,
            "examples": examples}  # fmt: skip


def write_plots(result: dict, ks: list[int], folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    names = list(result["methods"])
    short = [n.split(":", 1)[1] for n in names]
    rows = [[k] + [result["methods"][n][f"ndcg@{k}"] for n in names] for k in ks]
    pd.DataFrame(rows, columns=["k", *short]).to_csv(folder / "ndcg_at_k.csv", index=False)
    packaged, best = result["packaged"], result["best_source"]
    slice_rows: list[tuple[str, str, float]] = []
    for name in (packaged, best):
        for attribute, s in result["slices"][name].items():
            if attribute == "long_tail_items":
                slice_rows.append((name, "long_tail_items", s["ndcg"]))
                continue
            for group, v in s["groups"].items():
                slice_rows.append((name, f"{attribute}={group}", v))
    frame = pd.DataFrame(slice_rows, columns=["method", "slice", "ndcg@10"])
    frame["method"] = frame["method"].map({packaged: "packaged", best: "best_single_source"})
    wide = frame.pivot_table(index="slice", columns="method", values="ndcg@10").reset_index()
    wide.to_csv(folder / "slices.csv", index=False)


def write_html(result: dict, ranking: dict | None, ks: list[int], header: str, path: Path) -> None:
    m = result["methods"]
    cols = [f"{metric}@10" for metric in ("ndcg", "recall", "precision", "mrr", "map", "hit")]
    beyond = ["coverage@10", "diversity@10", "novelty@10", "long_tail_share@10"]
    series = {n: [(float(k), float(m[n][f"ndcg@{k}"])) for k in ks] for n in m}
    packaged, best = result["packaged"], result["best_source"]
    slice_rows: dict[str, dict[str, float]] = {}
    for name in (packaged, best):
        for attribute, s in result["slices"][name].items():
            if attribute == "long_tail_items":
                slice_rows.setdefault("long-tail items", {})[name] = s["ndcg"]
            else:
                for g, v in s["groups"].items():
                    slice_rows.setdefault(f"{attribute}: {g}", {})[name] = v
                slice_rows.setdefault(f"{attribute}: gap", {})[name] = s["gap"]
    slice_bars = {
        name: {k: v[name] for k, v in slice_rows.items() if name in v and not k.endswith("gap")}
        for name in (packaged, best)
    }
    boot = {n: {"mean diff": b["mean_diff"], "95% low": b["ci_low"], "95% high": b["ci_high"]}
            for n, b in result["bootstrap_vs_best_source"].items()}  # fmt: skip
    examples = "".join(
        f"<h3>user {html.escape(ex['user'])} (pseudonym)</h3>"
        + html.item_list(
            [{**r, "note": f"{r['source']}: {r['reason']}"} for r in ex["recommendations"]]
        )
        for ex in result["examples"]
    )
    sections = [
        ("Ranking quality at 10", html.table({n: m[n] for n in m}, cols)),
        (f"NDCG@k for k in {ks}", html.line_chart(series, "k", "NDCG@k")),
        ("Beyond accuracy at 10", html.table({n: m[n] for n in m}, beyond)),
        (f"NDCG@10 by slice: {packaged} vs the best single source {best}",
         "<p class='note'>The better of the two in each row is highlighted (the smaller gap: a "
         "gap is the largest difference between groups of at least 20 users).</p>"
         + html.table(slice_rows, [packaged, best], best_in="row")
         + html.bar_chart(slice_bars)),
        (f"Paired bootstrap of NDCG@10 against {best} ({result['test_users']} users)",
         html.table(boot, ["mean diff", "95% low", "95% high"])),
    ]  # fmt: skip
    if ranking:
        heads: dict[str, dict[str, float]] = {}
        for h, r in ranking.get("heads", {}).items():
            heads[h] = {k: v for k, v in r.items() if isinstance(v, float)}
            if "calibration" in r:  # expected calibration error, lower is better
                heads[h]["ece"] = r["calibration"]["ece"]
        keys = ["auc", "log_loss", "ece", "accuracy", "precision", "recall", "f1", "rmse", "mae"]
        present = [k for k in keys if any(k in h for h in heads.values())]
        sections.append(("Ranking model heads (test split)", html.table(heads, present)))
    if "search" in result:
        sections.append(search_section(result["search"]))
    sections.append((f"Example recommendations of {packaged}, with reasons", examples))
    total = result.get("test_users_total", result["test_users"])
    sampled = (
        f" (a seeded sample of the {total} with test items, evaluate.max_users)"
        if total > result["test_users"]
        else ""
    )
    ci = result["packaged_ndcg@10_interval"]
    note = (
        f"{result['test_users']} test users{sampled}; {packaged} NDCG@10 "
        f"{result['methods'][packaged]['ndcg@10']:.4f}, {ci['level']:.0%} bootstrap interval "
        f"[{ci['low']:.4f}, {ci['high']:.4f}] over these users; each user's train and validation items are "
        "excluded from the rankings. Sources and methods are ranked on the same users. "
        "Highlighted: the best value of each column (the smallest where lower is better: log "
        "loss, calibration error, RMSE, MAE, gaps)."
    )
    path.write_text(html.page("recfusion evaluation", sections, note, header), encoding="utf-8")


def read_provenance(root: Path, raw_dir: Path) -> Provenance:
    """The commit checked out in `root`, the time now and `raw_dir`'s source.json."""
    commit, dirty = git_state(root)
    source = raw_dir / "source.json"
    info = read_json(source) if source.is_file() else None
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return Provenance(commit, dirty, now, describe_source(info))


def read_inputs(cfg: Config, prepared_dir: Path = PREPARED_DIR, models_dir: Path = MODELS_DIR,
                reports_dir: Path = REPORTS_DIR, raw_dir: Path = RAW_DIR,
                root: Path = Path(".")) -> EvaluateInputs:  # fmt: skip
    """The prepared data, every model in `models_dir`, train_ranking's report and, for the
    report's header, the git state of `root` and the source description in `raw_dir`.

    Raises:
        ValueError: a model was trained on another catalogue.
    """
    prepared = read_prepared(prepared_dir)
    data = build_model_data(prepared, cfg.train)
    models = load_sub_models(data, cfg.train.tags, models_dir)
    fusion = FittedFusion.load(models_dir / "fusion")
    ranking_path = reports_dir / "ranking.json"
    ranking = read_json(ranking_path) if ranking_path.is_file() else None
    searcher = load_searcher(models_dir / "search", models.ranking, data, models.retrieval,
                             SEARCH_HISTORY)  # fmt: skip
    queries = read_table(prepared_dir / "queries.parquet")
    return EvaluateInputs(prepared, data, models, fusion, searcher, queries, ranking,
                          read_provenance(root, raw_dir), pseudonym_key(root))  # fmt: skip


def run(cfg: Config, inputs: EvaluateInputs) -> Evaluation:
    """Every source and method on the test period, the ranking heads and search."""
    data = inputs.data
    test = period(cfg.fusion, data, ["train", "val"], ["test"], inputs.models,
                  cfg.evaluate.max_users, cfg.seed)  # fmt: skip
    result = evaluate_all(cfg, inputs.prepared, data, test, inputs.fusion,
                          inputs.models.retrieval.items, inputs.pseudonym_key)  # fmt: skip
    result["test_users_total"] = len(data.items_by_user(["test"]))
    ranking = inputs.ranking_report
    if ranking:
        result["ranking_heads"] = {h: {k: v for k, v in r.items() if k != "calibration"}
                                   for h, r in ranking["heads"].items()}  # fmt: skip
    result["search"] = evaluate_search(inputs.searcher, inputs.queries, data)
    header = report_header(cfg.fusion, result, inputs.provenance)
    return Evaluation(result, ranking, sorted(cfg.evaluate.ks), header)


def write_outputs(evaluation: Evaluation, reports_dir: Path = REPORTS_DIR) -> None:
    """reports/metrics.json, reports/plots/*.csv and reports/evaluation.html."""
    write_json(evaluation.result, reports_dir / "metrics.json")
    write_plots(evaluation.result, evaluation.ks, reports_dir / "plots")
    write_html(evaluation.result, evaluation.ranking_report, evaluation.ks, evaluation.header,
               reports_dir / "evaluation.html")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    cfg = stage_config(__doc__, argv)
    evaluation = run(cfg, read_inputs(cfg))
    write_outputs(evaluation)
    result = evaluation.result
    p, b = result["packaged"], result["best_source"]
    log.info("evaluate: %s ndcg@10 %.4f vs best source %s %.4f (bootstrap diff %.4f [%.4f, %.4f])",
             p, result["methods"][p]["ndcg@10"], b, result["methods"][b]["ndcg@10"],
             result["bootstrap_vs_best_source"][p]["mean_diff"],
             result["bootstrap_vs_best_source"][p]["ci_low"],
             result["bootstrap_vs_best_source"][p]["ci_high"])  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(guarded(main))

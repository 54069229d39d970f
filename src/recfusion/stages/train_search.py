"""Stage `train_search`: hybrid product search.

Reads data/prepared/ (items, the query log with its split column), models/retrieval/ (the item
embeddings the query tower aligns with) and models/ranking/ (personalisation). Fits a query
encoder (words + hashed character trigrams), trains the TFRS query tower on train-split queries
with a click (selecting on validation MRR@10), builds the BM25 index over title, category and
brand, and chooses the RRF weights of BM25 and of the ranking model on validation queries.
Writes models/search/ (meta.json, bm25/, weights/) and reports/search.json (validation metrics
of each variant, the weights tried, the training history). Test metrics are the evaluate
stage's.
"""

from __future__ import annotations

import logging
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from recfusion.config import Config
from recfusion.data.io import read_table, write_json
from recfusion.fusion.assemble import usual_hour
from recfusion.models.dataset import ModelData, build_model_data, read_prepared
from recfusion.models.devices import plan_devices
from recfusion.models.item_index import ItemIndex
from recfusion.paths import PREPARED_DIR, RANKING_DIR, REPORTS_DIR, RETRIEVAL_DIR, SEARCH_DIR
from recfusion.search.evaluation import choose_weights, evaluate_variants, query_set
from recfusion.search.lexical import LexicalIndex, item_documents
from recfusion.search.query_tower import fit_query_tower
from recfusion.search.searcher import Searcher, ranking_scorer, settings_from
from recfusion.search.text import QueryEncoder
from recfusion.stages.entry import guarded, stage_config

log = logging.getLogger(__name__)


def run(cfg: Config, data: ModelData, items: pd.DataFrame, queries: pd.DataFrame,
        item_embeddings: np.ndarray, ranking_dir: Path, index: ItemIndex | None = None,
        ) -> tuple[Searcher, dict[str, Any]]:  # fmt: skip
    """The fitted searcher and its validation report (`index`: the retrieval model's item
    index, which serving will use; None = exact scan)."""
    sc = cfg.train.search
    train, val = query_set(queries, data, ["train"]), query_set(queries, data, ["val"])
    train_texts = queries.loc[queries["split"] == "train", "query"].astype(str).tolist()
    documents = item_documents(items)
    encoder = QueryEncoder.fit(train_texts + [" ".join(d) for d in documents],
                               sc.max_query_words, sc.max_query_grams, sc.gram_buckets)  # fmt: skip
    lexical = LexicalIndex.build(documents)
    report: dict[str, Any] = {"train_queries": len(train), "val_queries": len(val),
                              "val_queries_without_click": val.without_click}  # fmt: skip
    tower = None
    if len(train) and len(val):
        fitted = fit_query_tower((train.texts, train.clicked), (val.texts, val.clicked),
                                 item_embeddings, encoder, sc, cfg.seed,
                                 plan_devices(cfg.train.device))  # fmt: skip
        tower = fitted.tower
        report.update(best_epoch=fitted.best_epoch, history=fitted.history,
                      train_seconds=round(fitted.seconds, 1))  # fmt: skip
    else:
        log.warning("train_search: no labelled train/val queries; search is BM25 only")
        report["semantic"] = "not trained: the data has no queries with a clicked item"
    personal = ranking_scorer(
        ranking_dir, data, data.history(["train"]), usual_hour(data, ["train"])
    )
    searcher = Searcher(encoder, tower, item_embeddings, lexical, settings_from(sc, 1.0, 0.0),
                        personal, index)  # fmt: skip
    if len(val):
        lex_w, pers_w, trials = choose_weights(searcher, val, sc.lexical_weights,
                                               sc.personal_weights)  # fmt: skip
        searcher.settings = settings_from(sc, lex_w, pers_w)
        report.update(lexical_weight=lex_w, personal_weight=pers_w, trials=trials,
                      val=evaluate_variants(searcher, val))  # fmt: skip
    return searcher, report


def main(argv: list[str] | None = None) -> int:
    cfg = stage_config(__doc__, argv)
    prepared = read_prepared(PREPARED_DIR)
    data = build_model_data(prepared, cfg.train)
    queries = read_table(PREPARED_DIR / "queries.parquet")
    item_embeddings = np.load(RETRIEVAL_DIR / "item_embeddings.npy")
    if len(item_embeddings) != len(data.catalog):
        raise ValueError("models/retrieval was trained on another catalogue; run train_retrieval")
    index = ItemIndex.load(RETRIEVAL_DIR, item_embeddings)
    searcher, report = run(cfg, data, prepared.items, queries, item_embeddings, RANKING_DIR, index)
    if SEARCH_DIR.exists():
        shutil.rmtree(SEARCH_DIR)
    searcher.save(SEARCH_DIR)
    write_json(report, REPORTS_DIR / "search.json")
    if "val" in report:
        v = report["val"]
        log.info("train_search: validation NDCG@10 lexical %.4f, semantic %.4f, hybrid %.4f, "
                 "personalised %.4f", v["lexical"]["ndcg@10"], v["semantic"]["ndcg@10"],
                 v["hybrid"]["ndcg@10"], v["personalised"]["ndcg@10"])  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(guarded(main))

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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from recfusion.config import Config
from recfusion.data.io import read_table, write_json
from recfusion.models.dataset import ModelData, build_model_data, read_prepared
from recfusion.models.devices import one_process, plan_devices
from recfusion.models.item_index import ItemIndex
from recfusion.models.ranking import RankingModel, load_ranking_model
from recfusion.models.ranking_data import usual_hour
from recfusion.paths import PREPARED_DIR, RANKING_DIR, REPORTS_DIR, RETRIEVAL_DIR, SEARCH_DIR
from recfusion.search.evaluation import choose_weights, evaluate_variants, query_set
from recfusion.search.lexical import LexicalIndex, item_documents
from recfusion.search.query_tower import fit_query_tower
from recfusion.search.searcher import Searcher, ranking_scorer, settings_from
from recfusion.search.text import QueryEncoder
from recfusion.stages.entry import guarded, stage_config

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SearchInputs:
    data: ModelData  # the prepared data as the models see it
    items: pd.DataFrame  # the prepared catalogue (titles, categories, brands)
    queries: pd.DataFrame  # the prepared query log, with its split column
    item_embeddings: np.ndarray  # [n_items, dim] the retrieval model's, frozen
    index: ItemIndex | None  # the retrieval model's item index (None = exact scan)
    ranking: RankingModel  # personalises the order


@dataclass(frozen=True)
class TrainedSearch:
    searcher: Searcher  # fitted, with the weights chosen on validation
    report: dict[str, Any]  # reports/search.json


def read_inputs(cfg: Config, prepared_dir: Path = PREPARED_DIR,
                retrieval_dir: Path = RETRIEVAL_DIR, ranking_dir: Path = RANKING_DIR,
                ) -> SearchInputs:  # fmt: skip
    """The prepared catalogue and queries, the retrieval model's item embeddings and index, and
    the ranking model.

    Raises:
        ValueError: the retrieval model was trained on another catalogue.
    """
    prepared = read_prepared(prepared_dir)
    data = build_model_data(prepared, cfg.train)
    queries = read_table(prepared_dir / "queries.parquet")
    item_embeddings = np.load(retrieval_dir / "item_embeddings.npy")
    if len(item_embeddings) != len(data.catalog):
        raise ValueError("models/retrieval was trained on another catalogue; run train_retrieval")
    index = ItemIndex.load(retrieval_dir, item_embeddings)
    ranking = load_ranking_model(ranking_dir, data)
    return SearchInputs(data, prepared.items, queries, item_embeddings, index, ranking)


def run(cfg: Config, inputs: SearchInputs) -> TrainedSearch:
    """Fits the searcher (query encoder, query tower, BM25) and chooses its weights on the
    validation queries."""
    sc = cfg.train.search
    data, queries, item_embeddings = inputs.data, inputs.queries, inputs.item_embeddings
    train, val = query_set(queries, data, ["train"]), query_set(queries, data, ["val"])
    train_texts = queries.loc[queries["split"] == "train", "query"].astype(str).tolist()
    documents = item_documents(inputs.items)
    encoder = QueryEncoder.fit(train_texts + [" ".join(d) for d in documents],
                               sc.max_query_words, sc.max_query_grams, sc.gram_buckets)  # fmt: skip
    lexical = LexicalIndex.build(documents)
    report: dict[str, Any] = {"train_queries": len(train), "val_queries": len(val),
                              "val_queries_without_click": val.without_click}  # fmt: skip
    tower = None
    if len(train) and len(val):
        plan = plan_devices(cfg.train.device, one_process(cfg.train.distribute))
        fitted = fit_query_tower((train.texts, train.clicked), (val.texts, val.clicked),
                                 item_embeddings, encoder, sc, cfg.seed, plan)  # fmt: skip
        tower = fitted.tower
        report.update(best_epoch=fitted.best_epoch, history=fitted.history,
                      train_seconds=round(fitted.seconds, 1))  # fmt: skip
    else:
        log.warning("train_search: no labelled train/val queries; search is BM25 only")
        report["semantic"] = "not trained: the data has no queries with a clicked item"
    personal = ranking_scorer(inputs.ranking, data, data.history(["train"]),
                              usual_hour(data, ["train"]))  # fmt: skip
    searcher = Searcher(encoder, tower, item_embeddings, lexical, settings_from(sc, 1.0, 0.0),
                        personal, inputs.index)  # fmt: skip
    if len(val):
        lex_w, pers_w, trials = choose_weights(searcher, val, sc.lexical_weights,
                                               sc.personal_weights)  # fmt: skip
        searcher.settings = settings_from(sc, lex_w, pers_w)
        report.update(lexical_weight=lex_w, personal_weight=pers_w, trials=trials,
                      val=evaluate_variants(searcher, val))  # fmt: skip
    return TrainedSearch(searcher, report)


def write_outputs(trained: TrainedSearch, out_dir: Path = SEARCH_DIR,
                  reports_dir: Path = REPORTS_DIR) -> None:  # fmt: skip
    """models/search (emptied first: `Searcher.save`) and reports/search.json."""
    if out_dir.exists():
        shutil.rmtree(out_dir)
    trained.searcher.save(out_dir)
    write_json(trained.report, reports_dir / "search.json")


def main(argv: list[str] | None = None) -> int:
    cfg = stage_config(__doc__, argv)
    trained = run(cfg, read_inputs(cfg))
    write_outputs(trained)
    if "val" in trained.report:
        v = trained.report["val"]
        log.info("train_search: validation NDCG@10 lexical %.4f, semantic %.4f, hybrid %.4f, "
                 "personalised %.4f", v["lexical"]["ndcg@10"], v["semantic"]["ndcg@10"],
                 v["hybrid"]["ndcg@10"], v["personalised"]["ndcg@10"])  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(guarded(main))

"""Stage `train_tags`: user interest tags by transfer learning from the frozen user tower.

Reads data/prepared/ and models/retrieval/ (weights/ and meta.json); writes models/tags/ (head
weights, tags.txt with the category of each tag, meta.json with level, min_share and the
decision threshold) and reports/tags.json (DVC metrics on the test period: precision, recall,
micro and macro F1 of the model and of the "same as past top categories" baseline, for all
users and for demographics-only users, i.e. users with no history, whose baseline is the
globally most common categories).
"""

from __future__ import annotations

import dataclasses
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from recfusion.config import Config
from recfusion.data.io import read_json, write_json
from recfusion.metrics.classification import multilabel_report
from recfusion.models.dataset import ModelData, build_model_data, read_prepared
from recfusion.models.retrieval import tower_sizes
from recfusion.models.tags import (
    FittedTags,
    decide_tags,
    fit_tag_head,
    item_tags,
    load_frozen_user_tower,
    save_tag_head,
    tag_matrix,
    tag_names,
    user_embeddings,
)
from recfusion.models.towers import TowerSizes, UserTower
from recfusion.paths import PREPARED_DIR, REPORTS_DIR, RETRIEVAL_DIR, TAGS_DIR
from recfusion.stages.entry import guarded, stage_config

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TagsInputs:
    data: ModelData  # the prepared data as the models see it
    tower: UserTower  # the trained user tower, frozen
    tower_sizes: dict  # its sizes (models/retrieval/meta.json), recorded with the head


@dataclass(frozen=True)
class TrainedTags:
    fitted: FittedTags  # the head and its decision threshold
    names: list[str]  # the category of each tag (tags.txt)
    meta: dict  # models/tags/meta.json
    report: dict[str, Any]  # reports/tags.json


def read_inputs(cfg: Config, prepared_dir: Path = PREPARED_DIR,
                retrieval_dir: Path = RETRIEVAL_DIR) -> TagsInputs:  # fmt: skip
    """The model data and the retrieval model's user tower, frozen.

    Raises:
        ValueError: the retrieval model was trained on other data.
    """
    data = build_model_data(read_prepared(prepared_dir), cfg.train)
    meta = read_json(retrieval_dir / "meta.json")
    sizes = TowerSizes(**meta["sizes"])
    if sizes != tower_sizes(data, sizes.dim):
        raise ValueError("models/retrieval was trained on other data; run train_retrieval first")
    tower = load_frozen_user_tower(sizes, retrieval_dir / "weights" / "towers", meta["history_len"])
    return TagsInputs(data, tower, meta["sizes"])


def run(cfg: Config, inputs: TagsInputs) -> TrainedTags:
    """Fits the tag head on the frozen user tower and tests it against the baselines."""
    tc = cfg.train.tags
    data, tower = inputs.data, inputs.tower
    tag_of_item, tag_categories = item_tags(data, tc.level)
    n_tags = len(tag_categories)

    def tags(splits: list[str]) -> np.ndarray:
        return tag_matrix(data, splits, tc.level, tc.min_share, n_tags, tag_of_item)

    # train: what the train period says about the user -> their validation-period tags
    future_val = tags(["val"])
    rows = np.flatnonzero(future_val.any(axis=1))
    if len(rows) < 10:
        raise ValueError(f"only {len(rows)} users with validation activity: too few to train tags")
    x = user_embeddings(tower, data, rows, data.history(["train"]))
    fitted = fit_tag_head(x, future_val[rows], tc, cfg.seed)

    # test: train + validation period -> test-period tags
    past, future = tags(["train", "val"]), tags(["test"])
    test_rows = np.flatnonzero(future.any(axis=1))
    probs = fitted.head.predict(
        user_embeddings(tower, data, test_rows, data.history(["train", "val"])), verbose=0
    )
    predicted = decide_tags(probs, fitted.threshold)
    no_history = np.asarray(~past[test_rows].any(axis=1))
    global_tags = past.sum(axis=0)
    typical = max(1, int(np.median(future[test_rows].sum(axis=1))))  # tags per user
    popular = np.zeros(n_tags, dtype=bool)
    popular[np.argsort(-global_tags)[:typical]] = True
    baseline = np.where(no_history[:, None], popular[None, :], past[test_rows])
    truth = future[test_rows]
    report: dict[str, Any] = {
        "level": tc.level,
        "tags": n_tags,
        "threshold": fitted.threshold,
        "all": {"model": multilabel_report(truth, predicted),
                "past_top_categories": multilabel_report(truth, baseline)},
        "demographics_only": {"model": multilabel_report(truth[no_history], predicted[no_history]),
                              "global_top_categories": multilabel_report(truth[no_history],
                                                                         baseline[no_history])},
        "train_users": len(rows),
        "train_seconds": round(fitted.seconds, 1),
    }  # fmt: skip
    meta = {"level": tc.level, "min_share": tc.min_share, "threshold": fitted.threshold,
            "tower_sizes": inputs.tower_sizes, "tags": dataclasses.asdict(tc)}  # fmt: skip
    return TrainedTags(fitted, tag_names(data, tag_categories), meta, report)


def write_outputs(trained: TrainedTags, out_dir: Path = TAGS_DIR,
                  reports_dir: Path = REPORTS_DIR) -> None:  # fmt: skip
    """models/tags (`models.tags.save_tag_head`) and reports/tags.json."""
    save_tag_head(trained.fitted.head, trained.names, trained.meta, out_dir)
    write_json(trained.report, reports_dir / "tags.json")


def main(argv: list[str] | None = None) -> int:
    cfg = stage_config(__doc__, argv)
    trained = run(cfg, read_inputs(cfg))
    write_outputs(trained)
    report = trained.report
    log.info("train_tags: test micro-F1 %.3f (past top categories %.3f); demographics-only "
             "%.3f (global top %.3f)", report["all"]["model"]["micro_f1"],
             report["all"]["past_top_categories"]["micro_f1"],
             report["demographics_only"]["model"]["micro_f1"],
             report["demographics_only"]["global_top_categories"]["micro_f1"])  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(guarded(main))

"""Stage `fuse`: fit the fusion of the candidate sources on the validation period.

Reads data/prepared/ and models/retrieval, ranking and tags; builds every source's candidates for the
validation users (at most `fusion.max_users` of them, a seeded sample; sources see the train
split only), fits the weighted fusion's weights by
coordinate ascent on NDCG@10 and the LightGBM lambdarank stacker (a fifth of the users held out
for early stopping). Writes models/fusion/ (weights.json, stacker.txt) and reports/fusion.json
(validation NDCG@10 / Recall@10 of each source and of the voting methods; the weighted and
stacking numbers there are fitted on the same users and so optimistic — the evaluate stage gives
the test numbers). Which method serves (`fusion.method`) is not this stage's concern: it fits
what every method needs.
"""

from __future__ import annotations

import logging
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from recfusion.config import Config
from recfusion.data.io import write_json
from recfusion.fusion import methods
from recfusion.fusion.assemble import SubModels, load_sub_models, period
from recfusion.fusion.candidates import source_ranking
from recfusion.fusion.fused import FittedFusion, fit_fusion
from recfusion.metrics.ranking import ranking_metrics
from recfusion.models.dataset import ModelData, build_model_data, read_prepared
from recfusion.paths import FUSION_DIR, MODELS_DIR, PREPARED_DIR, REPORTS_DIR
from recfusion.stages.entry import guarded, stage_config

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FuseInputs:
    data: ModelData  # the prepared data as the models see it
    models: SubModels  # retrieval, ranking and tag models


@dataclass(frozen=True)
class Fused:
    fitted: FittedFusion  # the weighted fusion's weights and the stacker
    report: dict[str, Any]  # reports/fusion.json


def read_inputs(cfg: Config, prepared_dir: Path = PREPARED_DIR,
                models_dir: Path = MODELS_DIR) -> FuseInputs:  # fmt: skip
    """The model data and the sub-models in `models_dir`.

    Raises:
        ValueError: the retrieval model was trained on another catalogue.
    """
    data = build_model_data(read_prepared(prepared_dir), cfg.train)
    return FuseInputs(data, load_sub_models(data, cfg.train.tags, models_dir))


def run(cfg: Config, inputs: FuseInputs) -> Fused:
    """Fits the fusion on the validation period and reports each source and method there."""
    val = period(
        cfg.fusion, inputs.data, ["train"], ["val"], inputs.models, cfg.fusion.max_users, cfg.seed
    )
    log.info("fuse: %d validation users, up to %d candidates each", len(val.candidates.rows),
             val.candidates.items.shape[1])  # fmt: skip
    fitted = fit_fusion(val, cfg.fusion, cfg.seed)
    c = val.candidates
    rankings = {f"source:{n}": source_ranking(c, n, 10) for n in c.scores}
    rankings["fusion:rrf"] = c.top(methods.rrf(c), 10)
    rankings["fusion:borda"] = c.top(methods.borda(c), 10)
    rankings["fusion:weighted"] = c.top(methods.weighted(c, fitted.weights), 10)
    rankings["fusion:stacking"] = c.top(fitted.stack(val), 10)
    metrics = {n: ranking_metrics(r, val.relevant, [10]) for n, r in rankings.items()}
    report = {"validation": {n: {k: round(v, 4) for k, v in m.items()
                                 if k in ("ndcg@10", "recall@10")} for n, m in metrics.items()},
              "weights": fitted.weights, "stacker_trees": fitted.stacker.num_trees(),
              "validation_users": len(c.rows)}  # fmt: skip
    return Fused(fitted, report)


def write_outputs(fused: Fused, out_dir: Path = FUSION_DIR, reports_dir: Path = REPORTS_DIR
                  ) -> None:  # fmt: skip
    """models/fusion (emptied first: weights.json, stacker.txt) and reports/fusion.json."""
    if out_dir.exists():
        shutil.rmtree(out_dir)
    fused.fitted.save(out_dir)
    write_json(fused.report, reports_dir / "fusion.json")


def main(argv: list[str] | None = None) -> int:
    cfg = stage_config(__doc__, argv)
    fused = run(cfg, read_inputs(cfg))
    write_outputs(fused)
    log.info("fuse: weights %s; %d stacker trees", fused.fitted.weights,
             fused.fitted.stacker.num_trees())  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(guarded(main))

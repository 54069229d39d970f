"""Stage `fuse`: fit the fusion of the candidate sources on the validation period.

Reads data/prepared/ and models/retrieval, ranking and tags; builds every source's candidates for the
validation users (sources see the train split only), fits the weighted fusion's weights by
coordinate ascent on NDCG@10 and the LightGBM lambdarank stacker (a fifth of the users held out
for early stopping). Writes models/fusion/ (weights.json, stacker.txt, settings.json) and
reports/fusion.json (validation NDCG@10 / Recall@10 of each source and of the voting methods;
the weighted and stacking numbers there are fitted on the same users and so optimistic — the
evaluate stage gives the test numbers).
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
import sys

from recfusion.data.io import write_json
from recfusion.evaluation.metrics import ranking_metrics
from recfusion.fusion import methods
from recfusion.fusion.assemble import load_retrieval, period
from recfusion.fusion.candidates import source_ranking
from recfusion.fusion.fused import fit_fusion
from recfusion.models.dataset import build_model_data, read_prepared
from recfusion.paths import FUSION_DIR, PREPARED_DIR, REPORTS_DIR
from recfusion.stages.entry import guarded, stage_config

log = logging.getLogger(__name__)
OUT = FUSION_DIR


def main(argv: list[str] | None = None) -> int:
    cfg = stage_config(__doc__, argv)
    data = build_model_data(read_prepared(PREPARED_DIR), cfg.train)
    val = period(cfg, data, ["train"], ["val"], load_retrieval(data))
    log.info("fuse: %d validation users, up to %d candidates each", len(val.candidates.rows),
             val.candidates.items.shape[1])  # fmt: skip
    fitted = fit_fusion(val, cfg.fusion, cfg.seed)
    c = val.candidates
    rankings = {f"source:{n}": source_ranking(c, n, 10) for n in c.scores}
    rankings["fusion:rrf"] = c.top(methods.rrf(c), 10)
    rankings["fusion:borda"] = c.top(methods.borda(c), 10)
    rankings["fusion:weighted"] = c.top(methods.weighted(c, fitted.weights), 10)
    rankings["fusion:stacking"] = c.top(fitted.stack(val), 10)
    report = {n: ranking_metrics(r, val.relevant, [10]) for n, r in rankings.items()}
    if OUT.exists():
        shutil.rmtree(OUT)
    fitted.save(OUT)
    write_json(dataclasses.asdict(cfg.fusion), OUT / "settings.json")
    write_json({"validation": {n: {k: round(v, 4) for k, v in m.items()
                                   if k in ("ndcg@10", "recall@10")} for n, m in report.items()},
                "weights": fitted.weights, "stacker_trees": fitted.stacker.num_trees(),
                "validation_users": len(c.rows)}, REPORTS_DIR / "fusion.json")  # fmt: skip
    log.info("fuse: weights %s; %d stacker trees", fitted.weights, fitted.stacker.num_trees())
    return 0


if __name__ == "__main__":
    sys.exit(guarded(main))

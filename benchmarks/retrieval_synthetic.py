"""Two-tower retrieval on the default synthetic data: test metrics overall and on the
cold-start slices (users and items unseen in train), each beside popularity.

Uses params.yaml as it is (the default `small` size, temporal split). Writes
benchmarks/results/retrieval_synthetic.json.

    python benchmarks/retrieval_synthetic.py
"""

from __future__ import annotations

import dataclasses
import logging
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import write_result  # noqa: E402
from recfusion.config import load_config  # noqa: E402
from recfusion.data.synthetic import generate  # noqa: E402
from recfusion.logs import setup_logging  # noqa: E402
from recfusion.models.dataset import PreparedData, build_model_data  # noqa: E402
from recfusion.models.devices import plan_devices  # noqa: E402
from recfusion.models.inputs import Vocabularies  # noqa: E402
from recfusion.models.retrieval import fit_retrieval, holdout_report  # noqa: E402
from recfusion.stages import prepare  # noqa: E402


def main() -> None:
    setup_logging()
    cfg = load_config("params.yaml", {"ingest": {"source": "synthetic"}})
    p = prepare.run(cfg, generate(cfg.ingest.synthetic, cfg.seed, progress=False))
    data = build_model_data(
        PreparedData(p.splits, p.users, p.items, Vocabularies.from_lists(p.vocabularies)),
        cfg.train,
    )
    with tempfile.TemporaryDirectory() as tmp:
        fitted = fit_retrieval(data, cfg.train, cfg.seed, Path(tmp), plan_devices("cpu"))
    report = holdout_report(fitted, data, [10, 50], cfg.seed)
    result = {
        "protocol": "default synthetic data (params.yaml), temporal split, full ranking, each "
                    "user's train+val positives excluded, test metrics; cold_users = users "
                    "unseen in train, cold_items = relevant items unseen in train",
        "test": report,
        "train_seconds": round(fitted.seconds, 1),
        "best_epoch": fitted.state["best_epoch"],
        "params": {"seed": cfg.seed, "synthetic": dataclasses.asdict(cfg.ingest.synthetic),
                   "train": dataclasses.asdict(cfg.train)},
    }  # fmt: skip
    path = write_result("retrieval_synthetic", result)
    log = logging.getLogger("benchmark")
    for name, s in report.items():
        log.info("%s (%d users): two-tower ndcg@10 %.4f, popularity %.4f", name, s["users"],
                 s["two_tower"].get("ndcg@10", float("nan")),
                 s["popularity"].get("ndcg@10", float("nan")))  # fmt: skip
    log.info("-> %s", path)


if __name__ == "__main__":
    main()

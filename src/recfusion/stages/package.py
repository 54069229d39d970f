"""Stage `package`: the fitted state the served model ships besides its sub-models.

Reads data/prepared/; fits what the packaged recommender needs from the log on the splits the
evaluate stage's test period knows (train + validation): positives per item, days since each
item was last chosen, the usual hour, EASE's item-to-item weights; and writes them with the
catalogue and the vocabularies (the user-id vocabulary as keyed pseudonyms) to models/package/
(serving/package.py). No event and no user row goes into it: those live in the online store
(the materialize stage).
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from recfusion.config import Config
from recfusion.models.dataset import ModelData, build_model_data, read_prepared
from recfusion.paths import PREPARED_DIR
from recfusion.privacy import pseudonym_key
from recfusion.serving.package import PACKAGE_DIR, Package, build_package, save_package
from recfusion.stages.entry import guarded, stage_config

log = logging.getLogger(__name__)


def read_inputs(cfg: Config, prepared_dir: Path = PREPARED_DIR) -> ModelData:
    """The prepared data as the models see it."""
    return build_model_data(read_prepared(prepared_dir), cfg.train)


def run(cfg: Config, data: ModelData, key: bytes) -> Package:
    """The fitted state of `data` (train + validation), user vocabulary pseudonymised with `key`."""
    return build_package(cfg, data, key)


def write_outputs(package: Package, out: Path = PACKAGE_DIR) -> None:
    save_package(package, out)


def main(argv: list[str] | None = None) -> int:
    cfg = stage_config(__doc__, argv)
    package = run(cfg, read_inputs(cfg), pseudonym_key())
    write_outputs(package)
    log.info("package: %d items, fitted on %s, EASE %s", len(package.catalog),
             "+".join(package.splits), "on" if package.ease is not None else "off")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(guarded(main))

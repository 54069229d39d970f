"""Logging set-up for command-line entry points (never at import time)."""

from __future__ import annotations

import logging
import os


def setup_logging(level: str | None = None) -> None:
    """Logs `time level name: message` to stderr; RECFUSION_LOG_LEVEL overrides the level."""
    level = (level or os.environ.get("RECFUSION_LOG_LEVEL", "INFO")).upper()
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")  # fmt: skip
    # the level holds at the handler too: a library that sets its own logger to DEBUG when it is
    # imported (bm25s: "Building index from tokens") does not print through it
    for handler in logging.getLogger().handlers:
        handler.setLevel(level)
    # GX logs its plugin registration at INFO; only its warnings help a reader
    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    # absl (through TensorFlow's checkpoints) logs a "Sharding callback duration" line per save
    logging.getLogger("absl").setLevel(logging.WARNING)
    # TensorFlow logs every SavedModel asset write at INFO, twice (absl and Python logging)
    tf_log = logging.getLogger("tensorflow")
    tf_log.setLevel(logging.WARNING)
    # TFRS's BruteForce layer cannot give Keras a config; saving it warns about that, harmlessly
    tf_log.addFilter(lambda record: "non-serializable objects" not in record.getMessage())

"""Where the stages read and write, relative to the project root (the folder with dvc.yaml)."""

from __future__ import annotations

from pathlib import Path

RAW_DIR = Path("data/raw")  # ingest -> canonical tables
VALIDATED_DIR = Path("data/validated")  # validate -> rows that passed
QUARANTINE_DIR = Path("data/quarantine")  # validate -> rows held back, with a reason column
VALIDATION_REPORTS = Path("reports/validation")  # Data Docs sites and summaries
SUITES_DIR = Path("expectations")  # GX suites, committed and reviewed like code
PREPARED_DIR = Path("data/prepared")  # prepare -> splits, cleaned tables, vocabularies
REPORTS_DIR = Path("reports")  # human-readable reports and DVC metrics
MODELS_DIR = Path("models")  # trained sub-models (DVC outputs)
CHECKPOINTS_DIR = Path(".recfusion/checkpoints")  # per-epoch training state, for resuming
RETRIEVAL_DIR = MODELS_DIR / "retrieval"  # train_retrieval -> towers, embeddings, index
RANKING_DIR = MODELS_DIR / "ranking"  # train_ranking -> ranking model
TAGS_DIR = MODELS_DIR / "tags"  # train_tags -> tag head
FUSION_DIR = MODELS_DIR / "fusion"  # fuse -> weights and stacker
SEARCH_DIR = MODELS_DIR / "search"  # train_search -> BM25 index, query tower, weights

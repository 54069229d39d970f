"""Where the stages read and write, relative to the project root (the folder with dvc.yaml)."""

from __future__ import annotations

from pathlib import Path

RAW_DIR = Path("data/raw")  # ingest -> canonical tables
PREPARED_DIR = Path("data/prepared")  # prepare -> splits, cleaned tables, vocabularies
REPORTS_DIR = Path("reports")  # human-readable reports and DVC metrics

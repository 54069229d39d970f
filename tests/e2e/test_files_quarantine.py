"""The files source end to end through `dvc repro`: a corrupted copy of the data is quarantined
row by row under `validation.on_failure: quarantine` and stops the run under `stop`. Its own
module (not test_dvc_repro.py's long chain on the trained workspace), so pytest-xdist can run it
on the other worker."""

from __future__ import annotations

import json
import subprocess

import pytest
import yaml

from tests.workspace import copy_repo, dvc, sh

pytestmark = pytest.mark.slow


def test_corrupted_files_are_quarantined_then_stopped(tiny_tables, tmp_path) -> None:
    """A corrupted copy of the data through the `files` source: quarantine keeps every row
    (clean + quarantined = in) and names the reasons; `stop` fails `dvc repro`. Only ingest and
    validate run: nothing after validation is needed to show it."""
    dest, env = copy_repo(tmp_path)
    external = dest / "data/external"
    events = tiny_tables["events"].copy()
    events.loc[events.index[:4], "event_type"] = "teleport"
    events.loc[events.index[4:6], "user_id"] = "ghost"
    for name in ("users", "items", "queries"):
        tiny_tables[name].to_parquet(external / f"{name}.parquet", index=False)
    events.to_parquet(external / "events.parquet", index=False)
    original = (dest / "params.yaml").read_text()
    params = yaml.safe_load(original)
    params["ingest"]["source"] = "files"
    params["ingest"]["files"].update(
        users="data/external/users.parquet", items="data/external/items.parquet",
        events="data/external/events.parquet", queries="data/external/queries.parquet",
    )  # fmt: skip
    try:
        (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        sh(dvc("repro", "validate"), dest, env)
        summary = json.loads((dest / "reports/validation/raw/summary.json").read_text())
        ev = summary["suites"]["events"]
        assert ev["rows_in"] == len(events) == ev["rows_clean"] + ev["rows_quarantined"]
        assert ev["rows_quarantined"] == 6
        import pandas as pd

        held = pd.read_parquet(dest / "data/quarantine/events.parquet")
        assert held["reason"].str.contains("event_type").sum() == 4
        assert held["reason"].str.contains("ref_user_known").sum() == 2

        params["validation"]["on_failure"] = "stop"
        (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        proc = subprocess.run(dvc("repro", "validate"), cwd=dest, env=env, capture_output=True,
                              text=True)  # fmt: skip
        assert proc.returncode != 0
        assert "expect_column_values_to_be_in_set(event_type)" in proc.stdout + proc.stderr
        assert "reports/validation/raw/summary.html" in proc.stdout + proc.stderr
    finally:
        (dest / "params.yaml").write_text(original)

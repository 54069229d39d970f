"""The `recfusion` command: config check, stage listing, clear errors."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from recfusion import cli
from recfusion.orchestration.dvc_stage import pipeline_stages
from tests.conftest import PARAMS


def test_config_prints_typed_config(capsys) -> None:
    assert cli.main(["config", "--params", str(PARAMS)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["ingest"]["source"] == "synthetic"


def test_stages_lists_dvc_yaml_in_order(capsys, monkeypatch) -> None:
    import importlib

    monkeypatch.chdir(PARAMS.parent)
    assert cli.main(["stages"]) == 0
    names = [line.split()[0] for line in capsys.readouterr().out.splitlines()]
    assert names == pipeline_stages() and names[0] == "ingest" and "evaluate" in names
    for name in names:  # every dvc.yaml stage has its module with a main()
        assert callable(importlib.import_module(f"recfusion.stages.{name}").main)


def test_unknown_stage_is_a_clear_error(caplog, monkeypatch) -> None:
    monkeypatch.chdir(PARAMS.parent)
    assert cli.main(["stage", "deploy_to_mars"]) == 2
    assert "unknown stage 'deploy_to_mars'" in caplog.text


def test_bad_params_give_exit_2_and_message(tmp_path, caplog) -> None:
    bad = tmp_path / "params.yaml"
    bad.write_text(PARAMS.read_text().replace("seed: 42", "seed: forty-two"))
    assert cli.main(["config", "--params", str(bad)]) == 2
    assert "key 'seed' must be an integer" in caplog.text


def test_config_refuses_values_that_would_fail_a_run(tmp_path, caplog, capsys) -> None:
    bad = tmp_path / "params.yaml"
    text = PARAMS.read_text()
    for old, new in (("val_frac: 0.1 ", "val_frac: 0.6 "), ("test_frac: 0.1 ", "test_frac: 0.5 ")):
        assert old in text
        text = text.replace(old, new)
    bad.write_text(text)
    assert cli.main(["config", "--params", str(bad)]) == 2
    assert (
        f"{bad}: prepare.split.val_frac + prepare.split.test_frac must be < 1 (got 0.6 + 0.5)"
        in caplog.text
    )
    assert capsys.readouterr().out == ""  # nothing printed: the config is refused, not shown


def test_empty_search_query_is_refused_before_loading_a_model(caplog) -> None:
    # no model is loaded: the refusal comes first, with the command that does answer
    assert cli.main(["search", "  ", "--model", "models:/no-such-model@production"]) == 2
    assert "give a query" in caplog.text and "recfusion recommend --user ID" in caplog.text


def test_stage_commands_find_recfusion_without_an_activated_venv() -> None:
    """dvc.yaml runs `python -m recfusion.stages.X`: started from the venv's Python (as
    `.venv/bin/dvc repro` is) with the venv not on PATH, that `python` is still the venv's
    (the path hook `make setup` installs)."""
    import os
    import subprocess
    import sys

    child = "import subprocess; subprocess.run(['python', '-c', 'import recfusion'], check=True)"
    env = {**os.environ, "PATH": os.pathsep.join(["/usr/bin", "/bin"])}
    proc = subprocess.run([sys.executable, "-c", child], env=env, capture_output=True, text=True)
    assert proc.returncode == 0, f"run 'make setup' (it installs the path hook):\n{proc.stderr}"


@pytest.mark.parametrize(
    ("name", "read"),
    [
        ("recs.csv", pd.read_csv),
        ("recs.parquet", pd.read_parquet),
        ("recs.jsonl", lambda p: pd.read_json(p, lines=True)),
        ("recs.json", lambda p: pd.read_json(p, lines=True)),
    ],
)
def test_out_writes_the_format_its_extension_names(tmp_path, capsys, name, read) -> None:
    answer = pd.DataFrame({"user_id": ["u1", "u1"], "rank": [1, 2], "item_id": ["i9", "i3"],
                           "score": [0.5, 0.25], "reason": ["because", "also"]})  # fmt: skip
    out = tmp_path / name
    assert cli._write_answer(answer, out, cli.answer_format(out)) == 0
    pd.testing.assert_frame_equal(read(out), answer)
    assert "2 rows written" in capsys.readouterr().out


def test_out_with_an_unknown_extension_is_refused_before_loading_a_model(caplog) -> None:
    args = ["recommend", "--user", "u1", "--out", "recs.xlsx",
            "--model", "models:/no-such-model@production"]  # fmt: skip
    assert cli.main(args) == 2
    assert "--out recs.xlsx: write .csv, .parquet or .jsonl" in caplog.text


def test_history_names_splits_once_each() -> None:
    from recfusion.serving.loading import parse_history

    assert parse_history("train,val") == ("train", "val")
    assert parse_history(" train , val , test ") == ("train", "val", "test")
    for bad in ("", "train,train", "train,holdout", ","):
        with pytest.raises(ValueError, match="name splits once each"):
            parse_history(bad)


def test_exclusions_are_read_per_user_as_text(tmp_path) -> None:
    from recfusion.data.io import DataFileError
    from recfusion.serving.loading import read_exclusions

    good = tmp_path / "ex.csv"
    good.write_text("user_id,item_id\nu1,007\nu2,i3\nu1,i9\n")
    assert read_exclusions(good) == {"u1": ["007", "i9"], "u2": ["i3"]}
    bad = tmp_path / "bad.csv"
    bad.write_text("user,item\nu1,i1\n")
    with pytest.raises(DataFileError, match="needs columns user_id and item_id"):
        read_exclusions(bad)
    with pytest.raises(DataFileError, match="file not found"):
        read_exclusions(tmp_path / "missing.csv")


def test_bad_history_is_refused_before_loading_a_model(caplog) -> None:
    args = ["recommend", "--user", "u1", "--history", "train,holdout",
            "--model", "models:/no-such-model@production"]  # fmt: skip
    assert cli.main(args) == 2
    assert "--history 'train,holdout'" in caplog.text


def test_tensorflow_loads_quietly_on_a_machine_without_a_gpu() -> None:
    """Importing recfusion's TensorFlow set-up writes none of the native start-up notices (no
    CUDA errors, no absl preamble, no oneDNN notice) to stderr, and lets other output through."""
    import subprocess
    import sys

    # the oneDNN int32 fallback notice comes later, from training's first int32 op (written here
    # as TensorFlow writes it); a real native error, a progress update and the traceback of an
    # error on the way out still reach stderr, in order
    notice = ("E0000 00:00:1796236085.190316    3351 util.cc:131] oneDNN supports DT_INT32 only "
              "on platforms with AVX-512. Falling back to the default Eigen-based implementation")  # fmt: skip
    code = ("import os, sys; from recfusion.models.tf_setup import tf; tf.constant(1.0); "
            f"os.write(2, b'{notice}\\n'); os.write(2, b'E0000 real.cc:1] kept\\n'); "
            "print('after', file=sys.stderr); sys.stderr.write('\\rbar 50%'); "
            "raise ValueError('on the way out')")  # fmt: skip
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.startswith("E0000 real.cc:1] kept\nafter\n"), proc.stderr
    assert "bar 50%Traceback" in proc.stderr and "oneDNN" not in proc.stderr, proc.stderr
    assert proc.stderr.endswith("ValueError: on the way out\n"), proc.stderr


def test_log_level_holds_for_libraries_that_set_their_own() -> None:
    """bm25s sets its logger to DEBUG when imported; the CLI's INFO level still holds."""
    import subprocess
    import sys

    code = ("import logging; from recfusion.logs import setup_logging; setup_logging(); "
            "import bm25s; log = logging.getLogger('bm25s'); log.debug('hidden'); "
            "log.info('shown')")  # fmt: skip
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0 and "shown" in proc.stderr and "hidden" not in proc.stderr, (
        proc.stderr)  # fmt: skip

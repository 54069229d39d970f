"""Request parsing of the packaged recommender and the MLflow naming / lineage helpers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recfusion.registry.tracking import flat_params, lock_hashes, metric_name, run_metrics
from recfusion.serving.recommender import Request, RequestError, parse_requests
from tests.conftest import repo_config


def test_parse_requests_accepts_optional_columns() -> None:
    frame = pd.DataFrame({"user_id": [" u1 ", "u2"], "k": [3, 100], "query": [None, ""],
                          "exclude": [["i1", "i2"], None]})  # fmt: skip
    assert parse_requests(frame, 100, 200) == [Request("u1", 3, ("i1", "i2")),
                                               Request("u2", 100, ())]  # fmt: skip
    arrays = pd.DataFrame({"user_id": ["u"], "k": [np.int64(2)], "exclude": [np.array(["i"])]})
    assert parse_requests(arrays, 10, 200) == [Request("u", 2, ("i",))]


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (pd.DataFrame({"k": [3]}), "missing column 'user_id'"),
        (pd.DataFrame({"user_id": ["u"]}), "missing column 'k'"),
        (pd.DataFrame({"user_id": ["u"], "k": [3], "limit": [1]}), "unknown column 'limit'"),
        (pd.DataFrame({"user_id": [""], "k": [3]}), "row 0: user_id must be a non-empty string"),
        (pd.DataFrame({"user_id": [7], "k": [3]}), "user_id must be a non-empty string, got 7"),
        (pd.DataFrame({"user_id": ["u", "v"], "k": [3, 0]}), "row 1: k must be an integer from 1"),
        (pd.DataFrame({"user_id": ["u"], "k": [101]}), "from 1 to 100, got 101"),
        (pd.DataFrame({"user_id": ["u"], "k": [2.5]}), "k must be an integer"),
        (pd.DataFrame({"user_id": ["u"], "k": [True]}), "k must be an integer"),
        (pd.DataFrame({"user_id": ["u"], "k": [3], "exclude": ["i1"]}), "exclude must be a list"),
        (pd.DataFrame({"user_id": ["u"], "k": [3], "query": [["red"]]}), "query must be a string"),
    ],
)
def test_parse_requests_refuses_malformed_rows(frame: pd.DataFrame, message: str) -> None:
    with pytest.raises(RequestError, match=message):
        parse_requests(frame, 100, 200)


def test_parse_requests_caps_rows_and_ids_and_never_echoes_a_long_value() -> None:
    many = pd.DataFrame({"user_id": ["u"] * 6, "k": [3] * 6})
    with pytest.raises(RequestError, match=r"6 rows in one request; at most 5 .*serving.max_rows"):
        parse_requests(many, 100, 200, max_rows=5)
    assert len(parse_requests(many.head(5), 100, 200, max_rows=5)) == 5
    huge = "x" * 100_000
    with pytest.raises(RequestError, match=r"row 0: user_id has 100000 characters; at most 128"):
        parse_requests(pd.DataFrame({"user_id": [huge], "k": [3]}), 100, 200,
                       max_user_id_chars=128)  # fmt: skip
    for frame in (pd.DataFrame({"user_id": ["u"], "k": [3], "exclude": [huge]}),
                  pd.DataFrame({"user_id": ["u"], "k": [3], "query": [[huge]]}),
                  pd.DataFrame({"user_id": ["u"], "k": [huge]}),
                  pd.DataFrame({"user_id": ["u"], "k": [3], huge: [1]})):  # fmt: skip
        with pytest.raises(RequestError) as e:
            parse_requests(frame, 100, 200)
        assert len(str(e.value)) < 200, str(e.value)[:300]


def test_parse_requests_needs_a_table() -> None:
    with pytest.raises(RequestError, match="expected a table"):
        parse_requests({"user_id": "u"}, 10, 200)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("name", "expected"),
    [("ndcg@10", "ndcg_at_10"), ("fusion:cascade", "fusion.cascade"),
     ("slice.age_band.50+", "slice.age_band.50plus"), ("age_band=<25", "age_band_lt25"),
     ("a b/c-d.e", "a b/c-d.e")],
)  # fmt: skip
def test_metric_name_is_accepted_by_mlflow(name: str, expected: str) -> None:
    from mlflow.utils.validation import _validate_metric_name

    assert metric_name(name) == expected
    _validate_metric_name(metric_name(name))


def test_run_metrics_flatten_the_evaluation_report() -> None:
    report = {
        "packaged": "fusion:cascade",
        "methods": {"fusion:cascade": {"ndcg@10": 0.11}, "source:ease": {"ndcg@10": 0.10}},
        "slices": {"fusion:cascade": {"gender": {"groups": {"F": 0.12, "M": 0.1}, "gap": 0.02},
                                      "long_tail_items": {"ndcg": 0.01}}},
        "bootstrap_vs_best_source": {"fusion:cascade": {"ci_low": -0.002, "ci_high": 0.013}},
    }  # fmt: skip
    assert run_metrics(report) == {
        "ndcg_at_10": 0.11, "fusion.cascade.ndcg_at_10": 0.11, "source.ease.ndcg_at_10": 0.10,
        "slice.gender.F.ndcg_at_10": 0.12, "slice.gender.M.ndcg_at_10": 0.1,
        "slice.gender.gap": 0.02, "slice.long_tail_items.ndcg_at_10": 0.01,
        "gain_vs_best_source.low": -0.002, "gain_vs_best_source.high": 0.013,
    }  # fmt: skip


def test_flat_params_cover_every_section() -> None:
    cfg = repo_config()
    params = flat_params(cfg)
    assert params["fusion.method"] == cfg.fusion.method
    assert params["registry.gate.floors.ndcg_at_10"] == str(cfg.registry.gate.floors["ndcg@10"])
    assert params["evaluate.ks"] == str(list(cfg.evaluate.ks))  # logged as in params.yaml: [5, ...]
    assert {k.split(".")[0] for k in params} >= {"seed", "ingest", "train", "registry", "serving"}


def test_lock_hashes_pick_data_and_model_outputs(tmp_path: Path) -> None:
    lock = tmp_path / "dvc.lock"
    lock.write_text("""schema: '2.0'
stages:
  prepare:
    outs:
    - path: data/prepared
      md5: abc.dir
    - path: reports/prepare.json
      md5: zzz
  fuse:
    outs:
    - path: models/fusion
      md5: def.dir
""")
    assert lock_hashes(lock) == {"data/prepared": "abc.dir", "models/fusion": "def.dir"}
    assert lock_hashes(tmp_path / "none.lock") == {}


def test_lineage_is_dirty_only_when_code_or_params_differ_from_the_commit(tmp_path) -> None:
    """A fresh clone after `make run` is clean: the run rewrites dvc.lock and reports/, which are
    the pipeline's outputs; an edited params.yaml or source file is dirty."""
    import subprocess

    from recfusion.registry.tracking import lineage_tags

    def git(*args: str) -> None:
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=tmp_path,
                       check=True, capture_output=True)  # fmt: skip

    for name in ("params.yaml", "reports/metrics.json", "src/code.py"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("a\n")
    (tmp_path / "dvc.lock").write_text("schema: '2.0'\nstages: {}\n")
    git("init", "-q")
    git("add", "-A")
    git("commit", "-qm", "c")
    cfg = repo_config()
    assert lineage_tags(tmp_path, cfg, None)["git.dirty"] == "false"
    (tmp_path / "dvc.lock").write_text("schema: '2.0'\nstages: {}  # rewritten by a run\n")
    (tmp_path / "reports/metrics.json").write_text("b\n")
    assert lineage_tags(tmp_path, cfg, None)["git.dirty"] == "false"
    for name in ("params.yaml", "src/code.py"):
        (tmp_path / name).write_text("b\n")
        assert lineage_tags(tmp_path, cfg, None)["git.dirty"] == "true", name
        (tmp_path / name).write_text("a\n")


CLEAN = {"git.commit": "1a2b3c4d5e6f", "git.dirty": "false"}
DIRTY = {**CLEAN, "git.dirty": "true"}
FLOW_ID = {"prefect.flow_run_id": "9f8e7d6c-5b"}


@pytest.mark.parametrize(
    ("tags", "expected"),
    [
        (CLEAN, "dvc repro 1a2b3c4d fusion=rrf"),
        (DIRTY, "dvc repro 1a2b3c4d+dirty fusion=rrf"),
        ({**CLEAN, **FLOW_ID}, "prefect flow run 9f8e7d6c 1a2b3c4d fusion=rrf"),
        (
            {**DIRTY, **FLOW_ID, "prefect.flow_run_name": "brave-otter"},
            "prefect brave-otter 1a2b3c4d+dirty fusion=rrf",
        ),
    ],
)
def test_run_name_says_what_ran(tags: dict[str, str], expected: str) -> None:
    from recfusion.registry.tracking import run_name

    assert run_name(tags, "rrf") == expected


def test_lineage_names_the_flow_run_from_the_environment(tmp_path, monkeypatch) -> None:
    from recfusion.registry.tracking import lineage_tags

    monkeypatch.setenv("RECFUSION_FLOW_RUN_ID", "9f8e7d6c-5b")
    monkeypatch.setenv("RECFUSION_FLOW_RUN_NAME", "brave-otter")
    tags = lineage_tags(tmp_path, repo_config(), None)
    assert (tags["prefect.flow_run_id"], tags["prefect.flow_run_name"]) == (
        "9f8e7d6c-5b",
        "brave-otter",
    )


def test_fit_description_keeps_short_text_and_cuts_long_text_at_a_line_end() -> None:
    from recfusion.registry.tracking import fit_description

    assert fit_description("# card\nshort\n", "x") == "# card\nshort\n"
    note = "\n\n(truncated to fit MLflow's description limit; the full text is card.md)\n"
    # 20 lines of 9 characters = 180; a limit of 100 leaves 100 - 74 (the note) = 26 characters:
    # "line 000\nline 001\nline 00", cut back to the last whole line
    text = "".join(f"line {i:03d}\n" for i in range(20))
    cut = fit_description(text, "card.md", limit=100)
    assert cut == "line 000\nline 001" + note
    assert len(note) == 74 and len(cut) == 17 + 74

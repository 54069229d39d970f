"""params.yaml loading: the shipped file is valid; unknown, missing and mistyped keys fail with
the key and the file named."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from recfusion.config import Config, ConfigError, load_config
from tests.conftest import PARAMS


def write_params(tmp_path: Path, mutate) -> Path:
    raw = yaml.safe_load(PARAMS.read_text())
    mutate(raw)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_shipped_params_load_into_frozen_config() -> None:
    cfg = load_config(PARAMS)
    assert isinstance(cfg, Config)
    assert cfg.ingest.source == "synthetic"
    assert cfg.prepare.split.method in ("temporal", "leave_last_n", "random_ratio", "predefined")
    with pytest.raises(AttributeError):
        cfg.seed = 1  # type: ignore[misc]


def test_every_key_in_params_yaml_is_commented() -> None:
    for number, line in enumerate(PARAMS.read_text().splitlines(), start=1):
        if re.match(r"^\s*[a-z_]+:", line):
            assert "#" in line, f"params.yaml line {number} has no comment: {line.strip()}"


def test_unknown_key_names_key_and_file(tmp_path: Path) -> None:
    path = write_params(tmp_path, lambda r: r["prepare"]["split"].update(val_fraq=0.2))
    with pytest.raises(ConfigError, match=r"params\.yaml: unknown key 'prepare\.split\.val_fraq'"):
        load_config(path)


def test_missing_key_is_an_error(tmp_path: Path) -> None:
    path = write_params(tmp_path, lambda r: r["ingest"]["synthetic"].pop("days"))
    with pytest.raises(ConfigError, match=r"missing key 'ingest\.synthetic\.days'"):
        load_config(path)


@pytest.mark.parametrize(
    ("section", "key", "value", "expected"),
    [
        (("prepare",), "price_buckets", "five", "an integer"),
        (("prepare",), "dedup_events", "yes", "true or false"),
        (("prepare", "split"), "val_frac", "0.1x", "a number"),
        (("prepare", "split"), "method", "by_magic", "one of"),
        (("ingest",), "source", "s3", "one of"),
        ((), "seed", 1.5, "an integer"),
        (("ingest", "synthetic"), "n_users", True, "an integer"),
    ],
)
def test_mistyped_key_names_key_and_expected_type(
    tmp_path: Path, section: tuple[str, ...], key: str, value: object, expected: str
) -> None:
    def mutate(raw: dict) -> None:
        node = raw
        for part in section:
            node = node[part]
        node[key] = value

    path = write_params(tmp_path, mutate)
    dotted = ".".join((*section, key))
    with pytest.raises(ConfigError, match=re.escape(f"key '{dotted}' must be {expected}")):
        load_config(path)


def test_nullable_override_and_int_as_float() -> None:
    cfg = load_config(PARAMS, {"ingest": {"synthetic": {"n_users": 10, "cold_user_frac": 0}}})
    assert cfg.ingest.synthetic.n_users == 10
    assert cfg.ingest.synthetic.cold_user_frac == 0.0
    assert isinstance(cfg.ingest.synthetic.cold_user_frac, float)


def test_override_of_unknown_key_fails() -> None:
    with pytest.raises(ConfigError, match="override of unknown key 'prepare.nope'"):
        load_config(PARAMS, {"prepare": {"nope": 1}})


def test_missing_file_and_bad_yaml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "absent.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("seed: [1,\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)

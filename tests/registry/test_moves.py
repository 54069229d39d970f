"""Registry moves against a real SQLite-backed MLflow registry (no fakes): candidate, gate
outcomes, promotion with and without override, rollback, history, concurrent promotions, and
an unreachable store."""

from __future__ import annotations

import re
import threading
from pathlib import Path

import pytest
from mlflow import MlflowClient

from recfusion import cli
from recfusion.registry import moves
from recfusion.registry.moves import Move, RegistryError, production_line
from recfusion.registry.tracking import (
    MAX_DESCRIPTION,
    TrackingUnavailable,
    connect,
    describe_version,
)
from tests.conftest import repo_config

NAME = "recfusion-test"


@pytest.fixture()
def store(tmp_path: Path) -> tuple[MlflowClient, str]:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = connect(uri)
    client.create_registered_model(NAME)
    return client, uri


def new_version(client: MlflowClient, uri: str, tmp: Path) -> str:
    n = len(client.search_model_versions(f"name = '{NAME}'"))
    source = tmp / f"model{n}"
    source.mkdir()
    version = str(client.create_model_version(NAME, source.as_uri()).version)
    moves.mark_candidate(client, NAME, version, uri)
    return version


def test_new_version_is_candidate(store, tmp_path) -> None:
    client, uri = store
    v = new_version(client, uri, tmp_path)
    assert moves.holder(client, NAME, "candidate") == v
    assert moves.status_of(client, NAME, v) == "candidate"
    assert [(m.alias, m.version) for m in moves.history(client, NAME)] == [("candidate", v)]


def test_promotion_archives_the_previous_champion(store, tmp_path) -> None:
    client, uri = store
    v1, v2 = new_version(client, uri, tmp_path), new_version(client, uri, tmp_path)
    moves.promote(client, NAME, v1, "production", "first", uri)
    moves.promote(client, NAME, v2, "staging", "passed the gate", uri)
    previous = moves.promote(client, NAME, v2, "production", "approved", uri)
    assert previous == v1
    assert moves.holder(client, NAME, "production") == v2
    assert moves.holder(client, NAME, "staging") is None  # taken off the promoted version
    assert moves.status_of(client, NAME, v1) == "archived"
    assert moves.status_of(client, NAME, v2) == "production"
    rows = {r["version"]: r for r in moves.versions(client, NAME)}
    assert rows[v2]["aliases"] == "candidate,production" and rows[v1]["status"] == "archived"


def test_rejected_version_needs_force_and_reason(store, tmp_path) -> None:
    client, uri = store
    v = new_version(client, uri, tmp_path)
    moves.reject(client, NAME, v, "floor ndcg@10: 0.01 vs floor 0.05")
    with pytest.raises(RegistryError, match="failed the gate.*floor ndcg@10"):
        moves.promote(client, NAME, v, "production", "", uri)
    with pytest.raises(RegistryError, match="--force needs --reason"):
        moves.promote(client, NAME, v, "production", " ", uri, force=True)
    moves.promote(client, NAME, v, "production", "hotfix approved by on-call", uri, force=True)
    assert moves.holder(client, NAME, "production") == v
    last = moves.history(client, NAME)[-1]
    assert last.forced and last.reason == "hotfix approved by on-call" and last.user
    assert client.get_model_version(NAME, v).tags["override_reason"] == last.reason


def test_unknown_version_and_target_are_refused(store) -> None:
    client, uri = store
    with pytest.raises(RegistryError, match="no version 7"):
        moves.promote(client, NAME, "7", "production", "x", uri)
    with pytest.raises(RegistryError, match="staging or production"):
        moves.promote(client, NAME, "1", "candidate", "x", uri)


def test_rollback_goes_back_one_production_version_at_a_time(store, tmp_path) -> None:
    client, uri = store
    v1, v2, v3 = (new_version(client, uri, tmp_path) for _ in range(3))
    with pytest.raises(RegistryError, match="nothing to roll back"):
        moves.rollback(client, NAME, uri)
    for v in (v1, v2, v3):
        moves.promote(client, NAME, v, "production", "release", uri)
    assert moves.rollback(client, NAME, uri) == v2
    assert moves.status_of(client, NAME, v3) == "archived"
    assert moves.status_of(client, NAME, v2) == "production"
    assert moves.rollback(client, NAME, uri) == v1  # not forward to v3 again
    with pytest.raises(RegistryError, match="first production version"):
        moves.rollback(client, NAME, uri)
    kinds = [m.kind for m in moves.history(client, NAME) if m.alias == "production"]
    assert kinds == ["move", "move", "move", "rollback", "rollback"]


def test_production_line_pushes_and_pops() -> None:
    def m(version: str, kind: str = "move", alias: str = "production") -> Move:
        return Move(0.0, "u", alias, version, None, "", False, kind)

    # 1, 2, 3 promoted; rollback to 2; 4 promoted; staging moves do not count
    line = production_line([m("1"), m("2"), m("9", alias="staging"), m("3"), m("2", "rollback"),
                            m("4")])  # fmt: skip
    assert line == ["1", "2", "4"]


def test_concurrent_promotions_leave_one_consistent_champion(store, tmp_path) -> None:
    client, uri = store
    versions = [new_version(client, uri, tmp_path) for _ in range(4)]
    errors: list[Exception] = []

    def go(v: str) -> None:
        try:
            moves.promote(MlflowClient(uri, uri), NAME, v, "production", f"release {v}", uri)
        except Exception as e:  # noqa: BLE001 - collected and asserted below
            errors.append(e)

    threads = [threading.Thread(target=go, args=(v,)) for v in versions]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    champion = moves.holder(client, NAME, "production")
    statuses = {v: moves.status_of(client, NAME, v) for v in versions}
    assert [v for v, s in statuses.items() if s == "production"] == [champion]
    assert sorted(s for s in statuses.values()) == ["archived"] * 3 + ["production"]
    line = [m for m in moves.history(client, NAME) if m.alias == "production"]
    # the moves were serialised: each one's `previous` is the one recorded before it
    assert [m.previous for m in line] == [None] + [m.version for m in line[:-1]]
    assert line[-1].version == champion


def test_unreachable_store_fails_fast_and_clearly(tmp_path) -> None:
    with pytest.raises(TrackingUnavailable, match="does not exist"):
        connect(f"sqlite:///{tmp_path / 'missing' / 'mlflow.db'}")
    with pytest.raises(TrackingUnavailable, match="unreachable"):
        connect("http://127.0.0.1:9")  # discard port: nothing listens


@pytest.fixture()
def cli_on(store, monkeypatch) -> MlflowClient:
    """`recfusion registry ...` against the test store."""
    client, uri = store
    rc = repo_config({"registry": {"tracking_uri": uri, "model_name": NAME}}).registry
    monkeypatch.setattr(cli, "_client", lambda args: (client, rc))
    return client


def test_list_warns_about_an_alias_moved_outside_recfusion(cli_on, store, tmp_path, capsys):
    client, uri = store
    v1, v2, v3 = (new_version(client, uri, tmp_path) for _ in range(3))
    moves.promote(client, NAME, v1, "staging", "passed the gate", uri)
    moves.promote(client, NAME, v1, "production", "reviewed", uri)  # takes staging off v1
    moves.promote(client, NAME, v2, "production", "reviewed", uri)
    assert cli.main(["registry", "list"]) == 0
    assert capsys.readouterr().err == ""  # every alias is where recfusion put it
    client.set_registered_model_alias(NAME, "production", v3)  # MLflow UI's "Promote model"
    client.set_registered_model_alias(NAME, "staging", v1)
    assert cli.main(["registry", "list"]) == 0
    assert capsys.readouterr().err.splitlines() == [
        f"warning: alias production is on version {v3} but recfusion's last recorded move put "
        f"it on version {v2}: it was moved outside recfusion (MLflow UI?), bypassing the gate "
        "and the history",
        f"warning: alias staging is on version {v1} but recfusion's last recorded move took it "
        "off: it was moved outside recfusion (MLflow UI?), bypassing the gate and the history",
    ]
    # rollback follows the record, so it refuses until the UI's move is recorded
    with pytest.raises(RegistryError, match=f"on version {v3} but .* on version {v2}.*promote"):
        moves.rollback(client, NAME, uri)
    moves.promote(client, NAME, v3, "production", "record the UI's move", uri)
    assert moves.rollback(client, NAME, uri) == v2


def test_unrecorded_moves_cover_unknown_and_removed_aliases() -> None:
    recorded = [Move(0.0, "u", "candidate", "2", None, "", False)]
    # candidate deleted with its version; champion set by hand, never by recfusion
    warnings = moves.unrecorded_moves(recorded, {"candidate": None, "champion": "1"})
    assert [w.split(":")[0] for w in warnings] == [
        "alias candidate is on no version but recfusion's last recorded move put it on version 2",
        "alias champion is on version 1 but recfusion never recorded a move of it",
    ]


def test_history_prints_one_row_per_move_in_iso_utc(cli_on, store, tmp_path, capsys) -> None:
    client, uri = store
    v = new_version(client, uri, tmp_path)
    moves.promote(client, NAME, v, "production", "reviewed\ngate.md looked fine", uri)
    assert cli.main(["registry", "history"]) == 0
    header, *rows = capsys.readouterr().out.splitlines()
    columns = ["time", "alias", "version", "previous", "user", "kind", "forced", "reason"]
    assert header.split() == columns
    assert len(rows) == 2  # the candidate move, the promotion
    iso = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"
    first, second = (row.split(maxsplit=7) for row in rows)
    assert re.fullmatch(iso, first[0]) and first[1:3] == ["candidate", v]
    assert second[1:] == [
        "production",
        v,
        "-",
        second[4],
        "move",
        "no",
        "reviewed gate.md looked fine",
    ]


def test_history_rows_give_utc_times() -> None:
    # 1_796_223_845 s after the epoch = 2026-12-02 15:04:05 UTC
    row = moves.history_rows(
        [Move(1_796_223_845.0, "ana", "production", "3", "2", "", True, "rollback")]
    )[0]
    assert row == {
        "time": "2026-12-02T15:04:05Z",
        "alias": "production",
        "version": "3",
        "previous": "2",
        "user": "ana",
        "kind": "rollback",
        "forced": "yes",
        "reason": "-",
    }


def test_version_description_is_the_model_card(store, tmp_path) -> None:
    client, uri = store
    v = new_version(client, uri, tmp_path)
    card = "# recfusion model card\n\n**Version**: recfusion-test version 1\n"
    describe_version(client, NAME, v, card, "run123")
    assert client.get_model_version(NAME, v).description == card
    assert "version 1's description" in client.get_registered_model(NAME).description
    long_card = card + "| metric | value |\n" * 400  # 7_200 characters
    describe_version(client, NAME, v, long_card, "run123")
    kept = client.get_model_version(NAME, v).description
    assert len(kept) <= MAX_DESCRIPTION and kept.startswith(card)
    assert kept.endswith("the full text is reports/model_card.md in run run123's artifacts)\n")


def test_experiment_opens_in_the_classic_training_view(store, tmp_path) -> None:
    from recfusion.stages.register import experiment_id

    client, uri = store
    rc = repo_config({"registry": {"tracking_uri": uri, "experiment": "fresh"}}).registry
    kind = "mlflow.experimentKind"
    created = experiment_id(client, rc, tmp_path)
    assert client.get_experiment(created).tags[kind] == "custom_model_development"
    old = client.create_experiment("old", tags={kind: "genai_development"})
    rc = repo_config({"registry": {"tracking_uri": uri, "experiment": "old"}}).registry
    assert experiment_id(client, rc, tmp_path) == old
    assert client.get_experiment(old).tags[kind] == "custom_model_development"

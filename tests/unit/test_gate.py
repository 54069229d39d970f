"""The promotion gate's decision table."""

from __future__ import annotations

import pytest

from recfusion.registry.gate import GatePolicy, Infra, decide

POLICY = GatePolicy(floors={"ndcg@10": 0.05}, max_drop={"ndcg@10": 0.01}, max_slice_drop=0.02,
                    require_significant_gain=False, latency_budget_ms=100.0)  # fmt: skip
OK = Infra(loads=True, answers=True, latency_ms=20.0)


@pytest.mark.parametrize(
    ("candidate", "champion", "infra", "passed", "failing"),
    [
        ({"ndcg@10": 0.10}, None, OK, True, []),  # first model: floors + infra only
        ({"ndcg@10": 0.04}, None, OK, False, ["floor ndcg@10"]),
        ({"ndcg@10": 0.10}, {"ndcg@10": 0.105}, OK, True, []),  # drop 0.005 <= 0.01
        ({"ndcg@10": 0.10}, {"ndcg@10": 0.12}, OK, False, ["drop ndcg@10"]),  # drop 0.02
        ({"ndcg@10": 0.10}, None, Infra(False, False, 0.0, "ImportError"), False,
         ["loads in a fresh process", "answers a sample request", "latency"]),
        ({"ndcg@10": 0.10}, None, Infra(True, True, 250.0), False, ["latency"]),
    ],
)  # fmt: skip
def test_decision_table(candidate, champion, infra, passed, failing) -> None:
    d = decide(candidate, champion, POLICY, infra)
    assert d.passed is passed
    assert [c.name for c in d.checks if not c.passed] == failing
    assert len(d.reasons) == len(failing)


def test_slices_and_significance() -> None:
    policy = GatePolicy({"ndcg@10": 0.0}, {"ndcg@10": 0.01}, 0.02, True, 100.0)
    cand, champ = {"ndcg@10": 0.12}, {"ndcg@10": 0.11}
    # the cold-start slice dropped by 0.03 > 0.02; the interval includes zero
    d = decide(cand, champ, policy, OK, {"cold": 0.05, "warm": 0.15}, {"cold": 0.08, "warm": 0.14},
               (-0.001, 0.02))  # fmt: skip
    assert not d.passed
    assert {c.name for c in d.checks if not c.passed} == {"slice cold", "significant gain"}
    d = decide(cand, champ, policy, OK, {"cold": 0.07, "warm": 0.15}, {"cold": 0.08, "warm": 0.14},
               (0.002, 0.02))  # fmt: skip
    assert d.passed
    # a slice the champion reports but the candidate does not is a failure, not a pass
    d = decide(cand, champ, policy, OK, {"warm": 0.15}, {"cold": 0.08, "warm": 0.14}, (0.1, 0.2))
    assert "slice cold: missing from the candidate's report" in d.reasons


def test_unknown_metric_is_an_error() -> None:
    with pytest.raises(ValueError, match="no 'ndcg@10'"):
        decide({"recall@10": 0.2}, None, POLICY, OK)

"""The promotion gate's decision table."""

from __future__ import annotations

import pytest

from recfusion.registry.gate import Check, Decision, GatePolicy, Infra, decide, next_step

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


@pytest.mark.parametrize(
    ("significant_only", "interval", "passed"),
    [
        (False, (-0.03, 0.004), False),  # size alone: drop 0.02 > 0.01 fails
        (True, (-0.03, 0.004), True),  # over the limit, but the interval reaches zero: noise
        (True, (-0.03, -0.002), False),  # over the limit and significant
        (True, None, False),  # no interval: judged by size
    ],
)  # fmt: skip
def test_drops_over_the_limit_fail_only_when_significant(significant_only, interval,
                                                         passed) -> None:  # fmt: skip
    policy = GatePolicy({"ndcg@10": 0.0}, {"ndcg@10": 0.01}, 0.02, False, 100.0, significant_only)
    intervals = {} if interval is None else {"ndcg@10": interval, "cold": interval}
    d = decide({"ndcg@10": 0.10}, {"ndcg@10": 0.12}, policy, OK, {"cold": 0.05}, {"cold": 0.08},
               None, intervals)  # fmt: skip
    assert d.passed is passed
    failing = [] if passed else ["drop ndcg@10", "slice cold"]
    assert [c.name for c in d.checks if not c.passed] == failing
    if interval is not None:
        assert f"[{interval[0]:+.4f}, {interval[1]:+.4f}]" in d.checks[1].detail


def test_a_drop_within_the_limit_passes_whatever_its_interval() -> None:
    policy = GatePolicy({"ndcg@10": 0.0}, {"ndcg@10": 0.01}, 0.02, False, 100.0, True)
    d = decide({"ndcg@10": 0.115}, {"ndcg@10": 0.12}, policy, OK, None, None, None,
               {"ndcg@10": (-0.009, -0.001)})  # fmt: skip
    assert d.passed


MALFORMED = "malformed answer: columns [...], short lists ['u1']"


@pytest.mark.parametrize(
    ("infra", "expected"),
    [
        (OK, [("loads in a fresh process", True, "ok"), ("answers a sample request", True, "ok"),
              ("latency", True, "20.0 ms vs budget 100.0 ms")]),
        # loaded, but the answer was malformed: loading passed, the answer failed with the
        # probe's reason (once), and no latency was measured
        (Infra(True, False, float("inf"), MALFORMED),
         [("loads in a fresh process", True, "ok"),
          ("answers a sample request", False, MALFORMED),
          ("latency", False, "not measured: no well-formed answer")]),
        (Infra(False, False, float("inf"), "load failed: ImportError: x"),
         [("loads in a fresh process", False, "load failed: ImportError: x"),
          ("answers a sample request", False, "not tried: the model did not load"),
          ("latency", False, "not measured: no well-formed answer")]),
    ],
)  # fmt: skip
def test_a_failed_probe_reads_as_a_failure_with_its_reason_once(infra, expected) -> None:
    checks = decide({"ndcg@10": 0.10}, None, POLICY, infra).checks[-3:]
    assert [(c.name, c.passed, c.detail) for c in checks] == expected
    assert "inf" not in " ".join(c.detail for c in checks)


PASSED = Decision(True, [Check("latency", True, "20.0 ms vs budget 100.0 ms")])
REJECTED = Decision(False, [Check("floor ndcg@10", False, "0.0400 vs floor 0.0500"),
                            Check("latency", True, "20.0 ms vs budget 100.0 ms")])  # fmt: skip


@pytest.mark.parametrize(
    ("decision", "outcome", "says"),
    [
        (PASSED, "staging",
         'then promote version 4: `recfusion registry promote 4 --to production --reason "reviewed gate.md"`'),
        (PASSED, "production", "none: version 4 was promoted to production automatically"),
        (REJECTED, "rejected",
         "version 4 cannot be promoted as it stands (floor ndcg@10: 0.0400 vs floor 0.0500)."),
    ],
)  # fmt: skip
def test_next_step_says_how_to_promote_or_why_not(decision, outcome, says) -> None:
    step = next_step(decision, outcome, "4")
    assert says in step
    forced = "`recfusion registry promote 4 --to production --force --reason"
    assert (forced in step) is (outcome == "rejected")  # the override only after a rejection

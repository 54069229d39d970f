"""The promotion gate: a pure decision from the candidate's metrics, the champion's metrics
re-computed on the same test data, a policy, and the infrastructure check.

No MLflow here: the registry code carries the decision out (aliases, tags, the gate report).
The first model ever has no champion, so only the floors and the infrastructure check apply.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class GatePolicy:
    floors: Mapping[str, float]  # metric -> lowest acceptable value
    max_drop: Mapping[str, float]  # metric -> largest allowed drop against the champion
    max_slice_drop: float  # largest allowed drop of any slice's metric against the champion
    require_significant_gain: bool  # the bootstrap interval of the gain must lie above zero
    latency_budget_ms: float  # slowest acceptable answer to the sample request
    significant_drops_only: bool = False  # a drop over the limit fails only if it is not noise


@dataclass(frozen=True)
class Infra:
    loads: bool  # the packaged model loaded in a fresh process
    answers: bool  # it answered the sample request with well-formed rows
    latency_ms: float  # how long that answer took
    error: str | None = None


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    detail: str


@dataclass(frozen=True)
class Decision:
    passed: bool
    checks: list[Check] = field(default_factory=list)

    @property
    def reasons(self) -> list[str]:
        """Why it failed (empty when it passed)."""
        return [f"{c.name}: {c.detail}" for c in self.checks if not c.passed]


def decide(
    candidate: Mapping[str, float],
    champion: Mapping[str, float] | None,
    policy: GatePolicy,
    infra: Infra,
    candidate_slices: Mapping[str, float] | None = None,
    champion_slices: Mapping[str, float] | None = None,
    gain_interval: tuple[float, float] | None = None,
    drop_intervals: Mapping[str, tuple[float, float]] | None = None,
) -> Decision:
    """Applies every rule of `policy`; the candidate passes only if every check passes.

    Args:
        candidate: the candidate's overall metrics, e.g. {"ndcg@10": 0.11}.
        champion: the production model's metrics on the same test data, or None for the first.
        policy: the thresholds.
        infra: the fresh-process load / answer / latency check.
        candidate_slices, champion_slices: slice name -> metric (cold-start, long-tail, groups).
        gain_interval: bootstrap interval of candidate - champion on the primary metric.
        drop_intervals: metric or slice name -> paired-bootstrap interval of candidate -
            champion. With `policy.significant_drops_only`, a drop over its limit whose interval
            reaches zero or above passes (it cannot be told from noise); a drop without an
            interval is judged by its size alone.

    Raises:
        ValueError: a floor or drop names a metric the candidate does not report.
    """
    checks: list[Check] = []
    for metric, floor in policy.floors.items():
        value = _get(candidate, metric, "candidate")
        checks.append(Check(f"floor {metric}", value >= floor, f"{value:.4f} vs floor {floor:.4f}"))
    if champion is not None:
        intervals = drop_intervals or {}
        for metric, allowed in policy.max_drop.items():
            new, old = _get(candidate, metric, "candidate"), _get(champion, metric, "champion")
            checks.append(_drop_check(f"drop {metric}", new, old, allowed, policy,
                                      intervals.get(metric)))  # fmt: skip
        for name, old in (champion_slices or {}).items():
            if candidate_slices is None or name not in candidate_slices:
                missing = "missing from the candidate's report"
                checks.append(Check(slice_check(name), False, missing))
                continue
            checks.append(_drop_check(slice_check(name), candidate_slices[name], old,
                                      policy.max_slice_drop, policy, intervals.get(name)))  # fmt: skip
        if policy.require_significant_gain:
            ok = gain_interval is not None and gain_interval[0] > 0
            detail = ("no bootstrap interval given" if gain_interval is None else
                      f"interval [{gain_interval[0]:+.4f}, {gain_interval[1]:+.4f}]")  # fmt: skip
            checks.append(Check("significant gain", ok, detail))
    checks += infra_checks(infra, policy.latency_budget_ms)
    return Decision(all(c.passed for c in checks), checks)


def slice_check(name: str) -> str:
    """The name of the drop check of slice `name` (e.g. "slice gender=F")."""
    return f"slice {name}"


def promote_command(version: str, force: bool = False) -> str:
    """The command that moves `version` to production by hand (`recfusion registry promote`);
    `force` overrides a rejection, recorded with the reason."""
    reason = "why the gate is overridden" if force else "reviewed gate.md"
    return (
        f"recfusion registry promote {version} --to production"
        f'{" --force" if force else ""} --reason "{reason}"'
    )


def next_step(decision: Decision, outcome: str, version: str) -> str:
    """What a person does after the gate: nothing after an automatic promotion, the promote
    command after a pass, the reasons and the recorded override after a rejection.

    Args:
        outcome: where the version ended: "production", "staging" or "rejected".
    """
    if outcome == "production":
        return (
            f"none: version {version} was promoted to production automatically "
            "(registry.gate.auto_promote: production)."
        )
    if decision.passed:
        return (
            f"review this report and reports/evaluation.html, then promote version {version}:"
            f" `{promote_command(version)}`."
        )
    return (
        f"version {version} cannot be promoted as it stands ({'; '.join(decision.reasons)})."
        " Fix the cause and rerun the pipeline, or override the gate with a recorded reason:"
        f" `{promote_command(version, force=True)}`."
    )


def infra_checks(infra: Infra, budget_ms: float) -> list[Check]:
    """Load, answer and latency checks; the probe's error is told once, at the step that
    failed, and the steps after it say they were not reached."""
    loads = Check("loads in a fresh process", infra.loads,
                  "ok" if infra.loads else infra.error or "failed")  # fmt: skip
    if not infra.loads:
        answers = Check("answers a sample request", False, "not tried: the model did not load")
    else:
        answers = Check("answers a sample request", infra.answers,
                        "ok" if infra.answers else infra.error or "failed")  # fmt: skip
    if not infra.answers:
        latency = Check("latency", False, "not measured: no well-formed answer")
    else:
        latency = Check("latency", infra.latency_ms <= budget_ms,
                        f"{infra.latency_ms:.1f} ms vs budget {budget_ms:.1f} ms")  # fmt: skip
    return [loads, answers, latency]


def _drop_check(name: str, new: float, old: float, allowed: float, policy: GatePolicy,
                interval: tuple[float, float] | None) -> Check:  # fmt: skip
    """Fails a drop of more than `allowed`, unless drops must be significant and the interval
    of candidate - champion reaches zero."""
    drop = old - new
    detail = f"{new:.4f} vs champion {old:.4f} (drop {drop:+.4f}, allowed {allowed:.4f}"
    if interval is not None:
        detail += f"; interval of the difference [{interval[0]:+.4f}, {interval[1]:+.4f}]"
    if drop <= allowed:
        return Check(name, True, detail + ")")
    if policy.significant_drops_only and interval is not None and interval[1] >= 0:
        return Check(name, True, detail + "; over the limit but not significant: noise)")
    return Check(name, False, detail + ")")


def _get(metrics: Mapping[str, float], name: str, whose: str) -> float:
    if name not in metrics:
        raise ValueError(
            f"the {whose} metrics have no '{name}' (have: {', '.join(sorted(metrics))})"
        )
    return float(metrics[name])

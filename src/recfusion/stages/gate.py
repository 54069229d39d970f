"""Stage `gate`: decide whether the newly registered candidate may replace production.

Reads reports/register.json, the workspace's prepared data and, from the registry, the
candidate and the current `production` version (the candidate is also loaded and timed in a
fresh process). `run` asks both for the test users' top lists (knowing users by train +
validation), so both are scored on the same test data, and decides: `registry.gate` in
params.yaml holds the policy; recfusion.registry.gate.decide makes the decision. `write_outputs`
carries it out.

Pass: alias `staging` (and `production` when gate.auto_promote is production). Fail: status
rejected. Either way every check is written as version tags, reports/gate.md (also logged to
the MLflow run) and reports/gate.json (DVC metrics). A refused candidate is a result, not an
error: the stage exits 0.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
from mlflow import MlflowClient

from recfusion.config import Config, RegistryConfig
from recfusion.data.io import read_json, write_json
from recfusion.evaluation.metric_names import ordered, slice_label
from recfusion.metrics.ranking import paired_bootstrap
from recfusion.models.dataset import build_model_data, read_prepared
from recfusion.paths import PREPARED_DIR, REPORTS_DIR
from recfusion.privacy import pseudonym_key
from recfusion.registry.gate import (
    Check,
    Decision,
    GatePolicy,
    Infra,
    decide,
    next_step,
    slice_check,
)
from recfusion.registry.moves import holder, promote, reject
from recfusion.registry.tracking import TrackingUnavailable, connect, metric_name
from recfusion.serving.probe import probe
from recfusion.serving.pyfunc import local_workspace
from recfusion.serving.recommender import Recommender
from recfusion.serving.scoring import Scores, TestSet, build_test_set, score_recommender
from recfusion.serving.store import OnlineStore, prepared_store
from recfusion.stages.entry import guarded, stage_config, stops_on

log = logging.getLogger(__name__)
ROOT = Path(".")  # the workspace: the project root
EVAL_HISTORY = ("train", "val")
PROBE_UNKNOWN_USER = "gate-probe-unknown-user"


@dataclass(frozen=True)
class GateInputs:
    registered: dict[str, Any]  # reports/register.json: run id, model name, version, URIs
    test: TestSet  # the test users, their positives, slices and long-tail items
    infra: Infra  # the candidate loaded, asked and timed in a fresh process
    candidate: Recommender  # the registered candidate, knowing users by EVAL_HISTORY
    champion_version: str | None  # the version @production (None: the first model)
    champion: Recommender | None  # it, loaded alike (None: no champion, or it failed to load)
    champion_error: str | None = None  # why the champion could not be loaded


@dataclass(frozen=True)
class GateResult:
    registry: RegistryConfig  # where the decision is carried out
    run_id: str  # the candidate's MLflow run (gets gate.md and the champion's metrics)
    version: str  # the candidate's version
    decision: Decision
    outcome: str  # where the version ends: "rejected", "staging" or "production"
    report: str  # reports/gate.md
    production_metrics: dict[str, float]  # the champion re-scored (empty without one)
    summary: dict[str, Any]  # reports/gate.json


def policy_of(cfg: Config) -> GatePolicy:
    g = cfg.registry.gate
    return GatePolicy(g.floors, g.max_drop, g.max_slice_drop, g.require_significant_gain,
                      g.latency_budget_ms, g.significant_drops_only)  # fmt: skip


def drop_intervals(cand: Scores, champ: Scores, metrics: set[str], samples: int,
                   seed: int) -> dict[str, tuple[float, float]]:  # fmt: skip
    """Paired-bootstrap interval of candidate - champion for each of `metrics` and every slice
    both were scored on, over the same users (users without a value in either are left out)."""
    pairs = {**{m: (cand.per_user[m], champ.per_user[m]) for m in metrics
                if m in cand.per_user and m in champ.per_user},
             **{n: (v, champ.slice_per_user[n]) for n, v in cand.slice_per_user.items()
                if n in champ.slice_per_user}}  # fmt: skip
    out = {}
    for name, (new, old) in pairs.items():
        both = np.isfinite(new) & np.isfinite(old)
        if both.sum() >= 2:
            b = paired_bootstrap(new[both], old[both], samples, seed)
            out[name] = (b["ci_low"], b["ci_high"])
    return out


def gate_report(name: str, version: str, champion: str | None, decision: Decision,
                outcome: str, cand: Scores, champ: Scores | None) -> str:  # fmt: skip
    """The Markdown gate report: the outcome and the next step, every check, the metrics side
    by side (in `metric_names.ordered` order, then the slices, each named with its metric)."""
    verdict = "PASSED" if decision.passed else "REJECTED"
    lines = [f"# Gate: {name} version {version} {verdict}", "",
             f"Champion: {'version ' + champion if champion else 'none (first model)'}", "",
             f"**Next step**: {next_step(decision, outcome, version)}", "",
             "| check | result | detail |", "|---|---|---|"]  # fmt: skip
    slices = [*cand.slices, *(champ.slices if champ else {})]
    labels = {slice_check(s): slice_label(s) for s in slices}
    lines += [f"| {labels.get(c.name, c.name)} | {'pass' if c.passed else 'FAIL'} | {c.detail} |"
              for c in decision.checks]  # fmt: skip
    lines += ["", "| metric | candidate | production |", "|---|---|---|"]
    old = {} if champ is None else {**champ.overall, **champ.slices}
    rows = [(key, key, value) for key, value in ordered(cand.overall).items()]
    rows += [(key, slice_label(key), value) for key, value in cand.slices.items()]
    for key, label, value in rows:
        before = old.get(key)
        lines.append(f"| {label} | {value:.4f} | {'-' if before is None else f'{before:.4f}'} |")
    return "\n".join(lines) + "\n"


def destination(decision: Decision, auto_promote: str) -> str:
    """Where a version goes: rejected, or staging (and production when auto_promote says so)."""
    if not decision.passed:
        return "rejected"
    return "production" if auto_promote == "production" else "staging"


def carry_out(client: MlflowClient, rc: RegistryConfig, version: str, decision: Decision,
              outcome: str) -> None:  # fmt: skip
    """Tags every check on the version and moves its aliases to `outcome` (`destination`)."""
    name, uri = rc.model_name, rc.tracking_uri
    client.set_model_version_tag(name, version, "gate.passed", str(decision.passed).lower())
    for i, c in enumerate(decision.checks):
        client.set_model_version_tag(name, version, f"gate.check.{i:02d}",
                                     f"{'pass' if c.passed else 'FAIL'} {c.name}: {c.detail}"[:4900])  # fmt: skip
    if outcome == "rejected":
        reject(client, name, version, "; ".join(decision.reasons))
        return
    promote(client, name, version, "staging", "passed the gate", uri)
    if outcome == "production":
        promote(client, name, version, "production", "passed the gate; auto_promote", uri)


def load_version(uri: str, tmp: Path, store: OnlineStore) -> Recommender:
    """Downloads a registered recommender into `tmp` and assembles it reading users from
    `store` (one knowing them by EVAL_HISTORY, to score the test split)."""
    return Recommender.load(local_workspace(uri, tmp), store)


def read_inputs(cfg: Config, tmp: Path, root: Path = ROOT) -> GateInputs:
    """The registered candidate and the production version, downloaded into `tmp` (which must
    outlive `run`), the test set of `root`'s prepared data, and the fresh-process check.

    Raises:
        TrackingUnavailable: the tracking store cannot be reached.
    """
    reg = read_json(root / REPORTS_DIR / "register.json")
    rc, g = cfg.registry, cfg.registry.gate
    client = connect(rc.tracking_uri)
    mlflow.set_tracking_uri(rc.tracking_uri)
    mlflow.set_registry_uri(rc.tracking_uri)
    name = reg["model_name"]
    champion_version = holder(client, name, "production")
    prepared = read_prepared(root / PREPARED_DIR)
    test = build_test_set(prepared, build_model_data(prepared, cfg.train), cfg.evaluate.head_share,
                          cfg.evaluate.max_users, cfg.seed)  # fmt: skip
    env = {**os.environ, "MLFLOW_TRACKING_URI": rc.tracking_uri}
    sample = [*test.user_ids[: max(1, g.sample_requests - 1)].tolist(), PROBE_UNKNOWN_USER]
    infra = probe(reg["registered_uri"], sample, g.sample_requests, env)
    log.info("gate: fresh-process check loads=%s answers=%s p95 %.1f ms", infra.loads,
             infra.answers, infra.latency_ms)  # fmt: skip
    # both versions read the same users: the test users, known by their train + validation events
    store = prepared_store(prepared, EVAL_HISTORY, pseudonym_key(root), tmp / "store.sqlite",
                           test.user_ids)  # fmt: skip
    candidate = load_version(reg["registered_uri"], tmp / "candidate", store)
    champion, champion_error = None, None
    if champion_version is not None:
        try:
            champion = load_version(f"models:/{name}@production", tmp / "prod", store)
        except (OSError, ValueError) as e:
            champion_error = not_rescored(champion_version, e)
    return GateInputs(reg, test, infra, candidate, champion_version, champion, champion_error)


def not_rescored(version: str | None, error: Exception) -> str:
    """The failed check's reason when the champion cannot be loaded or scored."""
    return f"production version {version} could not be re-scored: {error}"


def run(cfg: Config, inputs: GateInputs) -> GateResult:
    """Scores the candidate and the champion on the same test users and decides."""
    g = cfg.registry.gate
    reg = inputs.registered
    name, version = reg["model_name"], str(reg["version"])
    ks = sorted(cfg.evaluate.ks)
    cand = score_recommender(inputs.candidate, inputs.test, ks)
    champ, champ_error = None, inputs.champion_error
    if inputs.champion is not None:
        try:
            champ = score_recommender(inputs.champion, inputs.test, ks)
        except (OSError, ValueError) as e:
            champ_error = not_rescored(inputs.champion_version, e)
    checked = {g.metric, *g.max_drop}  # the gain's metric and the metrics with a drop limit
    intervals = ({} if champ is None else
                 drop_intervals(cand, champ, checked, g.bootstrap_samples, cfg.seed))  # fmt: skip
    gain = intervals.get(g.metric)
    decision = decide(cand.overall, None if champ is None else champ.overall, policy_of(cfg),
                      inputs.infra, cand.slices, None if champ is None else champ.slices, gain,
                      intervals)  # fmt: skip
    if champ_error:
        decision = Decision(False, [*decision.checks, Check("champion re-scored", False,
                                                            champ_error)])  # fmt: skip
    outcome = destination(decision, g.auto_promote)
    infra = inputs.infra
    summary = {"version": version, "champion": inputs.champion_version,
               "passed": decision.passed, "outcome": outcome, "reasons": decision.reasons,
               "candidate": cand.overall, "production": champ.overall if champ else None,
               "gain_interval": list(gain) if gain else None,
               "drop_intervals": {name: list(v) for name, v in intervals.items()},
               "infra": {"loads": infra.loads, "answers": infra.answers,
                         "latency_p95_ms": infra.latency_ms if infra.answers else None,
                         "error": infra.error}}  # fmt: skip
    report = gate_report(name, version, inputs.champion_version, decision, outcome, cand, champ)
    return GateResult(cfg.registry, reg["run_id"], version, decision, outcome, report,
                      champ.overall if champ else {}, summary)  # fmt: skip


def write_outputs(result: GateResult, root: Path = ROOT) -> None:
    """Carries the decision out (version tags, aliases or status rejected), writes
    reports/gate.md (also logged to the candidate's run, with the champion's metrics) and
    reports/gate.json.

    Raises:
        TrackingUnavailable: the tracking store cannot be reached.
    """
    rc = result.registry
    client = connect(rc.tracking_uri)
    carry_out(client, rc, result.version, result.decision, result.outcome)
    report = root / REPORTS_DIR / "gate.md"
    report.write_text(result.report, encoding="utf-8")
    client.log_artifact(result.run_id, str(report), "reports")
    for key, value in result.production_metrics.items():
        client.log_metric(result.run_id, f"production.{metric_name(key)}", value)
    write_json(result.summary, root / REPORTS_DIR / "gate.json")


def main(argv: list[str] | None = None) -> int:
    cfg = stage_config(__doc__, argv)
    with (
        stops_on(TrackingUnavailable, "no alias was moved, retry when it is back"),
        tempfile.TemporaryDirectory() as tmp,
    ):
        result = run(cfg, read_inputs(cfg, Path(tmp)))
        write_outputs(result)
    d = result.decision
    log.info("gate: version %s %s%s", result.version, result.outcome,
             "" if d.passed else " — " + "; ".join(d.reasons))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(guarded(main))

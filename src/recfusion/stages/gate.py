"""Stage `gate`: decide whether the newly registered candidate may replace production.

Reads reports/register.json and the workspace's prepared data. In the same run, the candidate
and the current `production` version are both downloaded from the registry and asked for the
test users' top lists (knowing users by train + validation), so both are scored on the same test
data; the candidate is also loaded and timed in a fresh process. `registry.gate` in params.yaml
holds the policy; recfusion.registry.gate.decide makes the decision.

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
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
from mlflow import MlflowClient

from recfusion.config import Config
from recfusion.data.io import read_json, write_json
from recfusion.evaluation.metrics import paired_bootstrap
from recfusion.evaluation.packaged import Scores, TestSet, build_test_set, score_recommender
from recfusion.models.dataset import build_model_data, read_prepared
from recfusion.paths import PREPARED_DIR, REPORTS_DIR
from recfusion.registry.gate import Check, Decision, GatePolicy, decide
from recfusion.registry.moves import holder, promote, reject
from recfusion.registry.tracking import TrackingUnavailable, connect, metric_name
from recfusion.serving.probe import probe
from recfusion.serving.pyfunc import local_workspace
from recfusion.serving.recommender import Recommender
from recfusion.stages.entry import guarded, stage_config, stops_on

log = logging.getLogger(__name__)
EVAL_HISTORY = ("train", "val")
PROBE_UNKNOWN_USER = "gate-probe-unknown-user"


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


def score_version(uri: str, test: TestSet, ks: list[int], tmp: Path) -> Scores:
    """Downloads a registered recommender and scores it on `test`."""
    recommender = Recommender.load(local_workspace(uri, tmp), EVAL_HISTORY)
    return score_recommender(recommender, test, ks)


def gate_report(name: str, version: str, champion: str | None, decision: Decision,
                cand: Scores, champ: Scores | None) -> str:  # fmt: skip
    """The Markdown gate report: the outcome, every check, the metrics side by side."""
    verdict = "PASSED" if decision.passed else "REJECTED"
    lines = [f"# Gate: {name} version {version} {verdict}", "",
             f"Champion: {'version ' + champion if champion else 'none (first model)'}", "",
             "| check | result | detail |", "|---|---|---|"]  # fmt: skip
    lines += [f"| {c.name} | {'pass' if c.passed else 'FAIL'} | {c.detail} |"
              for c in decision.checks]  # fmt: skip
    lines += ["", "| metric | candidate | production |", "|---|---|---|"]
    for key, value in {**cand.overall, **cand.slices}.items():
        old = None if champ is None else {**champ.overall, **champ.slices}.get(key)
        lines.append(f"| {key} | {value:.4f} | {'-' if old is None else f'{old:.4f}'} |")
    return "\n".join(lines) + "\n"


def carry_out(client: MlflowClient, cfg: Config, version: str, decision: Decision) -> str:
    """Tags every check on the version and moves aliases; returns where the version ended."""
    name, uri = cfg.registry.model_name, cfg.registry.tracking_uri
    client.set_model_version_tag(name, version, "gate.passed", str(decision.passed).lower())
    for i, c in enumerate(decision.checks):
        client.set_model_version_tag(name, version, f"gate.check.{i:02d}",
                                     f"{'pass' if c.passed else 'FAIL'} {c.name}: {c.detail}"[:4900])  # fmt: skip
    if not decision.passed:
        reject(client, name, version, "; ".join(decision.reasons))
        return "rejected"
    promote(client, name, version, "staging", "passed the gate", uri)
    if cfg.registry.gate.auto_promote == "production":
        promote(client, name, version, "production", "passed the gate; auto_promote", uri)
        return "production"
    return "staging"


def run(cfg: Config, root: Path) -> dict[str, Any]:
    reg = read_json(root / REPORTS_DIR / "register.json")
    rc, g = cfg.registry, cfg.registry.gate
    client = connect(rc.tracking_uri)
    mlflow.set_tracking_uri(rc.tracking_uri)
    mlflow.set_registry_uri(rc.tracking_uri)
    name, version = reg["model_name"], str(reg["version"])
    champion = holder(client, name, "production")
    prepared = read_prepared(root / PREPARED_DIR)
    test = build_test_set(prepared, build_model_data(prepared, cfg.train), cfg.evaluate.head_share)
    ks = sorted(cfg.evaluate.ks)
    env = {**os.environ, "MLFLOW_TRACKING_URI": rc.tracking_uri}
    sample = [*test.user_ids[: max(1, g.sample_requests - 1)].tolist(), PROBE_UNKNOWN_USER]
    infra = probe(reg["registered_uri"], sample, g.sample_requests, env)
    log.info("gate: fresh-process check loads=%s answers=%s p95 %.1f ms", infra.loads,
             infra.answers, infra.latency_ms)  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        cand = score_version(reg["registered_uri"], test, ks, Path(tmp) / "candidate")
        champ, champ_error = None, None
        if champion is not None:
            try:
                champ = score_version(f"models:/{name}@production", test, ks, Path(tmp) / "prod")
            except (OSError, ValueError) as e:
                champ_error = f"production version {champion} could not be re-scored: {e}"
    checked = {g.metric, *g.max_drop}  # the gain's metric and the metrics with a drop limit
    intervals = ({} if champ is None else
                 drop_intervals(cand, champ, checked, g.bootstrap_samples, cfg.seed))  # fmt: skip
    gain = intervals.get(g.metric)
    decision = decide(cand.overall, None if champ is None else champ.overall, policy_of(cfg),
                      infra, cand.slices, None if champ is None else champ.slices, gain,
                      intervals)  # fmt: skip
    if champ_error:
        decision = Decision(False, [*decision.checks, Check("champion re-scored", False,
                                                            champ_error)])  # fmt: skip
    outcome = carry_out(client, cfg, version, decision)
    report = gate_report(name, version, champion, decision, cand, champ)
    (root / REPORTS_DIR / "gate.md").write_text(report, encoding="utf-8")
    client.log_artifact(reg["run_id"], str(root / REPORTS_DIR / "gate.md"), "reports")
    for key, value in (champ.overall if champ else {}).items():
        client.log_metric(reg["run_id"], f"production.{metric_name(key)}", value)
    log.info("gate: version %s %s%s", version, outcome,
             "" if decision.passed else " — " + "; ".join(decision.reasons))  # fmt: skip
    return {"version": version, "champion": champion, "passed": decision.passed,
            "outcome": outcome, "reasons": decision.reasons,
            "candidate": cand.overall, "production": champ.overall if champ else None,
            "gain_interval": list(gain) if gain else None,
            "drop_intervals": {name: list(v) for name, v in intervals.items()},
            "infra": {"loads": infra.loads, "answers": infra.answers,
                      "latency_p95_ms": infra.latency_ms if infra.answers else None, "error": infra.error}}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    cfg = stage_config(__doc__, argv)
    with stops_on(TrackingUnavailable, "no alias was moved, retry when it is back"):
        write_json(run(cfg, Path(".")), REPORTS_DIR / "gate.json")
    return 0


if __name__ == "__main__":
    sys.exit(guarded(main))

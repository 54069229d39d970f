"""The evaluation report's header: what was evaluated (code, date, data, the packaged method)
and why the packaged method ships when another one scored higher. Presentation only: the
`evaluate` stage gathers the provenance, this module words it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from recfusion.config import FusionConfig
from recfusion.data.schema import TABLES
from recfusion.evaluation import html


@dataclass(frozen=True)
class Provenance:
    """What the report's header says about this run. Only the HTML shows it: in metrics.json a
    date or commit would make every run's metrics differ."""

    commit: str  # git HEAD ("unknown" outside git)
    dirty: bool  # code or params differ from the commit (registry.tracking.git_state's rule)
    evaluated_at: str  # when the stage read its inputs, UTC
    data_source: str  # data/raw/source.json described (`describe_source`)


def schema_order(table: str) -> tuple[int, str]:
    """Tables in the schema's order (users, items, events, queries), others after by name."""
    return (TABLES.index(table) if table in TABLES else len(TABLES), table)


def describe_source(info: dict[str, Any] | None) -> str:
    """data/raw/source.json in one line: the source, its text settings (size, paths), the seed
    and the row counts; "unknown" without one."""
    if not info:
        return "unknown (no data/raw/source.json)"
    settings = [f"{k} {v}" for k, v in info.get("params", {}).items() if isinstance(v, str)]
    head = ", ".join([str(info.get("source", "unknown")), *settings, f"seed {info.get('seed')}"])
    counts = info.get("rows", {})
    rows = ", ".join(f"{counts[t]:,} {t}" for t in sorted(counts, key=schema_order))
    return f"{head}: {rows}" if rows else head


def why_packaged(fusion: FusionConfig, result: dict[str, Any]) -> str:
    """Why the packaged method ships, and what it costs when another source or method has the
    higher test NDCG@10."""
    m, packaged = result["methods"], result["packaged"]
    top = max(m, key=lambda n: m[n]["ndcg@10"])
    if m[top]["ndcg@10"] <= m[packaged]["ndcg@10"]:
        return f"{packaged} has the highest test NDCG@10 of every source and fusion method."
    out = (
        f"{top} scored a higher test NDCG@10 than the packaged {packaged} "
        f"({m[top]['ndcg@10']:.4f} vs {m[packaged]['ndcg@10']:.4f}). The packaged method is "
        f"chosen in params.yaml (fusion.method: {fusion.method}), not by this evaluation."
    )
    if fusion.method == "cascade" and "fusion:stacking" in m:
        stack, c = m["fusion:stacking"], m[packaged]
        cap = fusion.cascade.max_per_brand
        brands = f"at most {cap} items of one brand" if cap else "no brand cap"
        out += (
            " The cascade takes the stacker's order (fusion:stacking) and applies business rules "
            "(no out-of-stock items; no items the user already bought, which every method here "
            f"excludes anyway; {brands}) and MMR diversity ({fusion.cascade.diversity:g}): "
            f"NDCG@10 {stack['ndcg@10']:.4f} -> {c['ndcg@10']:.4f}, intra-list diversity@10 "
            f"{stack['diversity@10']:.4f} -> {c['diversity@10']:.4f}."
        )
    if top.startswith("fusion:"):
        out += f" To ship {top} instead, set fusion.method: {top.split(':', 1)[1]} and rerun."
    return out


def report_header(fusion: FusionConfig, result: dict[str, Any], about: Provenance) -> str:
    """The HTML report's header: what was evaluated (code, date, data, the packaged method) and
    why that method ships. The model version is not known yet: `register` assigns it."""
    code = f"git {about.commit}"
    if about.dirty:
        code += " with uncommitted changes to code or params"
    rows = {
        "model version": "assigned by stage register, after this report (reports/model_card.md "
        "and reports/gate.md name it)",
        "code": code,
        "evaluated": about.evaluated_at,
        "data": about.data_source,
        "packaged method": f"{result['packaged']} (params.yaml fusion.method)",
    }
    cells = "".join(
        f"<tr><td>{html.escape(k)}</td><td>{html.escape(v)}</td></tr>" for k, v in rows.items()
    )
    return (
        f"<table class='header'>{cells}</table><p>{html.escape(why_packaged(fusion, result))}</p>"
    )

"""Runs expectation suites through GX Checkpoints whose action builds Data Docs.

One in-memory GX context per run; its only persistent output is the Data Docs site under
`docs_dir` (index.html, one page per suite and one per validation run), kept for review. Each
build is followed by `localize_site`, so the site loads no asset from a CDN and opens offline.
"""

from __future__ import annotations

import copy
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from recfusion.validation.offline import localize_site, node_modules
from recfusion.validation.suites import Suite

log = logging.getLogger(__name__)
SITE = "recfusion"


@dataclass(frozen=True)
class ExpectationOutcome:
    type: str
    level: str  # "row" | "table"
    why: str
    kwargs: dict[str, Any]  # as evaluated (parameters filled in), JSON-safe
    success: bool
    observed: Any  # observed value, or "unexpected N of M"
    unexpected_index: list[Any] = field(default_factory=list)  # row labels that failed
    error: str | None = None  # GX raised while evaluating (e.g. a missing column)
    parameters: dict[str, str] = field(default_factory=dict)  # kwarg -> the suite parameter

    @property
    def column(self) -> str | None:
        col = self.kwargs.get("column") or self.kwargs.get("column_list")
        return None if col is None else str(col)


@dataclass(frozen=True)
class SuiteOutcome:
    suite: str
    success: bool
    outcomes: list[ExpectationOutcome]

    @property
    def failed(self) -> list[ExpectationOutcome]:
        return [o for o in self.outcomes if not o.success]


class GXValidator:
    """Validates frames against suites with one GX Checkpoint per suite.

    Args:
        docs_dir: where the Data Docs site is written (created).

    Raises:
        FileNotFoundError: the browser assets the site is pointed at are not installed
            (`make setup` installs them).
    """

    def __init__(self, docs_dir: Path) -> None:
        os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")  # offline: no usage telemetry
        import great_expectations as gx
        from great_expectations.data_context.types.base import (
            DataContextConfig,
            InMemoryStoreBackendDefaults,
            ProgressBarsConfig,
        )

        self._gx = gx
        self._assets = node_modules()  # before any work: the site must be able to go offline
        self.docs_dir = Path(docs_dir).resolve()
        self.docs_dir.mkdir(parents=True, exist_ok=True)
        config = DataContextConfig(
            store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False),
            analytics_enabled=False,
            progress_bars=ProgressBarsConfig(globally=False),
            data_docs_sites={
                SITE: {
                    "class_name": "SiteBuilder",
                    "show_how_to_buttons": False,
                    "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
                    "store_backend": {
                        "class_name": "TupleFilesystemStoreBackend",
                        "base_directory": str(self.docs_dir),
                    },
                }
            },
        )
        self.context = gx.get_context(project_config=config, mode="ephemeral")
        self.source = self.context.data_sources.add_pandas("recfusion")

    def validate(self, suite: Suite, df: pd.DataFrame, parameters: dict[str, Any]) -> SuiteOutcome:
        """Runs `suite` on `df` through a Checkpoint that updates the Data Docs.

        Args:
            suite: the suite.
            df: the table; row labels in failures refer to its index.
            parameters: values for the suite's {"$PARAMETER": name} placeholders.
        """
        gx = self._gx
        batch = self.source.add_dataframe_asset(suite.name).add_batch_definition_whole_dataframe(
            "whole table"
        )
        named = [with_parameter_names(e) for e in suite.expectations]
        gx_suite = self.context.suites.add(
            gx.ExpectationSuite(
                name=suite.name,
                expectations=resolve_parameters(named, parameters, suite.name),
                meta=copy.deepcopy(suite.meta),
            )
        )
        definition = self.context.validation_definitions.add(
            gx.ValidationDefinition(data=batch, suite=gx_suite, name=suite.name)
        )
        checkpoint = self.context.checkpoints.add(
            gx.Checkpoint(
                name=f"recfusion-{suite.name}",
                validation_definitions=[definition],
                actions=[gx.checkpoint.UpdateDataDocsAction(name="data_docs", site_names=[SITE])],
                result_format={"result_format": "COMPLETE"},
            )
        )
        result = checkpoint.run(batch_parameters={"dataframe": df})
        # the action just rebuilt pages that load CDN assets: point them at local copies
        localize_site(self.docs_dir, self._assets)
        outcomes = [_outcome(r) for run in result.run_results.values() for r in run.results]
        return SuiteOutcome(suite.name, bool(result.success), outcomes)


def resolve_parameters(node: Any, parameters: dict[str, Any], suite: str) -> Any:
    """A copy of `node` with every {"$PARAMETER": name} replaced by its value.

    Values are filled in before the suite reaches GX (rather than passed as GX expectation
    parameters) so that the Data Docs show the concrete bounds and can draw the expected
    distributions.

    Raises:
        ValueError: a placeholder names a parameter that was not given.
    """
    if isinstance(node, dict):
        if set(node) == {"$PARAMETER"}:
            name = node["$PARAMETER"]
            if name not in parameters:
                raise ValueError(f"suite '{suite}': no value for parameter '{name}'")
            return copy.deepcopy(parameters[name])
        return {k: resolve_parameters(v, parameters, suite) for k, v in node.items()}
    if isinstance(node, list):
        return [resolve_parameters(v, parameters, suite) for v in node]
    return copy.deepcopy(node)


def with_parameter_names(expectation: dict[str, Any]) -> dict[str, Any]:
    """A copy of `expectation` whose `meta.parameters` records which kwarg held which
    {"$PARAMETER": name}, so a message can name the params key behind a bound."""
    names = {
        k: v["$PARAMETER"]
        for k, v in expectation.get("kwargs", {}).items()
        if isinstance(v, dict) and set(v) == {"$PARAMETER"}
    }
    meta = {**expectation.get("meta", {}), "parameters": names}
    return {**expectation, "meta": meta}


def _outcome(r: Any) -> ExpectationOutcome:
    config = r.expectation_config
    meta = config.meta or {}
    kwargs = {k: v for k, v in dict(config.kwargs).items() if k != "batch_id"}
    res = dict(r.result or {})
    if "observed_value" in res:
        observed: Any = res["observed_value"]
    elif "unexpected_count" in res:
        observed = f"unexpected {res['unexpected_count']} of {res.get('element_count')}"
    else:
        observed = None
    return ExpectationOutcome(
        type=str(config.type),
        level=str(meta.get("level", "table")),
        why=str(meta.get("why", "")),
        kwargs=json.loads(json.dumps(kwargs, default=str)),
        success=bool(r.success),
        observed=json.loads(json.dumps(observed, default=str)),
        unexpected_index=list(res.get("unexpected_index_list") or []),
        error=_exception_message(r.exception_info),
        parameters=dict(meta.get("parameters", {})),
    )


def _exception_message(info: Any) -> str | None:
    """The first exception message in GX's (possibly nested) exception info."""
    if not isinstance(info, dict):
        return None
    if info.get("raised_exception") and info.get("exception_message"):
        return str(info["exception_message"])
    for value in info.values():
        found = _exception_message(value)
        if found:
            return found
    return None

"""Schemathesis against a running `recfusion serve`: requests generated from the app's OpenAPI
schema, valid ones and invalid ones (negative mode: wrong types, missing and extra fields), each
sent over HTTP; any 5xx is a defect. Used by tests/e2e/test_live_serving.py (a few hundred
requests) and benchmarks/fuzz_http.py (thousands, results as JSON)."""

from __future__ import annotations

import contextlib
from collections import Counter
from typing import Any


def fuzz_api(url: str, examples: int, seed: int) -> dict[str, Any]:
    """Up to `examples` generated requests per operation and mode; the status codes seen, the
    requests sent, and the first few that got a 5xx (operation, status, answer prefix)."""
    import schemathesis

    schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
    statuses: Counter[int] = Counter()
    per_operation: Counter[str] = Counter()
    errors: list[dict[str, Any]] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        for mode in schemathesis.GenerationMode:
            label = f"{operation.method.upper()} {operation.path} ({mode.value})"
            for status, answer in send_generated(operation, mode, url, examples, seed):
                statuses[status] += 1
                per_operation[label] += 1
                if status >= 500 and len(errors) < 10:
                    errors.append({"operation": label, "status": status, "answer": answer})
    return {"requests": sum(statuses.values()), "per_operation": dict(per_operation),
            "status_codes": {str(k): v for k, v in sorted(statuses.items())},
            "server_errors": sum(v for k, v in statuses.items() if k >= 500),
            "first_server_errors": errors}  # fmt: skip


def send_generated(operation: Any, mode: Any, url: str, examples: int,
                   seed: int) -> list[tuple[int, str]]:  # fmt: skip
    """Up to `examples` requests of one operation in one generation mode: (status, answer
    prefix) of each."""
    import hypothesis
    from hypothesis import HealthCheck, Phase

    sent: list[tuple[int, str]] = []

    @hypothesis.seed(seed)
    @hypothesis.settings(max_examples=examples, deadline=None, database=None,
                         phases=[Phase.generate], suppress_health_check=list(HealthCheck))  # fmt: skip
    @hypothesis.given(case=operation.as_strategy(generation_mode=mode))
    def send(case: Any) -> None:
        response = case.call(base_url=url, timeout=60)
        sent.append((response.status_code, response.text[:300]))

    with contextlib.suppress(hypothesis.errors.Unsatisfiable):  # GET /health: nothing to negate
        send()
    return sent

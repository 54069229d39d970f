"""The search part of the evaluation: every variant on the held-out (test-split) queries, a few
example queries with their results, and the HTML section of the evaluation report.

The searcher comes in personalised for users known by HISTORY (`search.searcher.load_searcher`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from recfusion.evaluation import html
from recfusion.models.dataset import ModelData
from recfusion.search.evaluation import evaluate_variants, query_set
from recfusion.search.searcher import Searcher

HISTORY = ["train", "val"]  # what the searcher knows of users when test queries arrive


def evaluate_search(searcher: Searcher, queries: pd.DataFrame, data: ModelData,
                    examples: int = 3) -> dict[str, Any]:  # fmt: skip
    """Test-query metrics of each variant and the gain of personalised over lexical."""
    test = query_set(queries, data, ["test"])
    if len(test) == 0:
        return {"test_queries": 0}
    variants = evaluate_variants(searcher, test)
    lexical = variants["lexical"]["ndcg@10"]
    gain = variants["personalised"]["ndcg@10"] / lexical - 1.0 if lexical > 0 else float("nan")
    shown = []
    for n in range(min(examples, len(test))):
        items, _, why = searcher.search(test.texts[n], int(test.rows[n]), 5, np.array([], int))
        clicked = int(test.clicked[n])
        results = [
            {
                "item_id": str(data.catalog.item_ids[i]),
                "title": str(data.catalog.titles[i]),
                "reason": r,
            }
            for i, r in zip(items, why, strict=True)
        ]
        shown.append(
            {
                "query": test.texts[n],
                "clicked": str(data.catalog.titles[clicked]),
                "clicked_id": str(data.catalog.item_ids[clicked]),
                "results": results,
            }
        )
    return {"test_queries": len(test), "test_queries_without_click": test.without_click,
            "personalised_users": int((test.rows >= 0).sum()), "variants": variants,
            "personalised_gain_over_lexical": gain, "examples": shown}  # fmt: skip


def search_example(example: dict[str, Any]) -> str:
    """One example query of the report: its results with their item ids and reasons, the
    clicked item marked (or said to be missing from them)."""
    clicked_id = example["clicked_id"]
    missing = all(r["item_id"] != clicked_id for r in example["results"])
    heading = (
        f"<h3>'{html.escape(example['query'])}' <span class='note'>(clicked: "
        f"{html.escape(example['clicked'])} <code>{html.escape(clicked_id)}</code>"
        f"{', not among these results' if missing else ''})</span></h3>"
    )
    results = [{**r, "note": r["reason"]} for r in example["results"]]
    return heading + html.item_list(results, clicked_id, "clicked")


def search_section(result: dict[str, Any]) -> tuple[str, str]:
    """The evaluation report's search section."""
    if not result.get("test_queries"):
        return ("Search (held-out queries)", "<p>No labelled test queries in this data.</p>")
    table = html.table(result["variants"], ["ndcg@10", "mrr@10", "recall@10"])
    gain = result["personalised_gain_over_lexical"]
    examples = "".join(search_example(ex) for ex in result["examples"])
    note = (f"<p class='note'>{result['test_queries']} test queries with a click "
            f"({result['test_queries_without_click']} without a click left out), "
            f"{result['personalised_users']} by known users. Personalised vs lexical NDCG@10: "
            f"{gain:+.1%}.</p>")  # fmt: skip
    return ("Search on held-out queries: BM25, query tower, hybrid, personalised",
            table + note + examples)  # fmt: skip

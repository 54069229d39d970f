"""What users read in the reports: evaluation.html's tables, charts, lists and header, and the
metric order, slice labels and next step of model_card.md and gate.md, on tiny hand-made inputs."""

from __future__ import annotations

import re

import pytest

from recfusion.evaluation import header, html
from recfusion.evaluation.metric_names import lower_is_better, ordered, slice_label
from recfusion.evaluation.search_report import search_example
from recfusion.registry.gate import Check, Decision
from recfusion.serving.scoring import Scores
from recfusion.stages import gate, register
from tests.conftest import repo_config


def best_cells(page: str) -> list[str]:
    """The text of every highlighted cell, in page order."""
    return re.findall(r"<td class='best'>([^<]*)</td>", page)


def test_best_is_the_smallest_where_lower_is_better() -> None:
    heads = {
        "click": {"auc": 0.66, "log_loss": 0.57, "ece": 0.02},
        "purchase": {"auc": 0.65, "log_loss": 0.17, "ece": 0.01},
    }
    page = html.table(heads, ["auc", "log_loss", "ece"])
    # auc: 0.66 (click) is the larger; log loss 0.17 and ECE 0.01 (purchase) are the smaller
    assert best_cells(page) == ["0.6600", "0.1700", "0.0100"]


def test_best_in_rows_compares_methods_per_slice() -> None:
    rows = {
        "gender: F": {"a": 0.10, "b": 0.12},
        "gender: gap": {"a": 0.01, "b": 0.05},
        "long-tail items": {"a": 0.03, "b": 0.02},
    }
    page = html.table(rows, ["a", "b"], best_in="row")
    # per row: 0.12 (b) higher; gap 0.01 (a) smaller is better; 0.03 (a) higher
    assert best_cells(page) == ["0.1200", "0.0100", "0.0300"]
    assert best_cells(html.table(rows, ["a", "b"], best_in=None)) == []


@pytest.mark.parametrize(
    ("name", "lower"),
    [("log_loss", True), ("ece", True), ("rmse", True), ("mae", True), ("gender: gap", True),
     ("slice.gender.gap", True), ("latency_p95_ms", True), ("auc", False), ("ndcg@10", False),
     ("coverage@10", False), ("long-tail items", False)],
)  # fmt: skip
def test_lower_is_better(name: str, lower: bool) -> None:
    assert lower_is_better(name) is lower


def test_metrics_are_ordered_by_family_then_k_as_a_number() -> None:
    metrics = dict.fromkeys(["hit@10", "hit@20", "hit@5", "ndcg@10", "coverage@10", "recall@50",
                             "recall@5", "zeta", "novelty@10", "ndcg@5"], 0.0)  # fmt: skip
    # config's family order (recall, precision, ndcg, mrr, map, hit), beyond accuracy, the rest
    assert list(ordered(metrics)) == ["recall@5", "recall@50", "ndcg@5", "ndcg@10", "hit@5",
                                      "hit@10", "hit@20", "coverage@10", "novelty@10", "zeta"]  # fmt: skip


def test_slice_label_names_the_metric() -> None:
    assert slice_label("gender=F") == "ndcg@10, slice gender=F"


def test_bar_chart_draws_every_series_with_a_legend() -> None:
    svg = html.bar_chart({"packaged": {"cold": 0.1, "warm": 0.2}, "best": {"cold": 0.3}})
    fills = re.findall(r"<rect [^>]*fill='([^']+)'", svg)
    first, second = html.COLORS[:2]
    # the legend's two swatches, then packaged's cold and warm bars and best's cold bar
    assert sorted(fills) == sorted([first, second, first, first, second])
    assert ">packaged</text>" in svg and ">best</text>" in svg


def test_item_list_shows_ids_and_tells_same_titles_apart() -> None:
    items = [{"item_id": "i1", "title": "Red shoe", "note": "ease: because"},
             {"item_id": "i2", "title": "Blue hat"},
             {"item_id": "i3", "title": "Red shoe"}]  # fmt: skip
    page = html.item_list(items)
    assert page.count("<li>") == 3
    assert "Red shoe <code>i1</code>" in page and "(ease: because)" in page
    assert "Red shoe <code>i3</code> <span class='note'>(same title as no. 1, another item)" in page
    assert page.count("same title") == 1
    # the repeat's own note follows the same-title note in one parenthesis
    repeat = html.item_list([items[0], {**items[2], "note": "content: likes"}])
    assert "(same title as no. 1, another item; content: likes)" in repeat


def test_search_example_marks_the_clicked_item() -> None:
    example = {"query": "shoe", "clicked": "Red shoe", "clicked_id": "i3",
               "results": [{"item_id": "i1", "title": "Red shoe", "reason": "matches"},
                           {"item_id": "i3", "title": "Red shoe", "reason": "matches"}]}  # fmt: skip
    page = search_example(example)
    marked = re.findall(r"<li><strong>(.*?)</strong> <span class='mark'>clicked</span></li>", page)
    assert len(marked) == 1 and "<code>i3</code>" in marked[0]
    assert "not among these results" not in page
    missing = {**example, "clicked_id": "i9"}
    assert "not among these results" in search_example(missing)
    assert "class='mark'" not in search_example(missing)


def report(packaged_ndcg: float) -> dict:
    """metrics.json's methods: weighted 0.115, stacking 0.110 and the cascade as given."""
    return {
        "packaged": "fusion:cascade",
        "methods": {
            "source:two_tower": {"ndcg@10": 0.104, "diversity@10": 0.57},
            "fusion:weighted": {"ndcg@10": 0.115, "diversity@10": 0.62},
            "fusion:stacking": {"ndcg@10": 0.110, "diversity@10": 0.64},
            "fusion:cascade": {"ndcg@10": packaged_ndcg, "diversity@10": 0.73},
        },
    }


def test_why_packaged_says_what_scored_higher_and_what_the_cascade_costs() -> None:
    fusion = repo_config({"fusion": {"method": "cascade", "cascade": {"max_per_brand": 3}}}).fusion
    why = header.why_packaged(fusion, report(0.105))
    assert "fusion:weighted scored a higher test NDCG@10" in why and "(0.1150 vs 0.1050)" in why
    assert "fusion.method: cascade" in why and "at most 3 items of one brand" in why
    assert "NDCG@10 0.1100 -> 0.1050" in why and "diversity@10 0.6400 -> 0.7300" in why
    assert "set fusion.method: weighted" in why
    best = header.why_packaged(fusion, report(0.120))
    assert best == "fusion:cascade has the highest test NDCG@10 of every source and fusion method."


def test_header_names_code_data_date_and_method_but_no_version() -> None:
    fusion = repo_config().fusion
    about = header.Provenance("abc123", True, "2026-06-01 12:00 UTC", "synthetic, size small")
    shown = header.report_header(fusion, report(0.105), about)
    assert "git abc123 with uncommitted changes" in shown
    assert "2026-06-01 12:00 UTC" in shown and "synthetic, size small" in shown
    assert "fusion:cascade (params.yaml fusion.method)" in shown
    assert "assigned by stage register" in shown
    assert "src=" not in shown and "<link" not in shown


def test_describe_source() -> None:
    # source.json as ingest writes it (keys sorted); numbers and nulls among the params left out
    info = {"params": {"days": 90, "n_users": None, "size": "small"},
            "rows": {"events": 10, "items": 3000, "users": 4000}, "seed": 42,
            "source": "synthetic"}  # fmt: skip
    described = header.describe_source(info)
    assert described == "synthetic, size small, seed 42: 4,000 users, 3,000 items, 10 events"
    assert header.describe_source(None).startswith("unknown")


def gate_scores() -> Scores:
    overall = {"recall@5": 0.1, "ndcg@5": 0.09, "hit@5": 0.2, "recall@10": 0.14, "ndcg@10": 0.105,
               "hit@10": 0.27, "coverage@10": 0.34}  # fmt: skip
    return Scores(overall, {"gender=F": 0.1, "long_tail_items": 0.01}, {}, {})


def table_labels(markdown: str) -> list[str]:
    """The first cell of every row of the metrics table (after its header row)."""
    table = markdown.split("| metric | candidate | production |\n|---|---|---|\n")[1]
    return [line.split(" | ")[0].lstrip("| ") for line in table.strip().splitlines()]


def test_gate_report_orders_metrics_labels_slices_and_says_the_next_step() -> None:
    scores = gate_scores()
    failed = Decision(False, [Check("slice gender=F", False, "0.1 vs champion 0.2"),
                              Check("latency", True, "20 ms")])  # fmt: skip
    md = gate.gate_report("recfusion", "4", "3", failed, "rejected", scores, scores)
    assert table_labels(md) == ["recall@5", "recall@10", "ndcg@5", "ndcg@10", "hit@5", "hit@10",
                                "coverage@10", "ndcg@10, slice gender=F",
                                "ndcg@10, slice long_tail_items"]  # fmt: skip
    assert "| ndcg@10, slice gender=F | FAIL | 0.1 vs champion 0.2 |" in md
    assert "**Next step**: version 4 cannot be promoted" in md
    assert "--force --reason" in md


def test_model_card_names_the_version_orders_metrics_and_says_the_next_step() -> None:
    cfg = repo_config()
    metrics = {"hit@10": 0.27, "hit@20": 0.34, "hit@5": 0.21, "ndcg@10": 0.105, "ndcg@5": 0.09}
    result = {"packaged": "fusion:cascade", "best_source": "source:two_tower", "test_users": 10,
              "methods": {"fusion:cascade": metrics},
              "bootstrap_vs_best_source": {"fusion:cascade": {
                  "mean_diff": 0.001, "ci_low": -0.005, "ci_high": 0.009}}}  # fmt: skip
    tags = {"data.source": "synthetic:small", "data.version": "md5", "git.commit": "abc",
            "git.dirty": "false"}  # fmt: skip
    card = register.model_card(cfg, result, tags, "5")
    rows = re.findall(r"^\| (\w+@\d+) \|", card, re.M)
    assert rows == ["ndcg@5", "ndcg@10", "hit@5", "hit@10", "hit@20"]
    assert f"**Version**: {cfg.registry.model_name} version 5" in card
    assert "`recfusion registry promote 5 --to production --reason" in card

"""Search pieces on hand-made inputs: query encoding, BM25 candidates, reciprocal rank fusion,
the query column of requests, and filling keys an older params file lacks."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recfusion.config import fill_missing
from recfusion.search.evaluation import metrics_of
from recfusion.search.hybrid import rank_by_score, reciprocal_rank_fusion
from recfusion.search.lexical import LexicalIndex, item_documents
from recfusion.search.text import OOV, QueryEncoder, hash_gram, trigrams
from recfusion.serving.recommender import Request, RequestError, parse_requests


def test_trigrams_mark_word_boundaries() -> None:
    assert trigrams("tee") == ["#te", "tee", "ee#"]
    assert trigrams("a") == ["#a#"]


def test_a_typo_keeps_most_trigrams() -> None:
    # "jackets" -> #ja jac ack cke ket ets ts#; "jacekts" -> #ja jac ace cek ekt kts ts#
    shared = set(trigrams("jackets")) & set(trigrams("jacekts"))
    assert shared == {"#ja", "jac", "ts#"}
    assert hash_gram("jac", 100) == hash_gram("jac", 100)  # stable across calls
    assert 1 <= hash_gram("jac", 100) < 100  # 0 is padding


def test_query_encoder_ids_and_padding() -> None:
    enc = QueryEncoder.fit(["red shoes", "red boots", "red"], max_words=3, max_grams=4, buckets=50)
    assert enc.words == ("red", "boots", "shoes")  # by count, then alphabetical
    out = enc.encode(["Red SHOES!", "blue", ""])
    assert out["words"].tolist() == [[2, 4, 0], [OOV, 0, 0], [0, 0, 0]]
    assert (out["grams"][0] > 0).all()  # 5 + 7 trigrams, cut to 4
    assert (out["grams"][2] == 0).all()
    assert QueryEncoder.from_json(enc.to_json()) == enc


ITEMS = pd.DataFrame({
    "title": ["Zorvo wireless headphones", "Lumo leather boots", "Lumo cotton tshirts", None],
    "category": ["electronics>audio>headphones", "fashion>shoes>boots",
                 "fashion>clothing>tshirts", "home>kitchen>knives"],
    "brand": ["Zorvo", "Lumo", "Lumo", "Kaso"],
})  # fmt: skip


def test_bm25_finds_items_sharing_words_and_nothing_else() -> None:
    docs = item_documents(ITEMS)
    assert docs[1] == ["lumo", "leather", "boots", "fashion", "shoes", "boots", "lumo"]
    index = LexicalIndex.build(docs)
    items, scores = index.search(["boots", "lumo", "trainers", "", "knives"], k=3)
    assert items[0].tolist() == [1, -1, -1]  # only the boots share the word
    assert sorted(items[1][:2].tolist()) == [1, 2] and items[1][2] == -1
    assert (items[2] == -1).all() and (scores[2] == 0).all()  # a synonym BM25 cannot know
    assert (items[3] == -1).all()  # an empty query matches nothing
    assert items[4][0] == 3  # an item without a title is still found by its category


def test_bm25_refuses_an_empty_catalogue() -> None:
    with pytest.raises(ValueError, match="empty catalogue"):
        LexicalIndex.build([])


def test_reciprocal_rank_fusion_by_hand() -> None:
    # item 3: 1/(0+2) + 1/(0+1) = 1.5; item 7: 1/1 = 1; item 9: 1/2 = 0.5
    items, scores = reciprocal_rank_fusion([np.array([[7, 3]]), np.array([[3, 9]])], [1, 1], 0)
    assert items.tolist() == [[3, 7, 9]]
    assert scores.tolist() == [[1.5, 1.0, 0.5]]
    # weight 0 drops a list; -1 padding is ignored; an empty row stays empty
    items, _ = reciprocal_rank_fusion([np.array([[7, -1], [-1, -1]]), np.array([[3, 9], [-1, -1]])],
                                      [1, 0], 60)  # fmt: skip
    assert items.tolist() == [[7], [-1]]


def test_reciprocal_rank_fusion_checks_shapes() -> None:
    with pytest.raises(ValueError, match="one weight per list"):
        reciprocal_rank_fusion([np.array([[1]])], [1, 1], 60)
    with pytest.raises(ValueError, match="every list needs 1 rows"):
        reciprocal_rank_fusion([np.array([[1]]), np.array([[1], [2]])], [1, 1], 60)


def test_rank_by_score_keeps_padding_last() -> None:
    items = np.array([[4, 5, -1]])
    assert rank_by_score(items, np.array([[0.1, 0.9, 5.0]])).tolist() == [[5, 4, -1]]


def test_search_metrics_with_one_clicked_item() -> None:
    # query 0 finds its click at rank 2: NDCG 1/log2(3) = 0.6309, MRR 0.5; query 1 misses
    m = metrics_of(np.array([[8, 5], [1, 2]]), np.array([5, 9]))
    assert m["ndcg@10"] == pytest.approx(0.6309 / 2, abs=1e-4)
    assert m["mrr@10"] == pytest.approx(0.25)
    assert m["recall@10"] == pytest.approx(0.5)


def test_requests_carry_a_bounded_query() -> None:
    frame = pd.DataFrame({"user_id": ["u", "v", "w"], "k": [3, 3, 3],
                          "query": [" red shoes ", None, "!!"]})  # fmt: skip
    parsed = parse_requests(frame, 100, 20)
    assert parsed[0] == Request("u", 3, (), "red shoes") and parsed[0].is_search
    assert not parsed[1].is_search and not parsed[2].is_search  # no letters: a recommendation
    with pytest.raises(RequestError, match="row 0: query has 21 characters; at most 20"):
        parse_requests(pd.DataFrame({"user_id": ["u"], "k": [3], "query": ["x" * 21]}), 100, 20)
    with pytest.raises(RequestError, match="query must be a string"):
        parse_requests(pd.DataFrame({"user_id": ["u"], "k": [3], "query": [5]}), 100, 20)


def test_fill_missing_adds_only_absent_keys() -> None:
    raw = {"a": {"x": 1}, "c": 5}
    filled, added = fill_missing(raw, {"a": {"x": 2, "y": 3}, "b": 4, "c": 6})
    assert filled == {"a": {"x": 1, "y": 3}, "b": 4, "c": 5}
    assert added == ["a.y", "b"]
    assert raw == {"a": {"x": 1}, "c": 5}  # the input is not changed

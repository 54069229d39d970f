"""The hybrid searcher: BM25 and query-tower candidates fused by RRF, then personalised.

Variants (evaluated side by side):
- lexical: BM25 alone;
- semantic: the query tower alone, over the whole catalogue;
- hybrid: weighted RRF of the two candidate lists;
- personalised: the hybrid list re-fused with its own order by the ranking model's click
  probability for the searching user (anonymous or unknown users keep the hybrid order).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from recfusion.config import SearchConfig
from recfusion.models.dataset import ModelData
from recfusion.models.export import Retrieval
from recfusion.models.item_index import ItemIndex
from recfusion.models.ranking import RankingModel, head_scorer
from recfusion.models.ranking_data import usual_hour
from recfusion.models.tf_setup import tf
from recfusion.preparation.vocab import tokenize
from recfusion.search.hybrid import rank_by_score, reciprocal_rank_fusion
from recfusion.search.lexical import LexicalIndex
from recfusion.search.query_tower import QueryTower, embed_queries
from recfusion.search.text import QueryEncoder

VARIANTS = ("lexical", "semantic", "hybrid", "personalised")
# [n] user rows (-1 = anonymous), [n, m] catalogue positions (-1 = empty) -> [n, m] scores
PersonalScorer = Callable[[np.ndarray, np.ndarray], np.ndarray]
Lists = tuple[np.ndarray, np.ndarray]  # [n, candidates] BM25 and query-tower positions


@dataclass(frozen=True)
class SearchSettings:
    candidates: int  # candidates each retriever contributes
    rrf_k: int  # RRF constant
    lexical_weight: float  # RRF weight of BM25 (query tower = 1), chosen on validation
    personal_weight: float  # RRF weight of the ranking model's order, chosen on validation


def ranking_scorer(model: RankingModel, data: ModelData, history: np.ndarray,
                   hour: int) -> PersonalScorer:  # fmt: skip
    """The ranking model's click probability (its first head when it has no click head)."""
    heads_of = head_scorer(model, data, history, hour)

    def score(rows: np.ndarray, items: np.ndarray) -> np.ndarray:
        out = np.zeros(items.shape, dtype=np.float32)
        known = rows >= 0
        if known.any():
            heads = heads_of(rows[known], items[known])
            name = "click" if "click" in heads else sorted(heads)[0]
            out[known] = heads[name]
        return out

    return score


@dataclass
class Searcher:
    encoder: QueryEncoder
    tower: QueryTower | None  # None: the data had no labelled queries; search is lexical only
    item_embeddings: np.ndarray  # [n_items, dim] the retrieval model's, frozen
    lexical_index: LexicalIndex
    settings: SearchSettings
    personal: PersonalScorer | None = None
    index: ItemIndex | None = None  # the retrieval model's item index; None = exact scan

    def lexical(self, texts: Sequence[str]) -> np.ndarray:
        return self.lexical_index.search(texts, self.settings.candidates)[0]

    def semantic(self, texts: Sequence[str]) -> np.ndarray:
        if self.tower is None or not texts:
            return np.full((len(texts), self.settings.candidates), -1, dtype=np.int64)
        queries = embed_queries(self.tower, self.encoder, list(texts))
        empty = np.array([not tokenize(t) for t in texts])  # no word, hence no trigram
        index = self.index or ItemIndex(self.item_embeddings)
        ranked = index.top(queries, self.settings.candidates)
        ranked[empty] = -1  # a query without letters or digits means nothing to the tower
        return ranked

    def retrieve(self, texts: Sequence[str]) -> Lists:
        """The BM25 and the query-tower candidate lists of each query."""
        return self.lexical(texts), self.semantic(texts)

    def hybrid(self, texts: Sequence[str], lexical_weight: float | None = None,
               lists: Lists | None = None) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
        """([n, m] positions best first, -1 padded; [n, m] RRF scores). `lists`: the output of
        `retrieve(texts)` when the caller has it already."""
        weight = self.settings.lexical_weight if lexical_weight is None else lexical_weight
        lexical, semantic = lists if lists is not None else self.retrieve(texts)
        return reciprocal_rank_fusion([lexical, semantic], [weight, 1.0], self.settings.rrf_k)

    def model_order(self, items: np.ndarray, rows: np.ndarray) -> np.ndarray | None:
        """[n, m] each query's candidate `items` in the ranking model's order for the query's
        user (an anonymous query, row -1, keeps its own order); None without a ranking model or
        candidates."""
        if self.personal is None or items.shape[1] == 0:
            return None
        by_model = rank_by_score(items, self.personal(rows, np.maximum(items, 0)))
        anonymous = rows < 0
        by_model[anonymous] = items[anonymous]
        return by_model

    def personalised(self, texts: Sequence[str], rows: np.ndarray,
                     personal_weight: float | None = None, lexical_weight: float | None = None,
                     lists: Lists | None = None) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
        """The hybrid list re-fused with the ranking model's order for each query's user."""
        items, scores = self.hybrid(texts, lexical_weight, lists)
        weight = self.settings.personal_weight if personal_weight is None else personal_weight
        by_model = None if weight == 0 else self.model_order(items, rows)
        return self.fuse_model_order(items, scores, by_model, weight)

    def fuse_model_order(self, items: np.ndarray, scores: np.ndarray, by_model: np.ndarray | None,
                weight: float) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
        """The hybrid list (`items`, `scores`) fused with `by_model` at `weight`; unchanged
        when there is no model order or the weight is 0."""
        if by_model is None or weight == 0:
            return items, scores
        return reciprocal_rank_fusion([items, by_model], [1.0, weight], self.settings.rrf_k)

    def search(self, text: str, row: int, k: int, exclude: np.ndarray,
               ) -> tuple[np.ndarray, np.ndarray, list[str]]:  # fmt: skip
        """One query, personalised for user row `row` (-1 = anonymous): the top k catalogue
        positions not in `exclude`, their fused scores, and why each was found."""
        lexical, semantic = self.retrieve([text])
        items, scores = self.personalised([text], np.array([row]), lists=(lexical, semantic))
        items, scores = items[0], scores[0]
        keep = (items >= 0) & ~np.isin(items, exclude)
        items, scores = items[keep][:k], scores[keep][:k]
        words = tokenize(text)
        personal = row >= 0 and self.personal is not None and self.settings.personal_weight > 0
        why = [_reason(int(i), lexical[0], semantic[0], words, personal) for i in items]
        return items, scores, why

    def rank(self, variant: str, texts: Sequence[str], rows: np.ndarray) -> np.ndarray:
        """[n, m] catalogue positions of one variant (VARIANTS), best first, -1 padded."""
        if variant == "lexical":
            return self.lexical(texts)
        if variant == "semantic":
            return self.semantic(texts)
        if variant == "hybrid":
            return self.hybrid(texts)[0]
        if variant == "personalised":
            return self.personalised(texts, rows)[0]
        raise ValueError(f"unknown search variant {variant!r}; expected one of {VARIANTS}")

    # ------------------------------------------------------------------ files
    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.lexical_index.save(folder / "bm25")
        if self.tower is not None:
            tf.train.Checkpoint(tower=self.tower).write(str(folder / "weights" / "tower"))
        hidden = None if self.tower is None else int(self.tower.hidden.units)
        meta = {"encoder": self.encoder.to_json(), "settings": asdict(self.settings),
                "hidden_units": hidden, "dim": int(self.item_embeddings.shape[1])}  # fmt: skip
        (folder / "meta.json").write_text(json.dumps(meta, indent=2))

    @classmethod
    def load(cls, folder: Path, item_embeddings: np.ndarray,
             personal: PersonalScorer | None = None, index: ItemIndex | None = None,
             ) -> Searcher:  # fmt: skip
        """The searcher saved in `folder` over the retrieval model's item embeddings.

        Raises:
            ValueError: the folder is not a saved searcher, or was built for another catalogue.
        """
        meta_file = folder / "meta.json"
        if not meta_file.is_file():
            raise ValueError(f"{folder} holds no search model (meta.json); run dvc repro")
        meta = json.loads(meta_file.read_text())
        if int(meta["dim"]) != item_embeddings.shape[1]:
            raise ValueError(f"{folder} was trained on {meta['dim']}-d item embeddings, the "
                             f"retrieval model has {item_embeddings.shape[1]}; run dvc repro")  # fmt: skip
        encoder = QueryEncoder.from_json(meta["encoder"])
        tower = None
        if meta["hidden_units"] is not None:
            tower = QueryTower(encoder.n_words, encoder.buckets, int(meta["hidden_units"]),
                               int(meta["dim"]))  # fmt: skip
            tower(encoder.encode([""]))
            checkpoint = tf.train.Checkpoint(tower=tower)
            checkpoint.read(str(folder / "weights" / "tower")).expect_partial()
        lexical = LexicalIndex.load(folder / "bm25", len(item_embeddings))
        return cls(encoder, tower, item_embeddings, lexical,
                   SearchSettings(**meta["settings"]), personal, index)  # fmt: skip


def _reason(item: int, lexical: np.ndarray, semantic: np.ndarray, words: list[str],
            personal: bool) -> str:  # fmt: skip
    """Which retriever found the item first (by rank), said for a shopper."""
    lex = np.flatnonzero(lexical == item)
    sem = np.flatnonzero(semantic == item)
    lex_rank = int(lex[0]) if len(lex) else None
    sem_rank = int(sem[0]) if len(sem) else None
    if lex_rank is not None and (sem_rank is None or lex_rank <= sem_rank):
        text = f"matches the words '{' '.join(words)}'"
    elif sem_rank is not None:
        text = "chosen by shoppers who searched for similar words"
    else:
        text = "related to your search"
    return text + (", ordered for your taste" if personal else "")


def settings_from(cfg: SearchConfig, lexical_weight: float, personal_weight: float,
                  ) -> SearchSettings:  # fmt: skip
    return SearchSettings(cfg.candidates, cfg.rrf_k, lexical_weight, personal_weight)


def personalise(searcher: Searcher, model: RankingModel, data: ModelData,
                history: Sequence[str]) -> Searcher:  # fmt: skip
    """A copy of `searcher` ordered for each user's taste by the ranking `model`, knowing users
    by their positives in the splits `history`."""
    personal = ranking_scorer(model, data, data.history(list(history)), usual_hour(data, history))
    return dataclasses.replace(searcher, personal=personal)


def load_searcher(search_dir: Path, ranking: RankingModel, data: ModelData, retrieval: Retrieval,
                  history: Sequence[str]) -> Searcher:  # fmt: skip
    """The searcher saved in `search_dir` over the retrieval model's items, personalised with
    the (already loaded) ranking model on `history`.

    Raises:
        ValueError: `search_dir` is not a saved searcher, or was built for another catalogue.
    """
    searcher = Searcher.load(search_dir, retrieval.items, None, retrieval.item_index)
    return personalise(searcher, ranking, data, history)

"""The packaged recommender: the fused model answering requests.

A request is a table with one row per list: `user_id` (str), `k` (int), `exclude` (optional
list of item ids never to return) and `query` (optional search text, at most
`serving.max_query_chars` characters). The answer has one row per item: `user_id`, `rank`
(1 = best), `item_id`, `score` (higher is better) and `reason` (why).

Rows without a query are recommendations: known users go through the full fusion (every source,
the stacker, the cascade's rules); users the model has never seen get the most popular items in
stock (cold start). Rows with a query are searches: BM25 and the query tower fused, ordered for
the user's taste by the ranking model when the user is known. A query with no letters or digits
is treated as no query.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from recfusion.config import DEFAULT_PARAMS, Config, load_config
from recfusion.fusion.assemble import (
    SubModels,
    fit_with_sub_models,
    load_sub_models,
    purchases,
)
from recfusion.fusion.fused import FittedFusion, method_scores, rank_method, reasons
from recfusion.fusion.period import FittedSources, Period
from recfusion.fusion.sources import REASONS
from recfusion.models.dataset import ModelData, PreparedData, build_model_data, read_prepared
from recfusion.paths import FUSION_DIR, MODELS_DIR, PREPARED_DIR, SEARCH_DIR
from recfusion.preparation.vocab import tokenize
from recfusion.search.searcher import Searcher, load_searcher

log = logging.getLogger(__name__)

ALL_SPLITS = ("train", "val", "test")
REQUEST_COLUMNS = ("user_id", "k", "query", "exclude")
ANSWER_COLUMNS = ("user_id", "rank", "item_id", "score", "reason")
PARAMS_FILE = "params.yaml"
# the workspace files a packaged recommender needs, relative to the project root
WORKSPACE_PARTS = (PARAMS_FILE, str(PREPARED_DIR), str(MODELS_DIR / "retrieval"),
                   str(MODELS_DIR / "ranking"), str(MODELS_DIR / "tags"), str(FUSION_DIR),
                   str(SEARCH_DIR))  # fmt: skip


class RequestError(ValueError):
    """A malformed request; the message says which row and field and what is allowed."""


@dataclass(frozen=True)
class Request:
    user_id: str
    k: int
    exclude: tuple[str, ...]
    query: str = ""  # "" = a recommendation request

    @property
    def is_search(self) -> bool:
        return bool(tokenize(self.query))


def parse_requests(frame: pd.DataFrame, max_k: int, max_query_chars: int,
                   max_rows: int | None = None, max_user_id_chars: int | None = None
                   ) -> list[Request]:  # fmt: skip
    """Checks every row of a request table. Errors name the row and field and show at most a
    short prefix of a bad value (a request is never echoed back).

    Args:
        max_rows, max_user_id_chars: serving.max_rows and serving.max_user_id_chars (None: no
            limit).

    Raises:
        RequestError: more than max_rows rows, a missing or unknown column, an empty user_id or
            one longer than max_user_id_chars, k not an integer in [1, max_k], exclude not a list
            of strings, a query that is not a string or is longer than max_query_chars.
    """
    if not isinstance(frame, pd.DataFrame):
        raise RequestError(f"expected a table of requests, got {type(frame).__name__}")
    if max_rows is not None and len(frame) > max_rows:
        raise RequestError(f"{len(frame)} rows in one request; at most {max_rows} are accepted "
                           "(serving.max_rows): split it")  # fmt: skip
    unknown = [c for c in frame.columns if c not in REQUEST_COLUMNS]
    if unknown:
        raise RequestError(f"unknown column {shown(unknown[0])} (columns: "
                           f"{', '.join(REQUEST_COLUMNS)})")  # fmt: skip
    for col in ("user_id", "k"):
        if col not in frame.columns:
            raise RequestError(f"missing column '{col}': each row needs user_id and k")
    out = []
    for n, row in enumerate(frame.to_dict("records")):
        user, k = row["user_id"], row["k"]
        if not isinstance(user, str) or not user.strip():
            raise RequestError(f"row {n}: user_id must be a non-empty string, got {shown(user)}")
        if max_user_id_chars is not None and len(user) > max_user_id_chars:
            raise RequestError(f"row {n}: user_id has {len(user)} characters; at most "
                               f"{max_user_id_chars} are accepted (serving.max_user_id_chars)")  # fmt: skip
        if isinstance(k, bool) or not isinstance(k, int | np.integer) or not 1 <= k <= max_k:
            raise RequestError(f"row {n}: k must be an integer from 1 to {max_k}, got {shown(k)}")
        query = _query_of(row.get("query"), n, max_query_chars)
        exclude = _exclude_of(row.get("exclude"), n)
        out.append(Request(user.strip(), int(k), exclude, query))
    return out


def shown(value: object, limit: int = 40) -> str:
    """A bad value as an error shows it: its repr, cut to `limit` characters."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _missing(value: object) -> bool:
    """An optional cell left empty: None, or NaN where pandas filled a missing value."""
    return value is None or (isinstance(value, float) and np.isnan(value))


def _query_of(value: object, n: int, max_chars: int) -> str:
    if _missing(value):
        return ""
    if not isinstance(value, str):
        raise RequestError(f"row {n}: query must be a string, got {shown(value)}")
    if len(value) > max_chars:
        raise RequestError(f"row {n}: query has {len(value)} characters; at most {max_chars} "
                           "are accepted (serving.max_query_chars)")  # fmt: skip
    return value.strip()


def _exclude_of(value: object, n: int) -> tuple[str, ...]:
    if _missing(value):
        return ()
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise RequestError(f"row {n}: exclude must be a list of item ids, got {shown(value)}")
    return tuple(value)


@dataclass
class Recommender:
    cfg: Config
    data: ModelData
    sources: FittedSources
    fusion: FittedFusion
    item_embeddings: np.ndarray
    purchased: list[np.ndarray]  # per user row, items purchased in the history
    popular: np.ndarray  # catalogue positions in stock, most chosen first (cold start)
    searcher: Searcher | None  # None: a model version packaged before search existed

    @classmethod
    def load(cls, root: Path, history: Sequence[str] = ALL_SPLITS,
             defaults: Path | None = DEFAULT_PARAMS) -> Recommender:  # fmt: skip
        """Assembles the recommender from a workspace folder (see WORKSPACE_PARTS).

        Args:
            root: the folder holding params.yaml, data/prepared and models/.
            history: the splits the recommender knows users by: all of them to serve, train and
                val to score the test split.
            defaults: a params file (when it exists) filling keys the workspace's params.yaml
                lacks, so a version packaged before a feature existed still loads.
        """
        fill = defaults if defaults is not None and defaults.is_file() else None
        cfg = load_config(root / PARAMS_FILE, defaults=fill)
        prepared = read_prepared(root / PREPARED_DIR)
        data = build_model_data(prepared, cfg.train)
        models = load_sub_models(data, cfg.train.tags, root / MODELS_DIR)
        fusion = FittedFusion.load(root / FUSION_DIR)
        searcher = None
        if (root / SEARCH_DIR).is_dir():
            searcher = load_searcher(root / SEARCH_DIR, models.ranking, data, models.retrieval,
                                     history)  # fmt: skip
        return cls.assemble(cfg, prepared, data, models, fusion, searcher, history)

    @classmethod
    def assemble(cls, cfg: Config, prepared: PreparedData, data: ModelData, models: SubModels,
                 fusion: FittedFusion, searcher: Searcher | None,
                 history: Sequence[str] = ALL_SPLITS) -> Recommender:  # fmt: skip
        """The recommender from its parts, loaded or just trained; the sources are fitted on
        `history` (see `load`), which `searcher` should know users by too."""
        sources = fit_with_sub_models(cfg.fusion, data, list(history), models)
        bought = purchases(prepared, data, list(history), np.arange(len(data.users)))
        order = np.argsort(-sources.counts, kind="stable")
        popular = order[data.catalog.in_stock[order]]
        log.info("recommender: %d users, %d items, history %s, search %s", len(data.users),
                 len(data.catalog), "+".join(history), "on" if searcher else "off")  # fmt: skip
        return cls(cfg, data, sources, fusion, models.retrieval.items, bought, popular, searcher)

    @property
    def max_k(self) -> int:
        return self.cfg.serving.max_k

    def recommend(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Answers a request table (module docstring) with one row per recommended item.

        Raises:
            RequestError: a malformed request.
        """
        sc = self.cfg.serving
        requests = parse_requests(frame, self.max_k, sc.max_query_chars, sc.max_rows,
                                  sc.max_user_id_chars)  # fmt: skip
        rows = self.data.users.positions([r.user_id for r in requests])
        searches = np.array([r.is_search for r in requests], dtype=bool)
        if searches.any() and self.searcher is None:
            n = int(np.flatnonzero(searches)[0])
            raise RequestError(f"row {n}: this model version was packaged without search; "
                               "send rows without a query or use a newer version")  # fmt: skip
        answers: list[pd.DataFrame | None] = [None] * len(requests)
        for i in np.flatnonzero(searches):
            answers[i] = self._search(requests[i], int(rows[i]))
        known = np.flatnonzero((rows >= 0) & ~searches)
        if len(known):
            for slot, answer in zip(known, self._fused([requests[i] for i in known], rows[known]),
                                    strict=True):  # fmt: skip
                answers[slot] = answer
        for i in np.flatnonzero((rows < 0) & ~searches):
            answers[i] = self._cold(requests[i])
        if not answers:
            return pd.DataFrame({c: [] for c in ANSWER_COLUMNS})
        return pd.concat(answers, ignore_index=True)

    def _excluded(self, request: Request) -> np.ndarray:
        pos = self.data.catalog.positions(list(request.exclude))
        return pos[pos >= 0]

    def _fused(self, requests: list[Request], rows: np.ndarray) -> list[pd.DataFrame]:
        fc = self.cfg.fusion
        seen = self.sources.seen(rows)
        exclude = [np.union1d(s, self._excluded(r)) for s, r in zip(seen, requests, strict=True)]
        cands, extra = self.sources.candidates(rows, exclude, fc.per_source)
        period = Period(self.sources.history, self.sources.sources, cands, [], extra)
        scores = method_scores(fc.method, period, self.fusion)
        k = max(r.k for r in requests)
        top = rank_method(fc.method, period, self.fusion, fc, self.data, self.item_embeddings,
                          [self.purchased[r] for r in rows], k, scores)  # fmt: skip
        out = []
        for u, request in enumerate(requests):
            items = top[u, : request.k]
            items = items[items >= 0]
            slots = [int(np.flatnonzero(cands.items[u] == i)[0]) for i in items]
            why = [text for _, text in reasons(period, u, items)]
            out.append(self._answer(request, items, scores[u, slots], why))
        return out

    def _search(self, request: Request, row: int) -> pd.DataFrame:
        assert self.searcher is not None  # checked by recommend()
        items, scores, why = self.searcher.search(request.query, row, request.k,
                                                  self._excluded(request))  # fmt: skip
        return self._answer(request, items, scores, why)

    def _cold(self, request: Request) -> pd.DataFrame:
        items = self.popular[~np.isin(self.popular, self._excluded(request))][: request.k]
        scores = np.log1p(self.sources.counts[items].astype(np.float64))
        return self._answer(request, items, scores, [REASONS["popularity"]] * len(items))

    def _answer(self, request: Request, items: np.ndarray, scores: np.ndarray,
                why: list[str]) -> pd.DataFrame:  # fmt: skip
        return pd.DataFrame({
            "user_id": request.user_id,
            "rank": np.arange(1, len(items) + 1, dtype=np.int64),
            "item_id": self.data.catalog.item_ids[items].astype(str),
            "score": np.asarray(scores, dtype=np.float64),
            "reason": why,
        }, columns=list(ANSWER_COLUMNS))  # fmt: skip

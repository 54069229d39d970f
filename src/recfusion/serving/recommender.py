"""The packaged recommender: the fused model answering requests.

A request is a table with one row per list: `user_id` (str), `k` (int), `exclude` (optional
list of item ids never to return) and `query` (optional search text, at most
`serving.max_query_chars` characters). The answer has one row per item: `user_id`, `rank`
(1 = best), `item_id`, `score` (higher is better) and `reason` (why).

Rows without a query are recommendations: users the online store knows (a row or any event) go
through the full fusion (every source, the stacker, the cascade's rules) with the history the
store holds at that moment; users it does not know get the most popular items in stock (cold
start). Rows with a query are searches: BM25 and the query tower fused, ordered for the user's
taste by the ranking model when the store knows the user. A query with no letters or digits is
treated as no query.

The recommender is assembled from fitted state only (serving/package.py and the sub-models under
models/): no event and no user row is part of it; both come from the online store
(serving/store.py) at each request.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recfusion.config import DEFAULT_PARAMS, Config, load_config
from recfusion.fusion.assemble import SubModels, load_sub_models
from recfusion.fusion.fused import FittedFusion, method_scores, rank_method, reasons
from recfusion.fusion.period import FittedSources, Period
from recfusion.fusion.sources import REASONS, Source, TwoTowerSource, build_sources
from recfusion.fusion.sub_model_scores import sub_model_scores
from recfusion.models.dataset import History, ModelData
from recfusion.models.inputs import UserTable
from recfusion.paths import FUSION_DIR, MODELS_DIR, SEARCH_DIR
from recfusion.preparation.vocab import tokenize
from recfusion.search.searcher import Searcher, ranking_scorer
from recfusion.serving.events import is_text
from recfusion.serving.package import PACKAGE_DIR, Package, PackageError, load_package
from recfusion.serving.store import (
    USER_COLUMNS,
    OnlineStore,
    StoreError,
    UserRecords,
    open_configured,
)

log = logging.getLogger(__name__)

REQUEST_COLUMNS = ("user_id", "k", "query", "exclude")
ANSWER_COLUMNS = ("user_id", "rank", "item_id", "score", "reason")
PARAMS_FILE = "params.yaml"
# the workspace files a packaged recommender needs, relative to the project root: fitted state
# only (no data/prepared: users and events come from the online store)
WORKSPACE_PARTS = (PARAMS_FILE, str(PACKAGE_DIR), str(MODELS_DIR / "retrieval"),
                   str(MODELS_DIR / "ranking"), str(MODELS_DIR / "tags"), str(FUSION_DIR),
                   str(SEARCH_DIR))  # fmt: skip
HISTORY_SPLIT = "store"  # the name the store's events go by as a model's history


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
        if not is_text(user):
            raise RequestError(f"row {n}: user_id is not valid Unicode text")
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
    if not is_text(value):
        raise RequestError(f"row {n}: query is not valid Unicode text")
    return value.strip()


def _exclude_of(value: object, n: int) -> tuple[str, ...]:
    if _missing(value):
        return ()
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) and is_text(v)
                                                      for v in value):  # fmt: skip
        raise RequestError(f"row {n}: exclude must be a list of item ids, got {shown(value)}")
    return tuple(value)


@dataclass(frozen=True)
class UserView:
    """The users of one request as the models see them: a user table and a history of their
    own (row i = the i-th distinct user asked about), built from the online store."""

    data: ModelData  # the package's catalogue and vocabularies, these users
    history: History
    purchased: list[np.ndarray]  # per row, catalogue positions purchased
    known: np.ndarray  # [rows] bool: the store has a row or an event of the user


def user_view(package: Package, history_len: int, positive_events: Sequence[str],
              user_ids: Sequence[str], records: UserRecords) -> UserView:  # fmt: skip
    """The view of `user_ids` (distinct) from what the store holds about them: the same user
    features, history and purchases as models/dataset.build_history and
    fusion/assemble.purchases make from the prepared splits (a positive pair at its first time,
    ties in arrival order; items the model does not know left out), in NumPy, because pandas'
    per-call cost was 40% of a served request's time."""
    vocab, catalog = package.vocab, package.catalog
    n = len(user_ids)
    row_of = {u: r for r, u in enumerate(user_ids)}
    pseudonyms, genders, regions = [""] * n, [""] * n, [""] * n
    age = np.zeros(n, dtype=np.float32)
    known = np.zeros(n, dtype=bool)
    for user, pseudo, gender, region, age_norm in records.users[list(USER_COLUMNS)].itertuples(
            index=False, name=None):  # fmt: skip
        r = row_of.get(user)
        if r is None:
            continue
        pseudonyms[r], genders[r], regions[r] = pseudo, gender, region
        age[r] = 0.0 if age_norm is None or age_norm != age_norm else float(age_norm)  # NaN -> 0
        known[r] = True
    table = UserTable(np.asarray(list(user_ids), dtype=object), vocab.user_id.lookup(pseudonyms),
                      vocab.gender.lookup(genders), vocab.region.lookup(regions), age)  # fmt: skip
    ev = records.events
    rows = np.array([row_of.get(u, -1) for u in ev["user_id"]], dtype=np.int64)
    known[rows[rows >= 0]] = True
    items = catalog.positions(ev["item_id"])
    types = ev["event_type"].to_numpy(dtype=object)
    stamps = ev["timestamp"].to_numpy(dtype=np.int64)
    # positives, by user then time (lexsort is stable: ties keep arrival order), first of each
    # (user, item) kept
    sel = np.flatnonzero(np.isin(types, list(positive_events)) & (rows >= 0) & (items >= 0))
    sel = sel[np.lexsort((stamps[sel], rows[sel]))]
    _, first = np.unique(rows[sel] * len(catalog) + items[sel], return_index=True)
    sel = sel[np.sort(first)]
    pr, pi = rows[sel], items[sel]
    matrix = sp.csr_matrix((np.ones(len(sel), np.float32), (pr, pi)), shape=(n, len(catalog)))
    recent = np.zeros((n, history_len), dtype=np.int32)
    ids = catalog.id_idx[pi]
    for r in range(n):
        mine = ids[(pr == r) & (ids > 0)][-history_len:] if history_len else ids[:0]
        recent[r, history_len - len(mine) :] = mine
    history = History(matrix, recent, (HISTORY_SPLIT,))
    bought = (types == "purchase") & (rows >= 0) & (items >= 0)
    purchased = [np.unique(items[bought & (rows == r)]) for r in range(n)]
    data = ModelData(catalog, table, {}, history_len, vocab)
    return UserView(data, history, purchased, known)


@dataclass
class Recommender:
    cfg: Config
    package: Package  # the fitted state: catalogue, vocabularies, counts, EASE weights
    models: SubModels
    fusion: FittedFusion
    searcher: Searcher | None  # None: a model version packaged before search existed
    store: OnlineStore  # users and their events, read at every request
    sources: dict[str, Source]  # the sources that need no user table, built once
    popular: np.ndarray  # catalogue positions in stock, most chosen first (cold start)

    @classmethod
    def load(cls, root: Path, store: OnlineStore | None = None,
             defaults: Path | None = DEFAULT_PARAMS) -> Recommender:  # fmt: skip
        """Assembles the recommender from a workspace folder (see WORKSPACE_PARTS).

        Args:
            root: the folder holding params.yaml and models/.
            store: where users and their events are read; None: `serving.store` of the
                workspace's params (a relative path is relative to the current folder).
            defaults: a params file (when it exists) filling keys the workspace's params.yaml
                lacks, so a version packaged before a feature existed still loads.

        Raises:
            PackageError: models/package is missing or incomplete.
            StoreError: the store is missing, unreadable, or of another pseudonym key.
        """
        fill = defaults if defaults is not None and defaults.is_file() else None
        cfg = load_config(root / PARAMS_FILE, defaults=fill)
        if not (root / PACKAGE_DIR).is_dir() and (root / "data" / "prepared").is_dir():
            raise PackageError(f"{root} was packaged by an older recfusion (it carries "
                               "data/prepared and no models/package): run dvc repro, then "
                               "register and promote the new version")  # fmt: skip
        package = load_package(root / PACKAGE_DIR)
        data = package.model_data(cfg.train.history_len)
        models = load_sub_models(data, cfg.train.tags, root / MODELS_DIR)
        fusion = FittedFusion.load(root / FUSION_DIR)
        searcher = None
        if (root / SEARCH_DIR).is_dir():
            searcher = Searcher.load(root / SEARCH_DIR, models.retrieval.items, None,
                                     models.retrieval.item_index)  # fmt: skip
        if store is None:
            store = open_configured(cfg.serving.store, Path("."))
        return cls.assemble(cfg, package, models, fusion, searcher, store)

    @classmethod
    def assemble(cls, cfg: Config, package: Package, models: SubModels, fusion: FittedFusion,
                 searcher: Searcher | None, store: OnlineStore) -> Recommender:  # fmt: skip
        """The recommender from its parts, loaded or just trained.

        Raises:
            StoreError: the store's pseudonyms were made with another key than the model's user
                vocabulary (every user would lose their id embedding).
            PackageError: params name the ease source but the package has no EASE weights.
        """
        if store.key_check != package.key_check:
            raise StoreError(
                "the online store and the model were made with different pseudonym keys "
                "(RECFUSION_PSEUDONYM_KEY or .recfusion/pseudonym.key): materialize the store "
                "with the key the model was packaged with"
            )
        data = package.model_data(cfg.train.history_len)
        if "ease" in cfg.fusion.sources and package.ease is None:
            raise PackageError("the model was packaged without EASE weights but params name the "
                               "ease source: run dvc repro (the package stage)")  # fmt: skip
        shared = [
            n for n in cfg.fusion.sources if n != "two_tower"
        ]  # it reads each request's users
        weights = package.ease
        sources = {s.name: s for s in build_sources(shared, data, package.counts,
                                                    lambda: weights)}  # fmt: skip
        order = np.argsort(-package.counts, kind="stable")
        popular = order[package.catalog.in_stock[order]]
        log.info("recommender: %d items, fitted on %s, search %s, store %s",
                 len(package.catalog), "+".join(package.splits), "on" if searcher else "off",
                 getattr(store, "path", store))  # fmt: skip
        return cls(cfg, package, models, fusion, searcher, store, sources, popular)

    @property
    def max_k(self) -> int:
        return self.cfg.serving.max_k

    def view(self, user_ids: Sequence[str]) -> UserView:
        """What the store holds now about `user_ids` (distinct), as the models see it."""
        tc = self.cfg.train
        return user_view(self.package, tc.history_len, tc.positive_events, user_ids,
                         self.store.lookup(user_ids))  # fmt: skip

    def warm_up(self) -> None:
        """Runs the fused path and search once for one and for two made-up users with one
        made-up click each (the store is neither read nor written), so that the traced models
        are built before the first shopper's request instead of during it (a fresh worker's
        first answers took about half a second)."""
        top = int(self.popular[0]) if len(self.popular) else 0
        item = str(self.package.catalog.item_ids[top])
        positive = self.cfg.train.positive_events[0]
        for n in (1, 2):
            users = [f"warm-up-{i}" for i in range(n)]
            events = pd.DataFrame({"user_id": users, "item_id": item, "event_type": positive,
                                   "timestamp": 0})  # fmt: skip
            view = user_view(self.package, self.cfg.train.history_len,
                             self.cfg.train.positive_events, users,
                             UserRecords(pd.DataFrame(columns=list(USER_COLUMNS)), events))  # fmt: skip
            requests = [Request(u, 10, ()) for u in users]
            self._fused(requests, np.arange(n), view)
            if self.searcher is not None:  # queries of two lengths: one generalised trace
                self._search(Request(users[0], 10, (), " ".join(["warm"] * n * 3)), 0, view)

    def recommend(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Answers a request table (module docstring) with one row per recommended item.

        Raises:
            RequestError: a malformed request.
            StoreError: the online store cannot be read.
        """
        sc = self.cfg.serving
        requests = parse_requests(frame, self.max_k, sc.max_query_chars, sc.max_rows,
                                  sc.max_user_id_chars)  # fmt: skip
        searches = np.array([r.is_search for r in requests], dtype=bool)
        if searches.any() and self.searcher is None:
            n = int(np.flatnonzero(searches)[0])
            raise RequestError(f"row {n}: this model version was packaged without search; "
                               "send rows without a query or use a newer version")  # fmt: skip
        if not requests:
            return pd.DataFrame({c: [] for c in ANSWER_COLUMNS})
        distinct = list(dict.fromkeys(r.user_id for r in requests))
        view = self.view(distinct)
        rows = view.data.users.positions([r.user_id for r in requests])
        known = view.known[rows]
        answers: list[pd.DataFrame | None] = [None] * len(requests)
        for i in np.flatnonzero(searches):
            answers[i] = self._search(requests[i], int(rows[i]) if known[i] else -1, view)
        fused = np.flatnonzero(known & ~searches)
        if len(fused):
            for slot, answer in zip(fused, self._fused([requests[i] for i in fused], rows[fused],
                                                       view), strict=True):  # fmt: skip
                answers[slot] = answer
        for i in np.flatnonzero(~known & ~searches):
            answers[i] = self._cold(requests[i])
        return pd.concat(answers, ignore_index=True)

    def _excluded(self, request: Request) -> np.ndarray:
        pos = self.package.catalog.positions(list(request.exclude))
        return pos[pos >= 0]

    def _fitted(self, view: UserView) -> FittedSources:
        """The sources over the view's users: the shared ones, the two-tower source and the
        sub-models' stacking features reading the view's user table and history."""
        retrieval = self.models.retrieval
        two_tower = TwoTowerSource(view.data, retrieval.encode, retrieval.items,
                                   retrieval.item_index)  # fmt: skip
        sources = [two_tower if n == "two_tower" else self.sources[n]
                   for n in self.cfg.fusion.sources]  # fmt: skip
        features = sub_model_scores(self.models.ranking, self.models.tags, view.data,
                                    retrieval.encode, self.package.hour)(view.history)  # fmt: skip
        return FittedSources(view.data, view.history, sources, self.package.counts,
                             self.package.item_age_days, features)  # fmt: skip

    def _fused(self, requests: list[Request], rows: np.ndarray,
               view: UserView) -> list[pd.DataFrame]:  # fmt: skip
        fc = self.cfg.fusion
        fitted = self._fitted(view)
        seen = fitted.seen(rows)
        exclude = [np.union1d(s, self._excluded(r)) for s, r in zip(seen, requests, strict=True)]
        cands, extra = fitted.candidates(rows, exclude, fc.per_source)
        period = Period(fitted.history, fitted.sources, cands, [], extra)
        scores = method_scores(fc.method, period, self.fusion)
        k = max(r.k for r in requests)
        top = rank_method(fc.method, period, self.fusion, fc, view.data, self.models.retrieval.items,
                          [view.purchased[r] for r in rows], k, scores)  # fmt: skip
        out = []
        for u, request in enumerate(requests):
            items = top[u, : request.k]
            items = items[items >= 0]
            slots = [int(np.flatnonzero(cands.items[u] == i)[0]) for i in items]
            why = [text for _, text in reasons(period, u, items)]
            out.append(self._answer(request, items, scores[u, slots], why))
        return out

    def _search(self, request: Request, row: int, view: UserView) -> pd.DataFrame:
        assert self.searcher is not None  # checked by recommend()
        personal = ranking_scorer(self.models.ranking, view.data, view.history.recent,
                                  self.package.hour)  # fmt: skip
        searcher = dataclasses.replace(self.searcher, personal=personal)
        items, scores, why = searcher.search(request.query, row, request.k,
                                             self._excluded(request))  # fmt: skip
        return self._answer(request, items, scores, why)

    def _cold(self, request: Request) -> pd.DataFrame:
        items = self.popular[~np.isin(self.popular, self._excluded(request))][: request.k]
        scores = np.log1p(self.package.counts[items].astype(np.float64))
        return self._answer(request, items, scores, [REASONS["popularity"]] * len(items))

    def _answer(self, request: Request, items: np.ndarray, scores: np.ndarray,
                why: list[str]) -> pd.DataFrame:  # fmt: skip
        return pd.DataFrame({
            "user_id": request.user_id,
            "rank": np.arange(1, len(items) + 1, dtype=np.int64),
            "item_id": self.package.catalog.item_ids[items].astype(str),
            "score": np.asarray(scores, dtype=np.float64),
            "reason": why,
        }, columns=list(ANSWER_COLUMNS))  # fmt: skip

"""A seeded synthetic e-commerce log with structure models can learn and tests can check.

Planted structure:
- every user prefers 1-3 leaf categories (drawn from a prior that depends on gender and age),
  one favourite brand in each, and a price band (budget / mid / premium, tied to age);
- 80% of a user's sessions browse a preferred leaf; the rest explore a random one;
- item popularity is log-normal (a long tail); within a session items are drawn by popularity,
  boosted for the favourite brand and the preferred price band;
- a view -> click -> add_to_cart -> purchase funnel whose rates rise with brand and price match;
- some items are created and some users sign up only in the late part of the window (cold start);
- search queries use the session's leaf noun or a synonym that titles never contain, sometimes a
  brand or adjective, sometimes a typo, and record the first item clicked in the session.

Everything is vectorised with NumPy so the `xl` preset (1M items, tens of millions of events)
runs on one machine; sessions are simulated in chunks of users, each with its own seed, here or
on a Dask cluster (`engine`), with a progress bar.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

from recfusion.config import SyntheticConfig
from recfusion.data import catalog_words as words
from recfusion.data.schema import conform_table
from recfusion.engine import Engine, LocalEngine

log = logging.getLogger(__name__)

# (users, items, mean sessions per user)
PRESETS: dict[str, tuple[int, int, float]] = {
    "tiny": (300, 400, 4.0),
    "small": (4_000, 3_000, 6.0),
    "medium": (50_000, 30_000, 6.0),
    "large": (500_000, 200_000, 5.0),
    "xl": (2_000_000, 1_000_000, 4.0),
}
WINDOW_END = pd.Timestamp("2025-12-31 00:00:00")  # fixed, so the data never depends on today
DAY = 86_400.0
USERS_PER_CHUNK = 20_000
FOCUS = 0.8  # share of sessions that browse a preferred leaf
CANDIDATES = 6  # popularity draws per view among which affinity picks
BRAND_BONUS = 1.5  # log-weight of the favourite brand
BAND_PENALTY = 0.8  # log-weight lost per price band away from the preferred one
AGE_BANDS = np.array([[0.5, 0.35, 0.15], [0.3, 0.45, 0.25], [0.2, 0.4, 0.4]])  # by age group


@dataclass(frozen=True)
class GeneratedItems:
    """Item arrays sorted by leaf (the generator's internal view)."""

    leaf: np.ndarray  # [n_items] leaf index
    brand: np.ndarray  # [n_items] global brand index
    band: np.ndarray  # [n_items] price band 0..2 within the leaf
    created: np.ndarray  # [n_items] creation time, seconds from window start
    key: np.ndarray  # [n_items] leaf + cumulative popularity within the leaf, for sampling
    ids: np.ndarray  # [n_items] item_id strings
    brand_names: np.ndarray  # [n_brands]
    brand_dept: np.ndarray  # [n_brands] department index of each brand


@dataclass(frozen=True)
class Population:
    """User arrays (the generator's internal view)."""

    ids: np.ndarray  # [n_users] user_id strings
    start: np.ndarray  # [n_users] first possible session time, seconds from window start
    n_sessions: np.ndarray  # [n_users]
    pref_leaf: np.ndarray  # [n_users, 3] preferred leaves (unused slots repeat slot 0)
    pref_brand: np.ndarray  # [n_users, 3] favourite brand per preferred leaf
    n_pref: np.ndarray  # [n_users] 1..3
    band: np.ndarray  # [n_users] preferred price band


def resolve_sizes(cfg: SyntheticConfig) -> tuple[int, int, float]:
    """The (users, items, sessions per user) of the preset with params overrides applied."""
    n_users, n_items, spu = PRESETS[cfg.size]
    n_users = cfg.n_users if cfg.n_users is not None else n_users
    n_items = cfg.n_items if cfg.n_items is not None else n_items
    spu = cfg.sessions_per_user if cfg.sessions_per_user is not None else spu
    n_leaves = len(words.leaf_paths())
    if n_items < n_leaves:
        raise ValueError(f"ingest.synthetic.n_items must be at least {n_leaves} (one per leaf)")
    if n_users < 1 or spu < 1.0:
        raise ValueError("ingest.synthetic.n_users and sessions_per_user must be at least 1")
    for name in ("cold_user_frac", "cold_item_frac", "late_frac", "query_rate", "typo_rate",
                 "out_of_stock_frac"):  # fmt: skip
        if not 0.0 <= getattr(cfg, name) <= 1.0:
            raise ValueError(f"ingest.synthetic.{name} must be within [0, 1]")
    if cfg.days < 1:
        raise ValueError("ingest.synthetic.days must be at least 1")
    return n_users, n_items, spu


def generate(cfg: SyntheticConfig, seed: int, progress: bool = True,
             engine: Engine | None = None) -> dict[str, pd.DataFrame]:  # fmt: skip
    """Generates the canonical tables users, items, events and queries.

    Args:
        cfg: the synthetic source's parameters.
        seed: the seed; the same seed and parameters give identical tables.
        progress: show a progress bar while simulating sessions.
        engine: where the chunks of users are simulated (recfusion/engine.py); None = here.
            Each chunk has its own seed, so every engine gives identical tables.

    Returns:
        {"users", "items", "events", "queries"} frames in the canonical schema.
    """
    n_users, n_items, spu = resolve_sizes(cfg)
    horizon = cfg.days * DAY
    root = np.random.default_rng(seed)
    catalog, items = _make_catalog(np.random.default_rng(root.integers(2**63)), n_items, cfg,
                                   horizon)  # fmt: skip
    pop, users = _make_users(np.random.default_rng(root.integers(2**63)), n_users, spu, cfg,
                             horizon, catalog)  # fmt: skip
    chunk_seeds = np.random.SeedSequence(int(root.integers(2**63))).spawn(
        (n_users + USERS_PER_CHUNK - 1) // USERS_PER_CHUNK
    )
    chunks = [
        (ss, c * USERS_PER_CHUNK, min(n_users, (c + 1) * USERS_PER_CHUNK))
        for c, ss in enumerate(chunk_seeds)
    ]
    engine = engine or LocalEngine(progress)
    parts = engine.map(simulate_chunk, chunks, "synthetic sessions", pop=pop, catalog=catalog,
                       cfg=cfg, horizon=horizon)  # fmt: skip
    event_parts, query_parts = [p[0] for p in parts], [p[1] for p in parts]
    events = pd.concat(event_parts, ignore_index=True)
    queries = pd.concat(query_parts, ignore_index=True)
    events = events.sort_values(["timestamp", "user_id"], kind="stable", ignore_index=True)
    queries = queries.sort_values("timestamp", kind="stable", ignore_index=True)
    log.info("synthetic: %d users, %d items, %d events, %d queries",
             len(users), len(items), len(events), len(queries))  # fmt: skip
    return {
        "users": conform_table("users", users),
        "items": conform_table("items", items),
        "events": conform_table("events", events),
        "queries": conform_table("queries", queries),
    }


def _null_where(mask: np.ndarray, values: np.ndarray) -> np.ndarray:
    """An object copy of `values` with None where `mask` is true."""
    out = values.astype(object)
    out[mask] = None
    return out


def _timestamps(seconds: np.ndarray, horizon: float) -> pd.Series:
    """Seconds from the window start -> timestamps, the window ending at WINDOW_END."""
    end = WINDOW_END.value / 1e9
    return pd.Series(pd.to_datetime(np.floor(end - horizon + seconds), unit="s"))


def _make_brand_names(rng: np.random.Generator, n: int) -> np.ndarray:
    syl = np.array(words.BRAND_SYLLABLES)
    names: set[str] = set()
    out: list[str] = []
    while len(out) < n:
        k = int(rng.integers(2, 4))
        name = "".join(rng.choice(syl, size=k)).capitalize()
        if name not in names:
            names.add(name)
            out.append(name)
    return np.array(out, dtype=object)


def _make_catalog(
    rng: np.random.Generator, n_items: int, cfg: SyntheticConfig, horizon: float
) -> tuple[GeneratedItems, pd.DataFrame]:
    leaves = words.leaf_paths()
    depts = list(words.CATEGORY_TREE)
    leaf_dept = np.array([depts.index(d) for d, _, _ in leaves])
    n_leaves = len(leaves)
    # leaf sizes: one item each, the rest multinomial over uneven leaf weights
    leaf_w = rng.lognormal(0.0, 0.5, n_leaves)
    sizes = 1 + rng.multinomial(n_items - n_leaves, leaf_w / leaf_w.sum())
    leaf = np.repeat(np.arange(n_leaves), sizes)
    dept = leaf_dept[leaf]

    # brands: per department, with their own popularity
    per_dept = int(np.clip(n_items // (len(depts) * 40), 4, 400))
    brand_names = _make_brand_names(rng, per_dept * len(depts))
    brand_dept = np.repeat(np.arange(len(depts)), per_dept)
    brand_pop = rng.lognormal(0.0, 1.0, per_dept * len(depts))
    brand_premium = rng.lognormal(0.0, 0.3, per_dept * len(depts))
    brand = np.empty(n_items, dtype=np.int64)
    for d in range(len(depts)):
        mask = dept == d
        w = brand_pop[d * per_dept : (d + 1) * per_dept]
        brand[mask] = d * per_dept + rng.choice(per_dept, size=int(mask.sum()), p=w / w.sum())

    base = np.array([words.BASE_PRICE[d] for d in depts])[dept]
    leaf_factor = rng.lognormal(0.0, 0.3, n_leaves)[leaf]
    price = base * leaf_factor * brand_premium[brand] * rng.lognormal(0.0, 0.35, n_items)
    price = np.round(np.maximum(price, 1.0)) - 0.01
    band = _band_within_leaf(leaf, price, sizes)

    pop = rng.lognormal(0.0, 1.3, n_items) * np.sqrt(brand_pop[brand])
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    csum = np.cumsum(pop)
    seg_before = np.repeat(np.concatenate([[0.0], csum[starts[1:] - 1]]), sizes)
    seg_total = np.repeat(np.add.reduceat(pop, starts), sizes)
    cum = (csum - seg_before) / seg_total
    key = leaf + cum
    key[np.cumsum(sizes) - 1] = np.arange(n_leaves) + 1.0  # exact segment ends

    late = horizon * (1.0 - cfg.late_frac)
    is_cold = rng.random(n_items) < cfg.cold_item_frac
    created = np.where(
        is_cold,
        rng.uniform(late, horizon - 0.25 * cfg.late_frac * horizon, n_items),
        -rng.uniform(0.0, 730 * DAY, n_items),
    )

    perm = rng.permutation(n_items)  # ids carry no information about the category
    ids = np.array([f"i{p:07d}" for p in perm], dtype=object)
    adjectives = [np.array(words.ADJECTIVES[d], dtype=object) for d in depts]
    adj_pick = rng.integers(0, 6, n_items)
    suffix = np.array(words.MODEL_SUFFIXES, dtype=object)[rng.integers(0, 10, n_items)]
    nouns = np.array([lf for _, _, lf in leaves], dtype=object)
    titles = [
        f"{brand_names[b]} {adjectives[d][a]} {nouns[lf]} {s}"
        for b, d, a, lf, s in zip(brand, dept, adj_pick, leaf, suffix, strict=True)
    ]
    category = np.array([f"{d}>{s}>{lf}" for d, s, lf in leaves], dtype=object)[leaf]
    items = pd.DataFrame(
        {
            "item_id": ids,
            "title": titles,
            "category": category,
            "brand": brand_names[brand],
            "price": price,
            "created_ts": _timestamps(created, horizon),
            "in_stock": rng.random(n_items) >= cfg.out_of_stock_frac,
        }
    )
    catalog = GeneratedItems(leaf, brand, band, created, key, ids, brand_names, brand_dept)
    return catalog, items.sample(frac=1.0, random_state=int(rng.integers(2**31))).reset_index(
        drop=True
    )


def _band_within_leaf(leaf: np.ndarray, price: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """Price tercile (0, 1, 2) of each item within its leaf."""
    order = np.lexsort((price, leaf))
    starts = np.repeat(np.concatenate([[0], np.cumsum(sizes)[:-1]]), sizes)
    rank = np.empty(len(leaf))
    rank[order] = (np.arange(len(leaf)) - starts) / np.repeat(sizes, sizes)
    return np.minimum((rank * 3).astype(np.int64), 2)


def _make_users(
    rng: np.random.Generator,
    n_users: int,
    spu: float,
    cfg: SyntheticConfig,
    horizon: float,
    catalog: GeneratedItems,
) -> tuple[Population, pd.DataFrame]:
    depts = list(words.CATEGORY_TREE)
    n_depts = len(depts)
    leaves = words.leaf_paths()
    leaf_dept = np.array([depts.index(d) for d, _, _ in leaves])
    dept_leaf_start = np.searchsorted(leaf_dept, np.arange(n_depts))
    dept_leaf_count = np.bincount(leaf_dept, minlength=n_depts)

    age = np.clip(np.round(18 + rng.gamma(3.0, 7.0, n_users)), 18, 85).astype(np.int64)
    age_group = np.digitize(age, [30, 50])
    gender = rng.choice(np.array(["F", "M", "X"], dtype=object), n_users, p=[0.49, 0.49, 0.02])
    region = rng.choice(np.array(words.REGIONS, dtype=object), n_users)

    # department prior by demographics (log-weights)
    g_adj = {
        "F": {"fashion": 0.8, "beauty": 1.0, "home": 0.3},
        "M": {"electronics": 0.8, "sports": 0.7, "toys": 0.2},
        "X": {},
    }
    a_adj = [
        {"electronics": 0.5, "fashion": 0.5, "toys": 0.3},
        {"home": 0.4, "toys": 0.4, "grocery": 0.2},
        {"books": 0.8, "home": 0.5, "grocery": 0.6},
    ]
    logit = np.zeros((n_users, n_depts))
    for g, adj in g_adj.items():
        for d, v in adj.items():
            logit[gender == g, depts.index(d)] += v
    for grp, adj in enumerate(a_adj):
        for d, v in adj.items():
            logit[age_group == grp, depts.index(d)] += v

    n_pref = 1 + rng.binomial(2, 0.5, n_users)
    pref_dept = np.argmax(logit[:, None, :] + rng.gumbel(size=(n_users, 3, n_depts)), axis=2)
    pref_leaf = (
        dept_leaf_start[pref_dept]
        + rng.integers(0, 1 << 30, (n_users, 3)) % (dept_leaf_count[pref_dept])
    )
    pref_leaf = np.where(np.arange(3)[None, :] < n_pref[:, None], pref_leaf, pref_leaf[:, :1])
    # favourite brand: a brand of the department that actually sells in that leaf
    pref_brand = _brand_in_leaf(rng, catalog, pref_leaf)
    band = (rng.random(n_users)[:, None] > np.cumsum(AGE_BANDS[age_group], axis=1)).sum(axis=1)

    late = horizon * (1.0 - cfg.late_frac)
    is_cold = rng.random(n_users) < cfg.cold_user_frac
    signup = np.where(
        is_cold, rng.uniform(late, horizon - DAY, n_users), rng.uniform(-1000 * DAY, late, n_users)
    )
    start = np.maximum(signup, 0.0)
    active_share = (horizon - start) / horizon
    rate = rng.gamma(0.8, max(spu - 1.0, 1e-9) / 0.8, n_users) * active_share
    n_sessions = 1 + rng.poisson(rate)

    ids = np.array([f"u{u:07d}" for u in range(n_users)], dtype=object)
    # a few missing demographics, so the prepare stage's missing-value policy has work to do
    age_out = pd.array(age, dtype="Int64")
    age_out[rng.random(n_users) < 0.01] = pd.NA
    gender_out = _null_where(rng.random(n_users) < 0.01, gender)
    users = pd.DataFrame(
        {
            "user_id": ids,
            "age": age_out,
            "gender": gender_out,
            "region": region,
            "signup_ts": _timestamps(signup, horizon),
        }
    )
    pop = Population(ids, start, n_sessions, pref_leaf, pref_brand, n_pref, band)
    return pop, users


def _brand_in_leaf(
    rng: np.random.Generator, catalog: GeneratedItems, leaf: np.ndarray
) -> np.ndarray:
    """For each entry of `leaf`, the brand of a popularity-drawn item of that leaf."""
    item = _draw_items(rng, catalog, leaf.ravel(), 1)[:, 0]
    return catalog.brand[item].reshape(leaf.shape)


def _draw_items(
    rng: np.random.Generator, catalog: GeneratedItems, leaf: np.ndarray, k: int
) -> np.ndarray:
    """[len(leaf), k] item indices drawn by popularity within each leaf."""
    target = leaf[:, None] + rng.random((len(leaf), k))
    idx = np.searchsorted(catalog.key, target, side="left")
    return np.minimum(idx, len(catalog.key) - 1)


def simulate_chunk(
    chunk: tuple[np.random.SeedSequence, int, int],
    pop: Population,
    catalog: GeneratedItems,
    cfg: SyntheticConfig,
    horizon: float,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Events and queries of the users `chunk` names (its seed, first and past-last user)."""
    ss, lo, hi = chunk
    return _simulate(np.random.default_rng(ss), pop, catalog, np.arange(lo, hi), cfg, horizon)


def _simulate(
    rng: np.random.Generator,
    pop: Population,
    catalog: GeneratedItems,
    users: np.ndarray,
    cfg: SyntheticConfig,
    horizon: float,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Sessions, events and queries of the users with indices `users`."""
    n_leaves = len(words.leaf_paths())
    s_user = np.repeat(users, pop.n_sessions[users])
    n_s = len(s_user)
    s_id = np.arange(n_s)
    start = pop.start[s_user]
    s_time = start + rng.random(n_s) * np.maximum(horizon - start - 3600.0, 1.0)
    focus = rng.random(n_s) < FOCUS
    slot = rng.integers(0, 1 << 30, n_s) % pop.n_pref[s_user]
    s_leaf = np.where(focus, pop.pref_leaf[s_user, slot], rng.integers(0, n_leaves, n_s))
    s_brand = np.where(focus, pop.pref_brand[s_user, slot], -1)

    n_views = 1 + rng.poisson(3.0, n_s)
    v_sess = np.repeat(s_id, n_views)
    nv = len(v_sess)
    gaps = rng.uniform(20.0, 120.0, nv)
    csum = np.cumsum(gaps)
    first = np.concatenate([[0], np.cumsum(n_views)[:-1]])
    v_time = s_time[v_sess] + csum - np.repeat(csum[first] - gaps[first], n_views)

    cand = _draw_items(rng, catalog, s_leaf[v_sess], CANDIDATES)
    user_band = pop.band[s_user[v_sess]]
    brand_match = catalog.brand[cand] == s_brand[v_sess][:, None]
    band_gap = np.abs(catalog.band[cand] - user_band[:, None])
    score = BRAND_BONUS * brand_match - BAND_PENALTY * band_gap + rng.gumbel(size=cand.shape)
    score[catalog.created[cand] > v_time[:, None]] = -np.inf  # not yet on sale
    pick = np.argmax(score, axis=1)
    ok = np.isfinite(score[np.arange(nv), pick])
    item = cand[np.arange(nv), pick][ok]
    v_sess, v_time = v_sess[ok], v_time[ok]
    bm = brand_match[np.arange(nv), pick][ok]
    bandm = band_gap[np.arange(nv), pick][ok] == 0

    click = rng.random(len(item)) < 0.22 + 0.18 * bm + 0.10 * bandm
    cart = click & (rng.random(len(item)) < 0.15 + 0.10 * bm + 0.15 * bandm)
    buy = cart & (rng.random(len(item)) < 0.45)
    t_click = v_time + rng.uniform(5, 30, len(item))
    t_cart = t_click + rng.uniform(10, 60, len(item))
    t_buy = t_cart + rng.uniform(30, 300, len(item))
    qty = 1.0 + (rng.random(len(item)) < 0.15)

    parts = [
        (item, v_sess, v_time, "view", np.full(len(item), np.nan)),
        (item[click], v_sess[click], t_click[click], "click", np.full(int(click.sum()), np.nan)),
        (item[cart], v_sess[cart], t_cart[cart], "add_to_cart", np.full(int(cart.sum()), np.nan)),
        (item[buy], v_sess[buy], t_buy[buy], "purchase", qty[buy]),
    ]
    ev_item = np.concatenate([p[0] for p in parts])
    ev_sess = np.concatenate([p[1] for p in parts])
    session_names = np.array([f"s{users[0]:07d}_{i}" for i in range(n_s)], dtype=object)
    events = pd.DataFrame(
        {
            "user_id": pop.ids[s_user[ev_sess]],
            "item_id": catalog.ids[ev_item],
            "event_type": np.concatenate([np.full(len(p[0]), p[3], dtype=object) for p in parts]),
            "timestamp": _timestamps(np.concatenate([p[2] for p in parts]), horizon),
            "value": np.concatenate([p[4] for p in parts]),
            "session_id": session_names[ev_sess],
        }
    )
    queries = _make_queries(rng, pop, catalog, cfg, horizon, s_user, s_time, s_leaf, s_brand,
                            item[click], v_sess[click], t_click[click], session_names)  # fmt: skip
    return events, queries


def _make_queries(
    rng: np.random.Generator,
    pop: Population,
    catalog: GeneratedItems,
    cfg: SyntheticConfig,
    horizon: float,
    s_user: np.ndarray,
    s_time: np.ndarray,
    s_leaf: np.ndarray,
    s_brand: np.ndarray,
    clicked_item: np.ndarray,
    clicked_sess: np.ndarray,
    clicked_time: np.ndarray,
    session_names: np.ndarray,
) -> pd.DataFrame:
    leaves = words.leaf_paths()
    n_s = len(s_user)
    searched = np.flatnonzero(rng.random(n_s) < cfg.query_rate)
    # first clicked item of each session
    order = np.lexsort((clicked_time, clicked_sess))
    first_click = np.full(n_s, -1)
    sess_sorted = clicked_sess[order]
    is_first = (
        np.r_[True, sess_sorted[1:] != sess_sorted[:-1]] if len(order) else np.array([], bool)
    )
    first_click[sess_sorted[is_first]] = clicked_item[order][is_first]

    texts = []
    for s in searched:
        dept, _, noun = leaves[s_leaf[s]]
        r = rng.random(4)
        syns = words.CATEGORY_TREE[dept][leaves[s_leaf[s]][1]][noun]
        parts = [syns[int(r[0] * len(syns))] if r[0] < 0.5 else noun]
        if r[1] < 0.3:
            parts.insert(0, words.ADJECTIVES[dept][int(r[1] / 0.3 * 6) % 6])
        if r[2] < 0.3 and s_brand[s] >= 0:
            parts.insert(0, str(catalog.brand_names[s_brand[s]]).lower())
        text = " ".join(parts)
        if r[3] < cfg.typo_rate and len(text) > 3:
            i = int(rng.integers(0, len(text) - 1))
            text = text[:i] + text[i + 1] + text[i] + text[i + 2 :]
        texts.append(text)
    clicked = first_click[searched]
    anonymous = rng.random(len(searched)) < 0.1
    return pd.DataFrame(
        {
            "user_id": _null_where(anonymous, pop.ids[s_user[searched]]),
            "query": np.array(texts, dtype=object),
            "timestamp": _timestamps(s_time[searched] - 10.0, horizon),
            "clicked_item_id": _null_where(clicked < 0, catalog.ids[np.maximum(clicked, 0)]),
            "session_id": session_names[searched],
        }
    )

"""MovieLens-100K from a local folder, as GroupLens files or RecBole atomic files.

GroupLens: `u.data` (user, item, rating, unix time; tab-separated), `u.item` (pipe-separated,
latin-1, 19 genre flags), `u.user` (id|age|gender|occupation|zip).
RecBole: `ml-100k.inter`, `ml-100k.item`, `ml-100k.user`, tab-separated with typed headers
(`user_id:token ...`); genres are the space-separated `class` field.

Ratings become `rating` events with the value kept. The first genre becomes the category
(`movies>Drama`), all genres are kept in the extra column `genres` ("|"-joined). Users keep age
and gender; region is the first digit of the zip code (US postal regions); occupation and zip
are kept as extra columns. Nothing is downloaded.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from recfusion.config import MovieLensConfig
from recfusion.data.io import DataFileError, read_table
from recfusion.data.schema import conform_table, empty_table

log = logging.getLogger(__name__)

GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
    "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance",
    "Sci-Fi", "Thriller", "War", "Western",
)  # fmt: skip
GROUPLENS_FILES = ("u.data", "u.item", "u.user")
RECBOLE_FILES = ("ml-100k.inter", "ml-100k.item", "ml-100k.user")


def detect_format(folder: Path) -> str:
    """'grouplens' or 'recbole', by which files the folder holds."""
    if all((folder / f).is_file() for f in GROUPLENS_FILES):
        return "grouplens"
    if all((folder / f).is_file() for f in RECBOLE_FILES):
        return "recbole"
    raise DataFileError(
        f"{folder}: no MovieLens-100K files found; expected {', '.join(GROUPLENS_FILES)} "
        f"(GroupLens) or {', '.join(RECBOLE_FILES)} (RecBole atomic files)"
    )


def load(cfg: MovieLensConfig) -> dict[str, pd.DataFrame]:
    """Reads MovieLens-100K into the canonical tables (queries empty).

    Raises:
        DataFileError: the folder or one of its files is missing or malformed.
    """
    folder = Path(cfg.path)
    if not folder.is_dir():
        raise DataFileError(
            f"{folder}: MovieLens folder not found; set ingest.movielens.path to a folder with "
            "the MovieLens-100K files (see README, 'Your own data')"
        )
    fmt = detect_format(folder) if cfg.format == "auto" else cfg.format
    if fmt == "grouplens":
        users, items, events = _read_grouplens(folder)
    else:
        users, items, events = _read_recbole(folder)
    log.info("movielens (%s): %d users, %d items, %d ratings", fmt, len(users), len(items),
             len(events))  # fmt: skip
    return {
        "users": conform_table("users", users),
        "items": conform_table("items", items),
        "events": conform_table("events", events),
        "queries": empty_table("queries"),
    }


def _read_grouplens(folder: Path) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    inter = read_table(
        folder / "u.data", "csv", sep="\t", header=None, names=["user", "item", "rating", "ts"],
        dtype=str,
    )  # fmt: skip
    item_cols = ["item", "title", "release", "video_release", "url", *GENRES]
    raw_items = read_table(
        folder / "u.item", "csv", sep="|", header=None, names=item_cols, encoding="latin-1", dtype=str,
        keep_default_na=False,
    )  # fmt: skip
    raw_users = read_table(
        folder / "u.user", "csv", sep="|", header=None,
        names=["user", "age", "gender", "occupation", "zip"], dtype=str, keep_default_na=False,
    )  # fmt: skip
    flags = raw_items[list(GENRES)].to_numpy() == "1"
    genres = ["|".join(g for g, f in zip(GENRES, row, strict=True) if f) for row in flags]
    items = _items_frame(raw_items["item"], raw_items["title"], genres)
    return _users_frame(raw_users), items, _events_frame(inter)


def _read_recbole(folder: Path) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    inter = _read_atomic(folder / "ml-100k.inter").rename(
        columns={"user_id": "user", "item_id": "item", "timestamp": "ts"}
    )
    raw_items = _read_atomic(folder / "ml-100k.item")
    raw_users = _read_atomic(folder / "ml-100k.user").rename(
        columns={"user_id": "user", "zip_code": "zip"}
    )
    for frame, cols, name in (
        (inter, ["user", "item", "rating", "ts"], "ml-100k.inter"),
        (raw_items, ["item_id", "movie_title", "class"], "ml-100k.item"),
        (raw_users, ["user", "age", "gender", "occupation", "zip"], "ml-100k.user"),
    ):
        missing = [c for c in cols if c not in frame.columns]
        if missing:
            raise DataFileError(f"{folder / name}: missing field(s) {', '.join(missing)}")
    genres = ["|".join(g for g in str(c).split() if g) or "unknown" for c in raw_items["class"]]
    items = _items_frame(raw_items["item_id"], raw_items["movie_title"], genres)
    return _users_frame(raw_users), items, _events_frame(inter)


def _read_atomic(path: Path) -> pd.DataFrame:
    """A RecBole atomic file: tab-separated, header fields typed as `name:type`."""
    frame = read_table(path, "csv", sep="\t", dtype=str, keep_default_na=False, quoting=3)
    frame.columns = [str(c).split(":", 1)[0] for c in frame.columns]
    return frame


def _items_frame(item_id: pd.Series, title: pd.Series, genres: list[str]) -> pd.DataFrame:
    primary = [g.split("|", 1)[0] if g else "unknown" for g in genres]
    return pd.DataFrame(
        {
            "item_id": item_id.astype(str).to_numpy(),
            "title": title.astype(str).to_numpy(),
            "category": ["movies>" + p for p in primary],
            "genres": [g or "unknown" for g in genres],
        }
    )


def _users_frame(raw: pd.DataFrame) -> pd.DataFrame:
    zip_code = raw["zip"].astype(str)
    region = np.where(zip_code.str[:1].str.isdigit(), "zip" + zip_code.str[:1], "other")
    return pd.DataFrame(
        {
            "user_id": raw["user"].astype(str).to_numpy(),
            "age": pd.to_numeric(raw["age"], errors="coerce").astype("Int64").to_numpy(),
            "gender": raw["gender"].astype(str).to_numpy(),
            "region": region,
            "occupation": raw["occupation"].astype(str).to_numpy(),
            "zip_code": zip_code.to_numpy(),
        }
    )


def _events_frame(inter: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "user_id": inter["user"].astype(str).to_numpy(),
            "item_id": inter["item"].astype(str).to_numpy(),
            "event_type": "rating",
            "timestamp": pd.to_numeric(inter["ts"], errors="raise").to_numpy(),
            "value": pd.to_numeric(inter["rating"], errors="raise").to_numpy(),
        }
    )

"""Writes a tiny MovieLens-100K look-alike in both supported formats from the same rows."""

from __future__ import annotations

from pathlib import Path

from recfusion.data.movielens import GENRES

# (item, title, year, genres)
MOVIES = [
    ("1", "Toy Story", "1995", ["Animation", "Children's", "Comedy"]),
    ("2", "GoldenEye", "1995", ["Action", "Adventure", "Thriller"]),
    ("3", "Café au lait", "1994", ["Drama"]),  # latin-1 in GroupLens, UTF-8 in RecBole
]
# (user, age, gender, occupation, zip)
USERS = [("1", "24", "M", "technician", "85711"), ("2", "53", "F", "other", "94043")]
# (user, item, rating, unix time)
RATINGS = [
    ("1", "1", "5", "874965758"),
    ("1", "2", "3", "876893171"),
    ("2", "1", "4", "888550871"),
    ("2", "3", "2", "888551000"),
]


def write_grouplens(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "u.data").write_text("".join("\t".join(r) + "\n" for r in RATINGS))
    lines = []
    for item, title, year, genres in MOVIES:
        flags = ["1" if g in genres else "0" for g in GENRES]
        lines.append(
            "|".join([item, f"{title} ({year})", f"01-Jan-{year}", "", "http://x", *flags])
        )
    (folder / "u.item").write_bytes(("\n".join(lines) + "\n").encode("latin-1"))
    (folder / "u.user").write_text("".join("|".join(u) + "\n" for u in USERS))
    return folder


def write_recbole(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    inter = ["user_id:token\titem_id:token\trating:float\ttimestamp:float"]
    inter += ["\t".join(r) for r in RATINGS]
    (folder / "ml-100k.inter").write_text("\n".join(inter) + "\n")
    item = ["item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq"]
    item += [f"{i}\t{t}\t{y}\t{' '.join(g)}" for i, t, y, g in MOVIES]
    (folder / "ml-100k.item").write_text("\n".join(item) + "\n", encoding="utf-8")
    user = ["user_id:token\tage:token\tgender:token\toccupation:token\tzip_code:token"]
    user += ["\t".join(u) for u in USERS]
    (folder / "ml-100k.user").write_text("\n".join(user) + "\n")
    return folder

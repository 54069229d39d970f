"""Forgotten users: a user who asked to be forgotten is listed by keyed pseudonym (never by id)
in data/forget/forgotten.txt, and `ingest` drops every row of theirs from the tables it writes,
so no later stage, model or report sees them again.

`recfusion forget USER_ID` adds the line (and removes the user from the online store and the
event log at once); the file is a DVC dependency of `ingest`, so the next `dvc repro` reruns the
pipeline without them. The pseudonyms are made with the project's key (recfusion.privacy): a
checkout with another key cannot match them, so the key travels with the team.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from recfusion.privacy import key_pseudonym

FORGET_FILE = Path("data/forget/forgotten.txt")
HEADER = ("# users who asked to be forgotten, as keyed pseudonyms (recfusion.privacy), one per "
          "line;\n# `recfusion forget USER_ID` adds them, `ingest` drops their rows\n")  # fmt: skip


def read_forgotten(path: Path = FORGET_FILE) -> frozenset[str]:
    """The pseudonyms listed in `path` (none when it does not exist)."""
    if not path.is_file():
        return frozenset()
    lines = path.read_text(encoding="utf-8").splitlines()
    return frozenset(ln.strip() for ln in lines if ln.strip() and not ln.startswith("#"))


def add_forgotten(names: Iterable[str], path: Path = FORGET_FILE) -> bool:
    """Adds pseudonyms to `path` (created with its header); False when all were listed."""
    listed = read_forgotten(path)
    new = sorted(set(names) - listed)
    if not new:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.is_file():
        path.write_text(HEADER, encoding="utf-8")
    with path.open("a", encoding="utf-8") as f:
        f.writelines(f"{n}\n" for n in new)
    return True


def drop_forgotten(tables: dict[str, pd.DataFrame], forgotten: frozenset[str], key: bytes
                   ) -> tuple[dict[str, pd.DataFrame], dict[str, int]]:  # fmt: skip
    """The tables without the rows of forgotten users (by the pseudonym of `user_id`), and how
    many rows each table lost."""
    if not forgotten:
        return tables, {}
    out, dropped = {}, {}
    for name, table in tables.items():
        if "user_id" not in table.columns:
            out[name] = table
            continue
        ids = table["user_id"]
        distinct = ids.dropna().astype(str).unique()
        gone = {u for u in distinct if key_pseudonym(u, key) in forgotten}
        mask = ids.astype(str).isin(gone) & ids.notna()
        out[name] = table[~mask].reset_index(drop=True)
        dropped[name] = int(mask.sum())
    return out, dropped

"""MovieLens-100K in GroupLens and RecBole formats maps onto the same canonical tables."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from recfusion.config import MovieLensConfig
from recfusion.data import movielens
from recfusion.data.io import DataFileError
from tests.movielens_fixture import RATINGS, write_grouplens, write_recbole


@pytest.mark.parametrize("writer", [write_grouplens, write_recbole])
def test_loads_ratings_genres_and_demographics(tmp_path: Path, writer) -> None:
    folder = writer(tmp_path / "ml")
    t = movielens.load(MovieLensConfig(path=str(folder), format="auto"))
    ev = t["events"]
    assert len(ev) == len(RATINGS)
    assert set(ev["event_type"]) == {"rating"}
    assert ev["value"].tolist() == [5.0, 3.0, 4.0, 2.0]
    assert ev["timestamp"].iloc[0] == pd.Timestamp(874965758, unit="s")
    items = t["items"].set_index("item_id")
    assert items.loc["1", "category"] == "movies>Animation"
    assert items.loc["1", "genres"] == "Animation|Children's|Comedy"
    assert items.loc["3", "title"].startswith("Café au lait")  # latin-1 decoded correctly
    users = t["users"].set_index("user_id")
    assert users.loc["2", "age"] == 53 and users.loc["2", "gender"] == "F"
    assert users.loc["1", "region"] == "zip8"
    assert users.loc["1", "occupation"] == "technician"
    assert len(t["queries"]) == 0


def test_both_formats_agree(tmp_path: Path) -> None:
    gl = movielens.load(MovieLensConfig(str(write_grouplens(tmp_path / "a")), "grouplens"))
    rb = movielens.load(MovieLensConfig(str(write_recbole(tmp_path / "b")), "recbole"))
    pd.testing.assert_frame_equal(gl["events"], rb["events"])
    pd.testing.assert_frame_equal(gl["users"], rb["users"])
    cols = ["item_id", "category", "genres"]
    pd.testing.assert_frame_equal(gl["items"][cols], rb["items"][cols])


def test_missing_folder_and_files_are_clear(tmp_path: Path) -> None:
    with pytest.raises(DataFileError, match="MovieLens folder not found"):
        movielens.load(MovieLensConfig(str(tmp_path / "nope"), "auto"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataFileError, match="no MovieLens-100K files found"):
        movielens.load(MovieLensConfig(str(tmp_path / "empty"), "auto"))
    folder = write_grouplens(tmp_path / "partial")
    (folder / "u.user").unlink()
    with pytest.raises(DataFileError, match="u.user: file not found"):
        movielens.load(MovieLensConfig(str(folder), "grouplens"))

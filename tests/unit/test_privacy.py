"""Pseudonyms of user ids: keyed, stable per key, and the key kept out of the repository."""

from __future__ import annotations

import stat
from pathlib import Path

from recfusion.privacy import KEY_ENV, KEY_FILE, pseudonym, pseudonym_key


def test_pseudonym_is_stable_per_key_and_hides_the_id() -> None:
    a = pseudonym("u0000042", b"key one")
    assert a == pseudonym("u0000042", b"key one") and a.startswith("user-")
    assert "0000042" not in a
    assert a != pseudonym("u0000042", b"key two")  # without the key a guess cannot be checked
    assert a != pseudonym("u0000043", b"key one")


def test_key_file_is_made_once_readable_by_its_owner_only(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)
    first = pseudonym_key(tmp_path)
    assert len(first) == 64 and pseudonym_key(tmp_path) == first
    mode = stat.S_IMODE((tmp_path / KEY_FILE).stat().st_mode)
    assert mode == 0o600, oct(mode)
    assert KEY_FILE.parts[0] in (Path(__file__).parents[2] / ".gitignore").read_text()


def test_key_from_the_environment_wins(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv(KEY_ENV, "from the vault")
    assert pseudonym_key(tmp_path) == b"from the vault"
    assert not (tmp_path / KEY_FILE).exists()

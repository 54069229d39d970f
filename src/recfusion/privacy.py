"""Pseudonyms for user ids in what people read: reports, logged artifacts, example requests.

A pseudonym is a keyed hash (HMAC-SHA-256) of the user id: the same user gets the same pseudonym
in every report made with one key, so lists can be compared across runs, but without the key
nobody can tell which customer a pseudonym stands for, or test a guess. The key never enters
the repository: it comes from RECFUSION_PSEUDONYM_KEY, else from `.recfusion/pseudonym.key`
(git-ignored), written with 32 random bytes on first use, readable by its owner only.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

KEY_ENV = "RECFUSION_PSEUDONYM_KEY"
KEY_FILE = Path(".recfusion/pseudonym.key")
PREFIX = "user-"
DIGITS = 12  # hex digits kept in what people read: 48 bits, short enough to compare by eye
KEY_DIGITS = 32  # hex digits of a pseudonym used as a key (model vocabulary, store, forget list):
# 128 bits, so two of a shop's users never share one (48 bits would, with odds of 1 in 140 at
# 2 million users)


def pseudonym_key(root: Path = Path(".")) -> bytes:
    """The key: RECFUSION_PSEUDONYM_KEY when set (its text, UTF-8), else the key file under
    `root`, created on first use."""
    if os.environ.get(KEY_ENV):
        return os.environ[KEY_ENV].encode("utf-8")
    path = root / KEY_FILE
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another stage process made it a moment ago
            pass
        else:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(secrets.token_hex(32) + "\n")
    return path.read_text(encoding="utf-8").strip().encode("utf-8")


def pseudonym(user_id: str, key: bytes, digits: int = DIGITS) -> str:
    """`user-` and the first `digits` hex digits of HMAC-SHA-256(key, user_id)."""
    digest = hmac.new(key, str(user_id).encode("utf-8"), hashlib.sha256).hexdigest()
    return PREFIX + digest[:digits]


def key_pseudonym(user_id: str, key: bytes) -> str:
    """The pseudonym that stands for a user where it is matched, not read: KEY_DIGITS long."""
    return pseudonym(user_id, key, KEY_DIGITS)


KEY_CHECK_TEXT = "recfusion: key check"


def key_check(key: bytes) -> str:
    """The pseudonym of a fixed text: equal for two things (a packaged model's user vocabulary,
    an online store) made with the same key, and telling nothing about the key or any user."""
    return pseudonym(KEY_CHECK_TEXT, key)

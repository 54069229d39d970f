"""Query text as the query tower's integer inputs (pure NumPy).

A query becomes word ids (a vocabulary of the words in the training queries and the catalogue)
and hashed character trigrams of each word ("#jacekts#" -> "#ja", "jac", ...). The trigrams let
a query with a typo land near the correctly spelled one: "jacekts" shares three of its seven
trigrams (#ja, jac, ts#) with "jackets", and no word id.
"""

from __future__ import annotations

import zlib
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from recfusion.preparation.vocab import tokenize

PAD = 0
OOV = 1


def trigrams(word: str) -> list[str]:
    """Character trigrams of a word with boundary marks: "tee" -> ["#te", "tee", "ee#"]."""
    marked = f"#{word}#"
    return [marked[i : i + 3] for i in range(len(marked) - 2)]


def hash_gram(gram: str, buckets: int) -> int:
    """A stable bucket in [1, buckets) for a trigram (0 is padding); the same on every run."""
    return 1 + zlib.crc32(gram.encode("utf-8")) % (buckets - 1)


def swap_typo(text: str, rng: np.random.Generator) -> str:
    """`text` with two adjacent characters of one word swapped ("jackets" -> "jacekts"), the
    commonest typing slip; words of fewer than 4 letters are left alone."""
    tokens = text.split(" ")
    long = [n for n, t in enumerate(tokens) if len(t) >= 4]
    if not long:
        return text
    n = long[int(rng.integers(len(long)))]
    word = tokens[n]
    i = int(rng.integers(1, len(word) - 1))  # keep the first letter, as people mostly do
    tokens[n] = word[:i] + word[i + 1] + word[i] + word[i + 2 :]
    return " ".join(tokens)


@dataclass(frozen=True)
class QueryEncoder:
    """Turns query strings into fixed-width id arrays for the query tower."""

    words: tuple[str, ...]  # vocabulary; id = position + 2 (0 padding, 1 out of vocabulary)
    max_words: int  # words read per query
    max_grams: int  # trigrams read per query
    buckets: int  # hash buckets of the trigrams

    @classmethod
    def fit(cls, texts: Iterable[str], max_words: int, max_grams: int, buckets: int,
            min_count: int = 1) -> QueryEncoder:  # fmt: skip
        """A vocabulary of the words seen at least `min_count` times in `texts`, most frequent
        first (ties alphabetical, so the same texts give the same ids)."""
        counts = Counter(w for t in texts for w in tokenize(t))
        kept = sorted((w for w, c in counts.items() if c >= min_count),
                      key=lambda w: (-counts[w], w))  # fmt: skip
        return cls(tuple(kept), max_words, max_grams, buckets)

    @property
    def n_words(self) -> int:
        return len(self.words) + 2

    def encode(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        """{"words": [n, max_words], "grams": [n, max_grams]} int32 ids, 0-padded."""
        index = {w: i + 2 for i, w in enumerate(self.words)}
        words = np.zeros((len(texts), self.max_words), dtype=np.int32)
        grams = np.zeros((len(texts), self.max_grams), dtype=np.int32)
        for n, text in enumerate(texts):
            tokens = tokenize(text)[: self.max_words]
            words[n, : len(tokens)] = [index.get(t, OOV) for t in tokens]
            ids = [hash_gram(g, self.buckets) for t in tokens for g in trigrams(t)]
            ids = ids[: self.max_grams]
            grams[n, : len(ids)] = ids
        return {"words": words, "grams": grams}

    def to_json(self) -> dict:
        return {"words": list(self.words), "max_words": self.max_words,
                "max_grams": self.max_grams, "buckets": self.buckets}  # fmt: skip

    @classmethod
    def from_json(cls, raw: dict) -> QueryEncoder:
        return cls(tuple(raw["words"]), int(raw["max_words"]), int(raw["max_grams"]),
                   int(raw["buckets"]))  # fmt: skip

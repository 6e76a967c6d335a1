"""Comparing people's words: folding text and pg_trgm's similarity, in Python."""

from __future__ import annotations

import re
import unicodedata


def fold(value: str) -> str:
    """Lower case, accents removed, punctuation as single spaces."""
    plain = unicodedata.normalize("NFKD", value).encode("ascii", "ignore").decode()
    return " ".join(re.sub(r"[^a-z0-9]+", " ", plain.lower()).split())


def _trigrams(value: str) -> set[str]:
    grams: set[str] = set()
    for word in value.split():
        padded = f"  {word} "
        grams.update(padded[i : i + 3] for i in range(len(padded) - 2))
    return grams


def similarity(a: str, b: str) -> float:
    """pg_trgm's ``similarity`` of two texts once folded: shared trigrams over all distinct
    trigrams of both (each word padded with two spaces before and one after)."""
    ga, gb = _trigrams(fold(a)), _trigrams(fold(b))
    if not ga or not gb:
        return 0.0
    return len(ga & gb) / len(ga | gb)

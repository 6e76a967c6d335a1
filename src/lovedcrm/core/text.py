"""Comparing people's words (folding text, pg_trgm's similarity, in Python) and keeping
them inert in the CSV files the product writes (``safe_cell``); the key an erased address
leaves on a suppression list (``erased_address_key``)."""

from __future__ import annotations

import hashlib
import re
import unicodedata
from functools import lru_cache


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


@lru_cache(maxsize=8192)
def _folded_trigrams(value: str) -> frozenset[str]:
    # A batch (an import's chunk) compares the same names again and again: read each once.
    return frozenset(_trigrams(fold(value)))


def similarity(a: str, b: str) -> float:
    """pg_trgm's ``similarity`` of two texts once folded: shared trigrams over all distinct
    trigrams of both (each word padded with two spaces before and one after)."""
    ga, gb = _folded_trigrams(a), _folded_trigrams(b)
    if not ga or not gb:
        return 0.0
    return len(ga & gb) / len(ga | gb)


_PLAIN_NUMBER = re.compile(r"[+-]?[\d .,()/-]*")


def safe_cell(value: str) -> str:
    """Keep a spreadsheet from running a cell of a CSV file the product writes (the leads
    export, an import's errors file) as a formula (CSV injection): a cell starting with
    ``=``, ``@``, a tab or a carriage return, or with ``+``/``-`` but not a number or a
    phone number, gets a leading ``'``."""
    if not value:
        return value
    if value[0] in "=@\t\r" or (value[0] in "+-" and not _PLAIN_NUMBER.fullmatch(value)):
        return "'" + value
    return value


def erased_address_key(organization_id: object, email: str) -> str:
    """What an erased person's address becomes on a suppression list: a digest (salted by
    the organization) that still stops mail to the address if it comes back, and no longer
    says what the address was."""
    seed = f"{organization_id}:{email.strip().lower()}".encode()
    return "sha256:" + hashlib.sha256(seed).hexdigest()

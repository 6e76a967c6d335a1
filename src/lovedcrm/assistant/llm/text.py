"""Small, fast text matching for pt-BR and English chat messages: normalisation (case,
accents, WhatsApp spellings, stopwords, a light plural strip) and TF-IDF cosine similarity
over a handful of documents. Pure Python: a few hundred short texts rank in a millisecond or
two, with nothing to load."""

from __future__ import annotations

import math
import re
import unicodedata
from collections import Counter
from collections.abc import Sequence

_WORD = re.compile(r"[a-z0-9]+")
_PLACEHOLDER = re.compile(r"\{\{[^}]*\}\}")

STOPWORDS = frozenset(
    [
        "a",
        "o",
        "as",
        "os",
        "um",
        "uma",
        "uns",
        "umas",
        "de",
        "do",
        "da",
        "dos",
        "das",
        "no",
        "na",
        "nos",
        "nas",
        "em",
        "por",
        "para",
        "pra",
        "pro",
        "com",
        "sem",
        "e",
        "ou",
        "que",
        "se",
        "ao",
        "aos",
        "à",
        "às",
        "eu",
        "tu",
        "ele",
        "ela",
        "nos",
        "vos",
        "eles",
        "elas",
        "me",
        "te",
        "lhe",
        "lhes",
        "meu",
        "minha",
        "meus",
        "minhas",
        "seu",
        "sua",
        "seus",
        "suas",
        "teu",
        "tua",
        "esse",
        "essa",
        "isso",
        "este",
        "esta",
        "isto",
        "aquele",
        "aquela",
        "aquilo",
        "ja",
        "mas",
        "mais",
        "muito",
        "muita",
        "tambem",
        "so",
        "foi",
        "ser",
        "ter",
        "tem",
        "ha",
        "havia",
        "estou",
        "esta",
        "estao",
        "sou",
        "e",
        "era",
        "vai",
        "vou",
        "como",
        "qual",
        "quais",
        "quando",
        "onde",
        "aqui",
        "ai",
        "la",
        "entao",
        "pois",
        "porque",
        "nao",
        "sim",
        "ne",
        "ta",
        "tá",
        "the",
        "a",
        "an",
        "and",
        "or",
        "of",
        "to",
        "in",
        "on",
        "for",
        "with",
        "at",
        "by",
        "is",
        "are",
        "was",
        "were",
        "be",
        "been",
        "it",
        "this",
        "that",
        "i",
        "you",
        "we",
        "they",
        "he",
        "she",
        "my",
        "your",
        "our",
        "their",
        "me",
        "us",
        "him",
        "her",
        "do",
        "does",
        "did",
        "have",
        "has",
        "had",
        "will",
        "would",
        "can",
        "could",
        "oi",
        "ola",
        "bom",
        "boa",
        "dia",
        "tarde",
        "noite",
        "obrigado",
        "obrigada",
        "ok",
    ]
)
# WhatsApp spellings → the word they stand for.
SPELLINGS = {
    "vc": "voce",
    "vcs": "voces",
    "q": "que",
    "pq": "porque",
    "tb": "tambem",
    "tbm": "tambem",
    "blz": "beleza",
    "msg": "mensagem",
    "hj": "hoje",
    "qto": "quanto",
    "qnto": "quanto",
    "qdo": "quando",
    "obg": "obrigado",
    "td": "tudo",
    "cmg": "comigo",
    "orcamento": "orcamento",
    "valor": "preco",
    "precos": "preco",
    "custa": "preco",
    "custo": "preco",
    "price": "preco",
    "cost": "preco",
}


def fold(text: str) -> str:
    """Lower case without accents: "Orçamento" → "orcamento"."""
    decomposed = unicodedata.normalize("NFKD", text.lower())
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


def _stem(word: str) -> str:
    if len(word) > 4 and word.endswith("oes"):
        return word[:-3] + "ao"
    if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
        return word[:-1]
    return word


def tokens(text: str | None) -> list[str]:
    """The words that carry meaning, normalised; ``{{placeholders}}`` are left out."""
    if not text:
        return []
    out = []
    for raw in _WORD.findall(fold(_PLACEHOLDER.sub(" ", text))):
        word = SPELLINGS.get(raw, raw)
        if word in STOPWORDS or len(word) < 2:
            continue
        out.append(SPELLINGS.get(_stem(word), _stem(word)))
    return out


def normalized(text: str | None) -> str:
    """A key for "the same text": folded words joined by single spaces."""
    return " ".join(_WORD.findall(fold(text or "")))


class TfIdf:
    """TF-IDF vectors of ``documents`` (lists of tokens) and cosine similarity to a query."""

    def __init__(self, documents: Sequence[Sequence[str]]) -> None:
        self.count = len(documents)
        frequency: Counter[str] = Counter()
        for doc in documents:
            frequency.update(set(doc))
        self.idf = {
            term: math.log((1 + self.count) / (1 + df)) + 1.0 for term, df in frequency.items()
        }
        self.vectors = [self.vector(doc) for doc in documents]

    def vector(self, doc: Sequence[str]) -> dict[str, float]:
        counts = Counter(doc)
        weights = {
            term: (1.0 + math.log(n)) * self.idf.get(term, math.log(1 + self.count) + 1.0)
            for term, n in counts.items()
        }
        norm = math.sqrt(sum(w * w for w in weights.values())) or 1.0
        return {term: w / norm for term, w in weights.items()}

    def similarities(self, query: Sequence[str]) -> list[float]:
        q = self.vector(query)
        return [sum(w * doc.get(term, 0.0) for term, w in q.items()) for doc in self.vectors]

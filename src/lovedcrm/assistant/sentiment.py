"""The offline sentiment and urgency analyser for customer messages (pt-BR first, English too).

LeIA's lexicon (``data/leia``, MIT) plus the product's own rules and words
(``data/lexicon_extra.tsv``): WhatsApp spelling ("mto", "vc", "naum", "blz"), repeated
letters ("muuuito"), negation over a short window ("não gostei", "nada bom", "sem
problema"), intensifiers ("muito", "super"), contrast ("mas", "porém", "but"), emoji and
laughter, "!!!", capitals, and phrases that carry the sentiment of a sale ("não recebi",
"veio quebrado", "chegou antes do prazo", "vale a pena"). Signals are read beside the
polarity: buying intent, complaint, urgency (with ``urgency_score`` 0-100) and asking for a
person. No download, no model file: a message takes well under a millisecond.
"""

from __future__ import annotations

import math
import re
import unicodedata
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from lovedcrm.assistant import leia

DATA = Path(__file__).resolve().parent / "data"

LABELS = ("negative", "neutral", "positive")
NEUTRAL_BAND = 0.05  # |score| below this is neutral

SIGNALS = ("buying_intent", "complaint", "urgent", "wants_human")
URGENT_AT = 50  # urgency_score from which a message counts as urgent

N_SCALAR = -0.74
B_INCR = 0.293

# WhatsApp and chat spelling -> the word the lexicon knows (accent-free, lower case).
SLANG = {
    "mto": "muito", "mt": "muito", "mta": "muita", "mtos": "muitos", "mtas": "muitas",
    "muinto": "muito", "vc": "voce", "vcs": "voces", "ce": "voce", "q": "que", "oq": "o que",
    "naum": "nao", "n": "nao", "ñ": "nao", "nn": "nao", "nem": "nem", "blz": "beleza",
    "td": "tudo", "tds": "todos", "tb": "tambem", "tbm": "tambem", "pq": "porque",
    "obg": "obrigado", "obgd": "obrigado", "obgda": "obrigada", "brigado": "obrigado",
    "vlw": "valeu", "msm": "mesmo", "dps": "depois", "hj": "hoje", "agr": "agora",
    "p": "para", "pra": "para", "pro": "para o", "ta": "esta", "tava": "estava",
    "nd": "nada", "ngm": "ninguem", "qdo": "quando", "qnd": "quando", "qto": "quanto",
    "qt": "quanto", "kd": "cade", "pfv": "por favor", "pfvr": "por favor", "pf": "por favor",
    "plz": "please", "pls": "please", "eh": "e", "tah": "esta", "ok": "ok", "okay": "ok",
    "otima": "otima", "otimo": "otimo", "exelente": "excelente", "ecelente": "excelente",
    "pessima": "pessima", "horrivel": "horrivel", "bjs": "beijos", "abs": "abracos",
    "sdds": "saudades", "dmais": "demais", "dms": "demais", "aki": "aqui", "tmb": "tambem",
    "u": "you", "ur": "your", "thx": "thanks", "ty": "thanks", "dont": "don't",
    "didnt": "didn't", "doesnt": "doesn't", "isnt": "isn't", "wasnt": "wasn't",
    "cant": "can't", "wont": "won't", "im": "i'm",
}  # fmt: skip

# Words that turn the valence of what follows (within three words).
NEGATORS = frozenset(
    {
        *("nao", "nunca", "jamais", "nem", "nenhum", "nenhuma", "nada", "ninguem", "sem"),
        *("tampouco", "dificilmente", "raramente"),
        *("not", "no", "never", "nothing", "nobody", "none", "without", "neither", "nor"),
        *("don't", "doesn't", "didn't", "isn't", "wasn't", "aren't", "weren't", "can't"),
        *("won't", "couldn't", "wouldn't", "shouldn't", "haven't", "hasn't", "hardly"),
    }
)

# Words that make what follows stronger (or weaker).
BOOSTERS = {
    **leia.boosters(),
    **{
        w: B_INCR
        for w in (
            "muito", "muita", "muitos", "muitas", "super", "mega", "ultra", "hiper",
            "bem", "bastante", "demais", "totalmente", "simplesmente", "mais",
            "very", "so", "really", "extremely", "totally", "absolutely", "super", "too",
        )
    },
    **{w: -B_INCR for w in ("meio", "pouco", "quase", "razoavelmente", "slightly", "somewhat")},
}  # fmt: skip

# What a negation that turns no sentiment word adds on its own.
ORPHAN_NEGATION = {
    **dict.fromkeys(("nao", "nem", "nunca", "jamais", "ninguem", "nenhum", "nenhuma"), -1.0),
    **dict.fromkeys(("not", "never", "nobody", "don't", "doesn't", "didn't", "can't"), -0.8),
    **dict.fromkeys(("won't", "haven't", "hasn't", "isn't", "wasn't"), -0.8),
}

CLAUSE = frozenset({"mas", "but", "e", "and", "que", "porque", "pois", "se", "quando"})

CONTRASTS = frozenset({"mas", "porem", "entretanto", "contudo", "todavia", "but", "however"})

LAUGHTER = re.compile(r"^(k{3,}|(ha){2,}h?|(he){2,}h?|(rs){2,}|(hua){2,}|lol|lmao)$")

EMOJI = {
    **dict.fromkeys("😀😁😂🤣😃😄😅😆😊😋😎😍🥰😘😗😙😚🙂🤗🤩🥳👍👏🙌💪🎉✨🌟⭐💯🔥👌✅", 2.0),
    **dict.fromkeys("❤🧡💛💚💙💜🖤🤍💖💗💓💞💕😻🙏", 2.2),
    **dict.fromkeys("😉😌🤝🆗", 1.0),
    **dict.fromkeys("😐😑😶🤔🙄😬😏🤨", -0.5),
    **dict.fromkeys("😒😕🙁☹😟😔😞😓😥😢😭😩😫😤😠😡🤬👎💔😖😣🤮🤢😱😰😨❌🚫", -2.2),
}

_TOKEN = re.compile(r"[a-z0-9]+(?:'[a-z]+)?|[!?]+|[^\sa-z0-9]", re.IGNORECASE)
_REPEATS = re.compile(r"(.)\1{2,}")


@dataclass(frozen=True)
class Analysis:
    """What the analyser reads in one message."""

    label: str  # negative | neutral | positive
    score: float  # -1 .. 1
    urgency: int  # 0 .. 100
    signals: tuple[str, ...] = field(default=())
    source: str = "lexicon"

    def as_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "score": self.score,
            "urgency": self.urgency,
            "signals": list(self.signals),
            "source": self.source,
        }


def label_of(score: float) -> str:
    if score >= NEUTRAL_BAND:
        return "positive"
    if score <= -NEUTRAL_BAND:
        return "negative"
    return "neutral"


@lru_cache(maxsize=1)
def _extra() -> tuple[dict[str, float], dict[tuple[str, ...], float]]:
    """The product's words (override LeIA's) and phrases (several words, one valence)."""
    words: dict[str, float] = {}
    phrases: dict[tuple[str, ...], float] = {}
    for raw in (DATA / "lexicon_extra.tsv").open(encoding="utf-8"):
        line = raw.split("#", 1)[0].rstrip()
        if not line.strip():
            continue
        term, value = line.rsplit("\t", 1)
        key = tuple(leia.strip_accents(term.strip().lower()).split())
        if len(key) == 1:
            words[key[0]] = float(value)
        else:
            phrases[key] = float(value)
    return words, phrases


@lru_cache(maxsize=1)
def lexicon() -> dict[str, float]:
    words, _ = _extra()
    merged = dict(leia.lexicon())
    merged.pop("nao", None)  # LeIA scores "não" itself -1.2; here it only negates
    merged.update(words)
    return merged


def _phrase_index() -> dict[str, list[tuple[tuple[str, ...], float]]]:
    return _phrase_index_cached()


@lru_cache(maxsize=1)
def _phrase_index_cached() -> dict[str, list[tuple[tuple[str, ...], float]]]:
    _, phrases = _extra()
    index: dict[str, list[tuple[tuple[str, ...], float]]] = {}
    for key, value in sorted(phrases.items(), key=lambda kv: -len(kv[0])):
        index.setdefault(key[0], []).append((key, value))
    return index


def _normal_word(word: str, lex: dict[str, float]) -> str:
    """One word as the lexicon spells it: slang expanded, "muuuito" -> "muito"."""
    if word in lex:
        return word
    if word in SLANG:
        return SLANG[word]
    if _REPEATS.search(word):
        for candidate in (_REPEATS.sub(r"\1", word), _REPEATS.sub(r"\1\1", word)):
            if candidate in lex or candidate in SLANG:
                return SLANG.get(candidate, candidate)
        return _REPEATS.sub(r"\1", word)
    return word


@dataclass
class _Token:
    text: str  # normalized
    caps: bool = False
    stretched: bool = False


def tokens(text: str) -> list[str]:
    """The normalized words and emoji of ``text`` (what the per-organization model reads)."""
    return [t.text for t in _tokens(text)]


def fold(text: str) -> str:
    """Accents off ("não" -> "nao", "ç" -> "c"), emoji kept."""
    return "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))


def _tokens(text: str) -> list[_Token]:
    lex = lexicon()
    out: list[_Token] = []
    for raw in _TOKEN.findall(fold(text)):
        if raw[0] in "!?":
            out.extend(_Token(c) for c in raw)
            continue
        if raw in ".,;":
            out.append(_Token(raw))
            continue
        if not raw.replace("'", "").isalnum():  # a symbol: only emoji count
            if raw.strip("\ufe0f") in EMOJI:
                out.append(_Token(raw.strip("\ufe0f")))
            continue
        plain = raw.lower()
        if not plain:
            continue
        caps = raw.isupper() and len(raw) > 2
        stretched = bool(_REPEATS.search(plain)) and not LAUGHTER.match(plain)
        if LAUGHTER.match(plain):
            out.append(_Token("kkk"))
            continue
        for part in _normal_word(plain, lex).split():
            out.append(_Token(part, caps=caps, stretched=stretched))
    return out


# --- signals ----------------------------------------------------------------------------------

_BUYING = re.compile(
    r"\b(quanto (custa|fica|sai|e|esta|cobra|vale)|qual (e )?(o )?(preco|valor)|"
    r"(tem|algum|da|dao|faz|fazem|rola) (um )?desconto|quero (fechar|comprar|contratar|assinar|"
    r"adquirir|levar|o plano|pagar)|vou (fechar|comprar|levar|contratar)|vamos fechar|"
    r"(como|onde) (faco para|faco pra|posso|eu) (comprar|pagar|contratar|assinar)|"
    r"(aceita|aceitam|parcela|parcelam|parcelamento|pagar no|pagamento no) ?(pix|cartao|boleto)?|"
    r"orcamento|proposta|manda(r)? o link|link (de|do) pagamento|forma(s)? de pagamento|"
    r"tabela de precos?|precos?|valores|"
    r"how much|what'?s the price|price|pricing|quote|discount|i want to (buy|order|sign up)|"
    r"ready to (buy|sign|order)|can i (buy|order|pay))\b"
)
_COMPLAINT = re.compile(
    r"\b(reclama\w*|procon|reclame aqui|defeito\w*|quebrad\w*|estragad\w*|danificad\w*|"
    r"nao (funciona|funcionou|chegou|recebi|veio|entregaram|resolve\w*|responde\w*|liga)|"
    r"ainda nao (chegou|recebi|veio)|atrasad\w*|atraso|atrasou|reembolso|estorno|"
    r"devolu\w*|devolver|cancelar|cancelamento|pessim\w*|horrivel|absurdo|descaso|"
    r"enganad\w*|golpe|errad\w*|insatisfeit\w*|decepciona\w*|vergonha|lixo|"
    r"refund|broken|damaged|doesn'?t work|not working|never arrived|complain\w*|"
    r"cancel|terrible|awful|worst|scam)\b"
)
_URGENT_STRONG = re.compile(
    r"(\burgent\w*|\bemergencia\b|\bpra ontem\b|\bpara ontem\b|\bimediatamente\b|"
    r"\bo quanto antes\b|\bo mais rapido possivel\b|\basap\b|\bemergency\b|\bright now\b|"
    r"\bimmediately\b|\bsem falta\b)"
)
_URGENT_WEAK = re.compile(
    r"\b(hoje|agora|ainda hoje|rapido|logo|ja|amanha cedo|hoje mesmo|ate amanha|"
    r"prazo|correndo|today|now|tonight|quickly|soon|deadline)\b"
)
_HUMAN = re.compile(
    r"\b(falar com (um |uma |o |a |algum |alguma )?(atendente|pessoa|humano|gerente|"
    r"responsavel|alguem|vendedor|vendedora|supervisor|dono|gente de verdade)|"
    r"(um|uma|algum|alguma) (atendente|humano|pessoa de verdade|pessoa real)|"
    r"atendimento humano|nao (quero|aguento) (falar com )?(robo|bot|maquina)|"
    r"(e|isso e) (um )?robo|me liga|me ligue|liga pra mim|quero falar com|"
    r"(talk|speak) to (a |an |someone|somebody|a real|the )?(human|person|agent|manager|"
    r"representative|someone|somebody)|real person|human agent|call me)\b"
)


def _plain(text: str) -> str:
    words = [t for t in re.findall(r"[a-z0-9']+", leia.strip_accents(text).lower())]
    return " ".join(
        SLANG.get(w, w) if len(SLANG.get(w, w).split()) == 1 else SLANG[w] for w in words
    )


def signals(text: str, score: float | None = None) -> tuple[tuple[str, ...], int]:
    """The message's signals and its urgency (0-100)."""
    plain = _plain(text)
    if score is None:
        score = polarity(text)
    found: list[str] = []
    if _BUYING.search(plain):
        found.append("buying_intent")
    complaint = bool(_COMPLAINT.search(plain))
    if complaint or score <= -0.6:
        found.append("complaint")
    urgency = 0
    strong = len(_URGENT_STRONG.findall(plain))
    weak = len(_URGENT_WEAK.findall(plain))
    urgency += min(strong, 2) * 55 + min(weak, 3) * 20
    if "!!" in text:
        urgency += 10
    letters = [c for c in text if c.isalpha()]
    if len(letters) >= 8 and sum(c.isupper() for c in letters) / len(letters) > 0.7:
        urgency += 15
    if urgency and score <= -0.3:
        urgency += 10
    if complaint and urgency:
        urgency += 10
    urgency = min(100, urgency)
    if urgency >= URGENT_AT:
        found.append("urgent")
    if _HUMAN.search(plain):
        found.append("wants_human")
    return tuple(found), urgency


# --- polarity --------------------------------------------------------------------------------


def _phrase_at(words: list[str], i: int) -> tuple[int, float] | None:
    for key, value in _phrase_index().get(words[i], ()):
        n = len(key)
        if tuple(words[i : i + n]) == key:
            return n, value
    return None


def polarity(text: str) -> float:
    """The score in [-1, 1] (negative .. positive)."""
    toks = _tokens(text)
    lex = lexicon()
    words = [t.text for t in toks]
    caps_some = 0 < sum(t.caps for t in toks) < len(toks)
    valences: list[float] = []
    positions: list[int] = []
    used: set[int] = set()  # negators that turned a word
    covered: set[int] = set()  # words inside a phrase
    i = 0
    while i < len(words):
        word = words[i]
        phrase = _phrase_at(words, i)
        if phrase is not None:
            n, value = phrase
            valence = value
            span = n
        elif word in EMOJI:
            valence, span = EMOJI[word], 1
        elif word == "kkk":
            valence, span = 0.8, 1
        elif word in lex and word not in BOOSTERS and word not in NEGATORS:
            valence, span = lex[word], 1
        else:
            i += 1
            continue
        token = toks[i]
        if token.caps and caps_some:
            valence += 0.733 if valence > 0 else -0.733
        if token.stretched:
            valence *= 1.2
        # Look back at most three words: boosters and negation.
        for back in range(1, 4):
            j = i - back
            if j < 0:
                break
            prev = words[j]
            if j in covered or (lex.get(prev) and prev not in NEGATORS and prev not in BOOSTERS):
                break  # another sentiment word (or phrase) stands between
            if prev in (".", "!", "?", ",", ";") or (prev in CLAUSE and back > 1):
                break
            damp = (1.0, 0.95, 0.9)[back - 1]
            if prev in BOOSTERS and phrase is None:
                boost = BOOSTERS[prev] * damp
                valence += boost if valence > 0 else -boost
            if prev in NEGATORS and not _negation_excused(words, j, i):
                # A negated phrase (already negative, "não recebi") stays what it says.
                if phrase is None or valence > 0:
                    valence *= N_SCALAR
                used.add(j)
                break
        valences.append(valence)
        positions.append(i)
        covered.update(range(i, i + span))
        i += span
    # A "não" that turned no word still says something went wrong ("não consigo entrar").
    for k, word in enumerate(words):
        free = word in ORPHAN_NEGATION and k not in used and k not in covered
        if free and not _negation_excused(words, k, k + 1):
            valences.append(ORPHAN_NEGATION[word])
            positions.append(k)
    if not valences:
        return 0.0
    # Contrast: what follows the last "mas" weighs more than what precedes it.
    cut = max((k for k, w in enumerate(words) if w in CONTRASTS), default=-1)
    if cut >= 0:
        valences = [v * (0.5 if p < cut else 1.5) for v, p in zip(valences, positions, strict=True)]
    total = sum(valences)
    bangs = min(sum(w == "!" for w in words), 4) * 0.292
    if total > 0:
        total += bangs
    elif total < 0:
        total -= bangs
    return round(total / math.sqrt(total * total + 15), 4)


def _negation_excused(words: list[str], j: int, i: int) -> bool:
    """ "não só ... (mas)", "nada mal" is handled as a phrase; "sem dúvida" is not a negation."""
    if words[j] == "sem" and j + 1 < len(words) and words[j + 1] in ("duvida", "duvidas"):
        return True
    if words[j] == "nao" and j + 1 < len(words) and words[j + 1] in ("so", "apenas", "somente"):
        return True
    return bool(words[j] == "nem" and j + 1 < len(words) and words[j + 1] == "sempre")


def analyse(text: str | None) -> Analysis:
    """Polarity, label, urgency and signals of one message (empty text: neutral, no signal)."""
    if not text or not text.strip():
        return Analysis("neutral", 0.0, 0, ())
    score = polarity(text)
    found, urgency = signals(text, score)
    return Analysis(label_of(score), score, urgency, found)


def binary(score: float) -> int:
    """A score on a two-class task (no neutral in the data): 1 when >= 0, else -1 -- the rule
    LeIA's baseline is measured with."""
    return 1 if score >= 0 else -1

"""The rules model (``rules_based``): points an organization can read and edit, used until it
has enough outcomes of its own to learn from (``MIN_WON`` won and ``MIN_LOST`` lost).

The score is ``base`` plus the points of every rule that applies, kept within 0–100:

- ``sources``: points per lead source (case-insensitive);
- ``value_bands``: ``[minimum value, points]`` — the highest band the value reaches;
- ``recency``: ``[up to N days since the last activity, points]`` — the first that fits,
  else ``stale_points``;
- engagement: ``per_message_in`` per WhatsApp message from the lead and ``per_activity``
  per note, call, e-mail, meeting or task, together at most ``engagement_max``; plus
  ``fast_reply_points`` when the lead's usual answer time is within ``fast_reply_minutes``;
- ``company_points`` with a company, ``corporate_email_points`` with a non-free e-mail.

A rules score is not a probability: the lead's ``probability_percentage`` is written only by a
calibrated model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lovedcrm.scoring.features import ACTIVITY_TYPES

MIN_WON = 30
MIN_LOST = 30

DEFAULT_RULES: dict[str, Any] = {
    "base": 30,
    "sources": {
        "referral": 20,
        "indicação": 20,
        "website": 10,
        "site": 10,
        "whatsapp": 10,
        "instagram": 5,
        "facebook": 5,
        "import": 0,
    },
    "value_bands": [[1000, 5], [10000, 10], [50000, 15]],
    "recency": [[1, 15], [7, 10], [30, 0]],
    "stale_points": -15,
    "per_message_in": 2,
    "per_activity": 1,
    "engagement_max": 20,
    "fast_reply_minutes": 60,
    "fast_reply_points": 10,
    "company_points": 5,
    "corporate_email_points": 5,
}

_LIMIT = 1000  # no single number of points beyond ±1000


class RulesError(ValueError):
    """Rules that cannot be used; ``field`` names the part at fault."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def _int(field: str, value: Any, low: int = -_LIMIT, high: int = _LIMIT) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value):
        raise RulesError(field, "must be a whole number")
    if not low <= int(value) <= high:
        raise RulesError(field, f"must be between {low} and {high}")
    return int(value)


def _pairs(field: str, value: Any, low: int, high: int) -> list[list[int]]:
    if not isinstance(value, list) or len(value) > 20:
        raise RulesError(field, "must be a list of at most 20 [number, points] pairs")
    out = []
    for i, pair in enumerate(value):
        if not isinstance(pair, list | tuple) or len(pair) != 2:
            raise RulesError(f"{field}[{i}]", "must be a [number, points] pair")
        out.append([_int(f"{field}[{i}]", pair[0], low, high), _int(f"{field}[{i}]", pair[1])])
    return sorted(out)


def validate(raw: Any) -> dict[str, Any]:
    """Complete, checked rules (missing keys take the defaults); raises :class:`RulesError`."""
    if not isinstance(raw, dict):
        raise RulesError("rules", "must be an object")
    unknown = sorted(set(raw) - set(DEFAULT_RULES))
    if unknown:
        raise RulesError(unknown[0], "is not a rule")
    rules = {**DEFAULT_RULES, **raw}
    sources = rules["sources"]
    if not isinstance(sources, dict) or len(sources) > 100:
        raise RulesError("sources", "must map at most 100 sources to points")
    clean_sources = {}
    for name, points in sources.items():
        key = str(name).strip().lower()
        if not key or len(key) > 100:
            raise RulesError("sources", "a source name must have 1 to 100 characters")
        clean_sources[key] = _int(f"sources.{key}", points)
    out = {
        "base": _int("base", rules["base"], 0, 100),
        "sources": clean_sources,
        "value_bands": _pairs("value_bands", rules["value_bands"], 0, 10**12),
        "recency": _pairs("recency", rules["recency"], 0, 3650),
    }
    for name in (
        "stale_points",
        "per_message_in",
        "per_activity",
        "engagement_max",
        "fast_reply_points",
        "company_points",
        "corporate_email_points",
    ):
        out[name] = _int(name, rules[name])
    out["fast_reply_minutes"] = _int("fast_reply_minutes", rules["fast_reply_minutes"], 0, 10080)
    return out


@dataclass(frozen=True)
class RuleHit:
    """A rule that gave points: which one (``rule``), the feature it read, its points."""

    rule: str
    feature: str
    points: int


def score(rules: dict[str, Any], record: dict[str, Any]) -> tuple[int, list[RuleHit]]:
    """The lead's score (0–100) and the rules that gave it points, largest first."""
    hits: list[RuleHit] = []
    source = record.get("source")
    if source and source in rules["sources"]:
        hits.append(RuleHit("source", "source", rules["sources"][source]))
    value = record.get("value")
    if value is not None:
        band = [p for minimum, p in rules["value_bands"] if value >= minimum]
        if band:
            hits.append(RuleHit("value", "value", band[-1]))
    days = record.get("days_since_activity")
    if days is not None:
        fits = [p for limit, p in rules["recency"] if days <= limit]
        hits.append(
            RuleHit("recency", "days_since_activity", fits[0] if fits else rules["stale_points"])
        )
    messages = int(record.get("messages_in") or 0)
    activities = sum(int(record.get(f"activities:{k}") or 0) for k in ACTIVITY_TYPES)
    engagement = messages * rules["per_message_in"] + activities * rules["per_activity"]
    engagement = min(engagement, rules["engagement_max"])
    if messages:
        hits.append(RuleHit("engagement", "messages_in", engagement))
    elif activities:
        hits.append(RuleHit("engagement", "activities", engagement))
    reply = record.get("reply_minutes")
    if reply is not None and reply <= rules["fast_reply_minutes"]:
        hits.append(RuleHit("fast_reply", "reply_minutes", rules["fast_reply_points"]))
    if record.get("has_company"):
        hits.append(RuleHit("company", "has_company", rules["company_points"]))
    if record.get("email_kind") == "corporate":
        hits.append(RuleHit("corporate_email", "email_kind", rules["corporate_email_points"]))
    hits = [h for h in hits if h.points]
    total = rules["base"] + sum(h.points for h in hits)
    hits.sort(key=lambda h: abs(h.points), reverse=True)
    return max(0, min(100, total)), hits


def needed(won: int, lost: int) -> tuple[int, int]:
    """How many more won and lost outcomes the organization needs before a model is trained."""
    return max(0, MIN_WON - won), max(0, MIN_LOST - lost)

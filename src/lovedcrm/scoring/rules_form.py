"""The rules editor's form: the rules as text fields, and back (with errors in words).

Lists are one ``name = points`` per line: sources (``referral = 20``), value bands
(``10000 = 10``: from that value up) and recency (``7 = 10``: up to that many days since the
last activity). The other rules are single whole numbers.
"""

from __future__ import annotations

from typing import Any

from lovedcrm.scoring import rules
from lovedcrm.web.i18n import N_

# (name, label, hint) of the single-number rules, as the form shows them.
FIELDS: tuple[tuple[str, str, str], ...] = (
    ("base", N_("Starting points"), N_("Every lead starts here (0–100).")),
    ("stale_points", N_("No recent activity"), N_("Points when no recency line fits.")),
    ("per_message_in", N_("Per message from the lead"), N_("Each WhatsApp message received.")),
    ("per_activity", N_("Per activity"), N_("Each note, call, e-mail, meeting or task.")),
    ("engagement_max", N_("Engagement cap"), N_("At most this many points from the two above.")),
    ("fast_reply_minutes", N_("Fast answer (minutes)"), N_("The lead usually answers within.")),
    ("fast_reply_points", N_("Points for a fast answer"), N_("When the lead answers that fast.")),
    ("company_points", N_("Company filled in"), N_("Points when the lead has a company.")),
    ("corporate_email_points", N_("Corporate e-mail"), N_("Points for a non-free e-mail.")),
)
LISTS = ("sources", "value_bands", "recency")


def form_of(current: dict[str, Any]) -> dict[str, str]:
    form = {name: str(current[name]) for name, _, _ in FIELDS}
    form["sources"] = "\n".join(f"{k} = {v}" for k, v in current["sources"].items())
    form["value_bands"] = "\n".join(f"{a} = {b}" for a, b in current["value_bands"])
    form["recency"] = "\n".join(f"{a} = {b}" for a, b in current["recency"])
    return form


def _whole(text: str) -> int | None:
    try:
        return int(text.strip())
    except ValueError:
        return None


def _lines(text: str, numeric_name: bool) -> tuple[list[tuple[Any, int]], bool]:
    out: list[tuple[Any, int]] = []
    for raw in text.replace("\r", "").split("\n"):
        line = raw.strip()
        if not line:
            continue
        name, sep, points = line.rpartition("=")
        value = _whole(points)
        key: Any = name.strip()
        if numeric_name:
            key = _whole(key.replace(".", "").replace(",", ""))
        if not sep or value is None or key in (None, ""):
            return [], False
        out.append((key, value))
    return out, True


def parse_rules_form(form: dict[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
    """The rules the form describes, or errors (field → catalog msgid)."""
    errors: dict[str, str] = {}
    parsed: dict[str, Any] = {}
    for name, _, _ in FIELDS:
        value = _whole(form.get(name, ""))
        if value is None:
            errors[name] = N_("Type a whole number.")
        else:
            parsed[name] = value
    sources, ok = _lines(form.get("sources", ""), numeric_name=False)
    if not ok:
        errors["sources"] = N_("One source per line, as: referral = 20")
    parsed["sources"] = {str(k).lower(): v for k, v in sources}
    for name, message in (
        ("value_bands", N_("One band per line, as: 10000 = 10")),
        ("recency", N_("One line per number of days, as: 7 = 10")),
    ):
        pairs, ok = _lines(form.get(name, ""), numeric_name=True)
        if not ok:
            errors[name] = message
        parsed[name] = [[a, b] for a, b in pairs]
    if errors:
        return parsed, errors
    try:
        return rules.validate(parsed), {}
    except rules.RulesError as exc:
        field = exc.field.split(".")[0].split("[")[0]
        where = field if field in form or field in LISTS else "form"
        return parsed, {where: N_("This number is out of range.")}

"""A score's reasons in the reader's words: "Respondeu em 5 min", "Origem: indicação".

Each feature's value is put in a sentence from the catalog (English msgids, pt-BR in
``web/locale``); names for ids (stages, members, custom field labels) come from ``Names``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from lovedcrm.scoring.artifacts import Effect
from lovedcrm.scoring.features import CUSTOM_PREFIX
from lovedcrm.web.i18n import N_, Localizer

TOP = 3  # factors shown each way
MIN_EFFECT = 0.02  # in log-odds: smaller effects are noise, not reasons

# Common lead sources, in the reader's language (anything else is shown as it was typed).
SOURCE_NAMES = {
    "referral": N_("referral"),
    "indicação": N_("referral"),
    "website": N_("website"),
    "site": N_("website"),
    "import": N_("import"),
    "whatsapp": "WhatsApp",
    "instagram": "Instagram",
    "facebook": "Facebook",
}

COUNTED = frozenset(
    {
        "activities:note",
        "activities:call",
        "activities:email",
        "activities:meeting",
        "activities:task",
        "activities",
        "messages_in",
        "messages_out",
        "templates_sent",
        "templates_answered",
        "stage_changes",
        "days_in_stage",
        "age_days",
    }
)


def _count(loc: Localizer, name: str, n: int) -> str | None:
    """The sentence of a count feature (plural-aware), or None for another feature."""
    if name == "activities:note":
        text = loc.ngettext("%(num)d note", "%(num)d notes", n)
    elif name == "activities:call":
        text = loc.ngettext("%(num)d call", "%(num)d calls", n)
    elif name == "activities:email":
        text = loc.ngettext("%(num)d e-mail", "%(num)d e-mails", n)
    elif name == "activities:meeting":
        text = loc.ngettext("%(num)d meeting", "%(num)d meetings", n)
    elif name == "activities:task":
        text = loc.ngettext("%(num)d task", "%(num)d tasks", n)
    elif name == "activities":
        text = loc.ngettext("%(num)d activity", "%(num)d activities", n)
    elif name == "messages_in":
        text = loc.ngettext(
            "%(num)d WhatsApp message from the lead",
            "%(num)d WhatsApp messages from the lead",
            n,
        )
    elif name == "messages_out":
        text = loc.ngettext("%(num)d WhatsApp message sent", "%(num)d WhatsApp messages sent", n)
    elif name == "templates_sent":
        text = loc.ngettext("%(num)d template message sent", "%(num)d template messages sent", n)
    elif name == "templates_answered":
        text = loc.ngettext(
            "%(num)d template message answered", "%(num)d template messages answered", n
        )
    elif name == "stage_changes":
        text = loc.ngettext("%(num)d stage change", "%(num)d stage changes", n)
    elif name == "days_in_stage":
        text = loc.ngettext("%(num)d day in this stage", "%(num)d days in this stage", n)
    elif name == "age_days":
        text = loc.ngettext("Created %(num)d day ago", "Created %(num)d days ago", n)
    else:
        return None
    return text % {"num": n}


@dataclass
class Names:
    """Names for the ids a record holds, and the lead's custom values as typed."""

    stages: dict[str, str] = field(default_factory=dict)
    members: dict[str, str] = field(default_factory=dict)
    custom_labels: dict[str, str] = field(default_factory=dict)
    custom_values: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Factor:
    feature: str
    direction: str  # "up" or "down"
    weight: float
    text: str


def duration(loc: Localizer, minutes: float) -> str:
    if minutes < 60:
        return loc.gettext("%(n)d min") % {"n": max(1, round(minutes))}
    if minutes < 48 * 60:
        return loc.gettext("%(n)d h") % {"n": round(minutes / 60)}
    days = round(minutes / 1440)
    return loc.ngettext("%(num)d day", "%(num)d days", days) % {"num": days}


def _plain(loc: Localizer, value: Any) -> str:
    if isinstance(value, bool):
        return loc.gettext("yes") if value else loc.gettext("no")
    if isinstance(value, float):
        return loc.number(int(value) if value == int(value) else round(value, 2))
    return str(value)


def _custom(loc: Localizer, name: str, value: Any, names: Names) -> str:
    key = name.removeprefix(CUSTOM_PREFIX)
    label = names.custom_labels.get(key, key)
    shown = names.custom_values.get(key, value)
    if shown is None or shown == "":
        return loc.gettext("%(label)s: empty") % {"label": label}
    return loc.gettext("%(label)s: %(value)s") % {"label": label, "value": _plain(loc, shown)}


def describe(loc: Localizer, name: str, value: Any, names: Names) -> str:
    """The sentence for feature ``name`` having ``value``."""
    t = loc.gettext
    if name.startswith(CUSTOM_PREFIX):
        return _custom(loc, name, value, names)
    if name in COUNTED:
        return _count(loc, name, int(value or 0)) or name
    if name == "source":
        if not value:
            return t("No source")
        return t("Source: %(value)s") % {"value": t(SOURCE_NAMES.get(str(value), str(value)))}
    if name == "value":
        if value is None:
            return t("No estimated value")
        return t("Value: %(value)s") % {"value": loc.money(value, cents=None)}
    if name == "has_company":
        return t("Company filled in") if value else t("No company")
    if name == "has_job_title":
        return t("Job title filled in") if value else t("No job title")
    if name == "email_kind":
        if value == "corporate":
            return t("Corporate e-mail")
        return t("Free e-mail address") if value == "free" else t("No e-mail")
    if name == "phone_area":
        if not value:
            return t("No phone")
        if str(value).startswith("BR-"):
            return t("Phone area code %(value)s") % {"value": str(value)[3:]}
        return t("Phone from country code %(value)s") % {"value": value}
    if name == "owner":
        if not value:
            return t("No owner")
        return t("Owner: %(value)s") % {
            "value": names.members.get(str(value), t("a former member"))
        }
    if name == "stage":
        return t("Stage: %(value)s") % {"value": names.stages.get(str(value), "?")}
    if name == "days_since_activity":
        days = int(value or 0)
        if days == 0:
            return t("Activity today")
        return loc.ngettext(
            "Last activity %(num)d day ago", "Last activity %(num)d days ago", days
        ) % {"num": days}
    if name == "reply_minutes":
        if value is None:
            return t("Has not answered yet")
        return t("Answered in %(duration)s") % {"duration": duration(loc, float(value))}
    return f"{name}: {_plain(loc, value)}"


def factors(
    loc: Localizer,
    effects: Sequence[Effect],
    record: dict[str, Any],
    names: Names,
    *,
    top: int = TOP,
    threshold: float = MIN_EFFECT,
) -> tuple[list[Factor], list[Factor]]:
    """The strongest reasons up and down (at most ``top`` each), in the reader's words."""
    up: list[Factor] = []
    down: list[Factor] = []
    for e in sorted(effects, key=lambda e: abs(e.effect), reverse=True):
        if abs(e.effect) < threshold:
            continue
        value = record.get(e.feature)
        if e.feature == "activities":
            value = sum(int(v or 0) for k, v in record.items() if k.startswith("activities:"))
        target = up if e.effect > 0 else down
        if len(target) < top:
            text = describe(loc, e.feature, value, names)
            target.append(
                Factor(e.feature, "up" if e.effect > 0 else "down", round(e.effect, 4), text)
            )
    return up, down

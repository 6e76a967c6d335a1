"""RFC 5545 through ``icalendar``: an invitation (METHOD:REQUEST / CANCEL, one stable UID per
event, SEQUENCE raised on each change) and a member's feed (METHOD:PUBLISH)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from icalendar import Calendar, Event, vCalAddress, vText  # type: ignore[import-untyped]

from lovedcrm.calendar.models import CalendarEvent

PRODID = "-//Loved CRM//Agenda//EN"
_STATUS = {"scheduled": "CONFIRMED", "completed": "CONFIRMED", "no_show": "CONFIRMED"}


def uid_of(event: CalendarEvent) -> str:
    return f"{event.id}@lovedcrm"


def _vevent(event: CalendarEvent, *, organizer: str | None, stamp: datetime, cancel: bool) -> Event:
    item = Event()
    item.add("uid", uid_of(event))
    item.add("dtstamp", stamp)
    item.add("sequence", int(event.ics_sequence or 0))
    item.add("summary", event.title)
    item.add("dtstart", event.start_time)
    item.add("dtend", event.end_time)
    if event.description:
        item.add("description", event.description)
    if event.meeting_url:
        item.add("url", event.meeting_url)
        item.add("location", event.meeting_url)
    status = (
        "CANCELLED"
        if cancel or event.status == "cancelled"
        else _STATUS.get(event.status or "scheduled", "CONFIRMED")
    )
    item.add("status", status)
    if organizer:
        who = vCalAddress(f"mailto:{organizer}")
        item["organizer"] = who
    for email in event.attendees or []:
        attendee = vCalAddress(f"mailto:{email}")
        attendee.params["ROLE"] = vText("REQ-PARTICIPANT")
        attendee.params["RSVP"] = vText("TRUE")
        item.add("attendee", attendee, encode=False)
    return item


def invitation(
    event: CalendarEvent, *, organizer: str, stamp: datetime, cancel: bool = False
) -> bytes:
    """The ``.ics`` sent with an invitation, an update (same UID, higher SEQUENCE) or a
    cancellation (METHOD:CANCEL)."""
    cal = Calendar()
    cal.add("prodid", PRODID)
    cal.add("version", "2.0")
    cal.add("calscale", "GREGORIAN")
    cal.add("method", "CANCEL" if cancel else "REQUEST")
    cal.add_component(_vevent(event, organizer=organizer, stamp=stamp, cancel=cancel))
    return bytes(cal.to_ical())


def feed(events: Iterable[CalendarEvent], *, name: str, stamp: datetime) -> bytes:
    """A member's subscription feed (Apple Calendar, Outlook…)."""
    cal = Calendar()
    cal.add("prodid", PRODID)
    cal.add("version", "2.0")
    cal.add("calscale", "GREGORIAN")
    cal.add("method", "PUBLISH")
    cal.add("x-wr-calname", name)
    for event in events:
        cal.add_component(_vevent(event, organizer=None, stamp=stamp, cancel=False))
    return bytes(cal.to_ical())

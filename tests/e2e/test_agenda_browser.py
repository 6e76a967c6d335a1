"""The agenda in a real browser, in pt-BR and English, at 1440 and 390 px: sign up, open a
lead, schedule a meeting from the lead page's meetings panel, then find it in the panel, on
the lead's timeline and in the /agenda week view. No JavaScript error, nothing wider than
the screen, no English on the Portuguese pages. Screenshots under the e2e artifacts."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from playwright.async_api import expect

from tests.e2e.conftest import screenshot
from tests.english import english_in, english_messages, texts_of
from tests.factories import browser_signup, live_lead, live_login

WORDS = {
    "pt-BR": {
        "schedule": "Agendar reunião",
        "meetings": "Reuniões",
        "scheduled": "Reunião agendada",
        "agenda": "Agenda",
        "week": "Semana",
    },
    "en": {
        "schedule": "Schedule a meeting",
        "meetings": "Meetings",
        "scheduled": "Meeting scheduled",
        "agenda": "Calendar",
        "week": "Week",
    },
}
OVERFLOW = (
    "[...document.querySelectorAll('body *')].filter(e => e.getBoundingClientRect().right"
    " > document.documentElement.clientWidth + 1).slice(0, 8).map(e => e.tagName + '.'"
    " + e.className + ' ' + Math.round(e.getBoundingClientRect().right))"
)


async def _fits(page: Any, where: str) -> None:
    wide = await page.evaluate(
        "document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert wide <= 1, (where, wide, await page.evaluate(OVERFLOW))


def _no_english(html: str, where: str, messages: set[str], *data: str) -> None:
    texts = []
    for text in texts_of(html):
        for value in data:
            text = text.replace(value, " ")
        text = " ".join(text.split())
        if text:
            texts.append(text)
    assert english_in(texts, messages) == [], where


@pytest.mark.parametrize(
    ("lang", "width"), [("pt-BR", 1440), ("pt-BR", 390), ("en", 1440), ("en", 390)]
)
async def test_schedule_a_meeting_from_a_lead(
    page: Any, live_server: str, lang: str, width: int
) -> None:
    words = WORDS[lang]
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    account = await browser_signup(page)
    headers = await live_login(live_server, account["email"])
    lead = await live_lead(live_server, headers, full_name="Carla Dias", company="Loja Web")
    await page.context.add_cookies([{"name": "lovedcrm_lang", "value": lang, "url": live_server}])
    await page.set_viewport_size({"width": width, "height": 900})

    # The lead page: its meetings panel (loaded by htmx) and the form in it.
    await page.goto(f"/leads/{lead['id']}")
    panel = page.locator("[data-meetings-panel]")
    await expect(panel.locator("h2")).to_have_text(words["meetings"])
    await panel.locator("summary").click()
    form = panel.locator("[data-meeting-form]")
    await expect(form).to_be_visible()
    await _fits(page, "lead page, form open")
    await screenshot(page, f"agenda-lead-form-{lang}-{width}")
    title = f"Demo {uuid.uuid4().hex[:6]}"
    await form.locator("#m-title").fill(title)
    await form.locator("#m-start").fill("15:00")
    await form.locator("#m-end").fill("15:45")
    await form.locator("#m-attendees").fill("carla@example.com")
    await form.locator("button[type=submit]").click()

    # Back on the lead: the flash, the meeting in the panel and on the timeline.
    await page.wait_for_url(f"**/leads/{lead['id']}")
    await expect(page.locator("body")).to_contain_text(f"{words['scheduled']}: {title}")
    meeting = panel.locator("[data-meeting]")
    await expect(meeting).to_have_count(1)
    await expect(meeting.locator(".meeting-title")).to_have_text(title)
    await expect(meeting.locator(".meeting-time")).to_have_text("15:00–15:45")
    timeline = page.locator(".tl-item.tl-meeting")
    await expect(timeline.first).to_contain_text(title)
    await expect(timeline.first).to_contain_text(words["scheduled"])
    await _fits(page, "lead page")
    await screenshot(page, f"agenda-lead-{lang}-{width}")
    # The lead page's other panels belong to other features: here the agenda's parts only.
    lead_html = await panel.inner_html() + await timeline.first.inner_html()

    # The agenda: the week view (the default), today's column has the meeting.
    await page.goto("/")
    await expect(page.locator("nav.sidebar a[href='/agenda']")).to_have_count(1)
    await page.goto("/agenda")
    await expect(page.locator("h1")).to_contain_text(words["agenda"])
    week = page.locator("[data-agenda-view='week']")
    await expect(week).to_be_visible()
    await expect(page.locator(".segmented a[aria-current='page']")).to_have_text(words["week"])
    await expect(week.locator(".agenda-day")).to_have_count(7)
    item = week.locator(".agenda-day.today [data-meeting]")
    await expect(item).to_have_count(1)
    await expect(item.locator(".meeting-title")).to_have_text(title)
    await expect(item.locator("a[href='/leads/" + lead["id"] + "']")).to_have_count(1)
    await _fits(page, "agenda week")
    await screenshot(page, f"agenda-week-{lang}-{width}")
    agenda_html = await page.content()

    await page.goto("/agenda?view=list")
    await expect(page.locator("[data-agenda-view='list'] [data-meeting]")).to_have_count(1)
    await _fits(page, "agenda list")
    await screenshot(page, f"agenda-list-{lang}-{width}")
    list_html = await page.content()

    if lang == "pt-BR":
        messages = english_messages()
        data = (title, account["org"], "carla@example.com", "Google Calendar", "Jitsi Meet")
        _no_english(lead_html, "lead page: meetings panel, timeline", messages, *data)
        _no_english(agenda_html, "agenda week", messages, *data)
        _no_english(list_html, "agenda list", messages, *data)
    assert errors == []

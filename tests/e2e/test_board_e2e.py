"""The web app in a real browser: sign-up, the board (drag, reload, live in a second browser),
leads, search, import, both languages, and screenshots at desktop and phone widths."""

from __future__ import annotations

from typing import Any

from playwright.async_api import expect

from tests.e2e.conftest import DESKTOP, PHONE, screenshot
from tests.factories import PASSWORD, browser_signup, live_lead, live_login


async def test_sign_up_shows_the_five_default_stages(page: Any) -> None:
    await browser_signup(page)
    await page.goto("/pipeline")
    names = await page.locator(
        ".column .column-head h2, .column .column-head [id^=col-]"
    ).all_inner_texts()
    joined = " ".join(names)
    for stage in ("Lead", "Contato", "Proposta", "Negociação", "Fechado"):
        assert stage in joined
    assert await page.locator(".column[data-column]").count() == 5


async def test_create_a_lead_in_the_form(page: Any) -> None:
    await browser_signup(page)
    await page.goto("/leads/new")
    await page.fill("[name=full_name]", "Rafael Nogueira")
    await page.fill("[name=company]", "Nogueira Móveis")
    await page.fill("[name=phone]", "(11) 98765-4321")
    await page.click("main form button[type=submit]")
    await expect(page.locator("main")).to_contain_text("Rafael Nogueira")
    await expect(page.locator("main")).to_contain_text("Nogueira Móveis")


async def _drag(page: Any, card: Any, target_list: Any) -> None:
    """A pointer drag with intermediate moves, as SortableJS expects from a person."""
    box = await card.bounding_box()
    dest = await target_list.bounding_box()
    assert box and dest
    await page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    await page.mouse.down()
    steps = 12
    for i in range(1, steps + 1):
        await page.mouse.move(
            box["x"] + (dest["x"] + dest["width"] / 2 - box["x"]) * i / steps,
            box["y"] + (dest["y"] + 40 - box["y"]) * i / steps,
        )
        await page.wait_for_timeout(30)
    await page.mouse.up()


async def test_drag_a_card_persists_and_a_second_browser_sees_it_live(
    browser: Any, live_server: str
) -> None:
    first = await browser.new_context(viewport=DESKTOP, base_url=live_server, locale="pt-BR")
    second = await browser.new_context(viewport=DESKTOP, base_url=live_server, locale="pt-BR")
    try:
        a = await first.new_page()
        account = await browser_signup(a)
        headers = await live_login(live_server, account["email"])
        lead = await live_lead(live_server, headers, full_name="Carla Prado", company="Prado Doces")
        b = await second.new_page()
        await b.goto("/login")
        await b.fill("#email", account["email"])
        await b.fill("#password", PASSWORD)
        await b.click("form button[type=submit]")
        await b.wait_for_url("**/")
        await a.goto("/pipeline")
        await b.goto("/pipeline")
        columns = a.locator(".column-cards")
        target_stage = await columns.nth(1).get_attribute("data-stage-id")
        card = a.locator(f"#card-{lead['id']}")
        await expect(card).to_be_visible()
        await _drag(a, card, columns.nth(1))
        await expect(
            a.locator(f".column-cards[data-stage-id='{target_stage}'] #card-{lead['id']}")
        ).to_be_visible()
        # The second browser sees the move without reloading.
        await expect(
            b.locator(f".column-cards[data-stage-id='{target_stage}'] #card-{lead['id']}")
        ).to_be_visible(timeout=5000)
        await a.reload()
        await expect(
            a.locator(f".column-cards[data-stage-id='{target_stage}'] #card-{lead['id']}")
        ).to_be_visible()
        await screenshot(a, "board-desktop")
        await a.set_viewport_size(PHONE)
        await screenshot(a, "board-phone")
    finally:
        await first.close()
        await second.close()


async def test_search_with_and_without_accents(page: Any, live_server: str) -> None:
    account = await browser_signup(page)
    headers = await live_login(live_server, account["email"])
    await live_lead(live_server, headers, full_name="João Açúcar", company="Doces União")
    await live_lead(live_server, headers, full_name="Maria Silva", company="Outra")
    for query in ("joao", "João", "acucar"):
        await page.goto(f"/leads?q={query}")
        await expect(page.locator("main")).to_contain_text("João Açúcar")
        await expect(page.locator("main")).not_to_contain_text("Maria Silva")


async def test_lead_page_and_list_screenshots(page: Any, live_server: str) -> None:
    account = await browser_signup(page)
    headers = await live_login(live_server, account["email"])
    lead = await live_lead(
        live_server,
        headers,
        full_name="Helena Duarte",
        company="Duarte Arquitetura",
        phone="(21) 99876-5432",
        estimated_value="18500.00",
    )
    await page.goto(f"/leads/{lead['id']}")
    await expect(page.locator("main")).to_contain_text("Helena Duarte")
    await screenshot(page, "lead-desktop")
    await page.goto("/leads")
    await expect(page.locator("main")).to_contain_text("Helena Duarte")
    await screenshot(page, "list-desktop")
    await page.set_viewport_size(PHONE)
    await page.goto(f"/leads/{lead['id']}")
    await screenshot(page, "lead-phone")
    await page.goto("/leads")
    await screenshot(page, "list-phone")


async def test_import_a_csv_with_bad_rows(page: Any, tmp_path: Any) -> None:
    await browser_signup(page)
    csv = tmp_path / "leads.csv"
    csv.write_text(
        "nome;email;telefone;empresa\n"
        "Ana Lima;ana@example.com;(11) 91234-5678;Lima ME\n"
        "Bruno Reis;not-an-email;(11) 92345-6789;Reis SA\n"
        ";sem-nome@example.com;;Sem Nome\n"
        "Carlos Dias;carlos@example.com;(11) 93456-7890;Dias Ltda\n",
        encoding="utf-8",
    )
    await page.goto("/leads/import")
    await page.set_input_files("input[type=file]", str(csv))
    await page.click("main form button[type=submit]")
    await expect(page.locator("main")).to_contain_text("Ana Lima")  # the preview
    await page.click("main form button[type=submit]")
    await expect(page.locator("main")).to_contain_text("2", timeout=20000)
    await expect(page.locator("a[href$='errors.csv']")).to_be_visible(timeout=20000)


async def test_the_same_page_in_portuguese_and_english(browser: Any, live_server: str) -> None:
    context = await browser.new_context(viewport=DESKTOP, base_url=live_server, locale="pt-BR")
    try:
        page = await context.new_page()
        await browser_signup(page)
        await page.goto("/pipeline")
        await expect(page.locator("nav.sidebar")).to_contain_text("Funil")
        await expect(page.locator("nav.sidebar")).to_contain_text("Configurações")
    finally:
        await context.close()
    context = await browser.new_context(
        viewport=DESKTOP,
        base_url=live_server,
        locale="en-US",
        extra_http_headers={"Accept-Language": "en"},
    )
    try:
        page = await context.new_page()
        await browser_signup(page)
        # A new organization is pt-BR by default; the user's language choice wins.
        await page.goto("/pipeline")
        if "Pipeline" not in await page.locator("nav.sidebar").inner_text():
            await context.add_cookies(
                [{"name": "lovedcrm_lang", "value": "en", "url": live_server}]
            )
            await page.goto("/pipeline")
        await expect(page.locator("nav.sidebar")).to_contain_text("Pipeline")
        await expect(page.locator("nav.sidebar")).to_contain_text("Settings")
    finally:
        await context.close()


async def test_five_columns_fit_beside_the_sidebar_at_1440(browser: Any, live_server: str) -> None:
    context = await browser.new_context(
        viewport={"width": 1440, "height": 900}, base_url=live_server, locale="pt-BR"
    )
    try:
        page = await context.new_page()
        await browser_signup(page)
        await page.goto("/pipeline")
        columns = page.locator(".column[data-column]")
        await expect(columns).to_have_count(5)
        for index in range(5):
            box = await columns.nth(index).bounding_box()
            assert box is not None and box["x"] + box["width"] <= 1440, (index, box)
    finally:
        await context.close()


async def test_the_phone_bottom_bar_gives_every_item_an_equal_share(
    browser: Any, live_server: str
) -> None:
    context = await browser.new_context(viewport=PHONE, base_url=live_server, locale="pt-BR")
    try:
        page = await context.new_page()
        await browser_signup(page)
        await page.goto("/pipeline")
        items = page.locator(".sidebar .nav li:visible")
        count = await items.count()
        assert count >= 4
        widths = [
            (await items.nth(i).bounding_box() or {"width": 0})["width"] for i in range(count)
        ]
        assert max(widths) - min(widths) <= 2, widths  # no squeezed item, no empty gap
        assert sum(widths) <= PHONE["width"]
    finally:
        await context.close()

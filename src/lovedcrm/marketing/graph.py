"""The Meta Graph API for Lead Ads (shared/reference/providers.md §7): one lead by its
``leadgen_id``, a form's leads (paged, for the backfill), the Page's forms and a campaign's
daily insights (every page followed). Every call goes through ``core.outbound.client`` (the SSRF
guard); the base URL is the integration's (tests point it at a loopback fake).

Each answer's usage headers (``X-App-Usage``, ``X-Business-Use-Case-Usage``,
``X-Ad-Account-Usage``: the share of each quota used, and the minutes until a throttled caller
regains access) are kept on the client; ``pace`` turns them into the wait before the next call."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx

from lovedcrm.config import Settings
from lovedcrm.core import outbound

DEFAULT_BASE_URL = "https://graph.facebook.com/v21.0"
LEAD_FIELDS = "created_time,field_data,ad_id,adset_id,campaign_id,campaign_name,form_id,is_organic"
TIMEOUT_SECONDS = 15.0
# A list read follows at most this many pages (forms of a Page, days x campaigns of insights).
MAX_PAGES = 50
USAGE_HEADERS = ("x-app-usage", "x-business-use-case-usage", "x-ad-account-usage")
_USAGE_KEYS = ("call_count", "total_cputime", "total_time", "acc_id_util_pct")


def _usage_blocks(data: Any) -> Iterator[Mapping[str, Any]]:
    if not isinstance(data, dict):
        return
    if any(k in data for k in (*_USAGE_KEYS, "estimated_time_to_regain_access")):
        yield data  # X-App-Usage, X-Ad-Account-Usage: one object
        return
    for blocks in data.values():  # X-Business-Use-Case-Usage: {business id: [objects]}
        if isinstance(blocks, list):
            yield from (b for b in blocks if isinstance(b, dict))


def usage_of(headers: Mapping[str, str]) -> tuple[float, int]:
    """The highest share (percent) of any quota an answer reports, and the minutes until a
    throttled caller regains access (0: not throttled)."""
    top, regain = 0.0, 0
    for name in USAGE_HEADERS:
        raw = headers.get(name)
        if not raw:
            continue
        try:
            data = json.loads(raw)
        except ValueError:
            continue
        for block in _usage_blocks(data):
            for key in _USAGE_KEYS:
                value = block.get(key)
                if isinstance(value, int | float) and not isinstance(value, bool):
                    top = max(top, float(value))
            wait = block.get("estimated_time_to_regain_access")
            if isinstance(wait, int | float) and not isinstance(wait, bool):
                regain = max(regain, int(wait))
    return min(top, 100.0), max(regain, 0)


class GraphError(Exception):
    """A Graph API call failed; ``transient`` when a retry may succeed (5xx, rate limit,
    network), permanent otherwise (bad token, unknown lead)."""

    def __init__(self, message: str, *, transient: bool) -> None:
        super().__init__(message)
        self.transient = transient


@dataclass
class AdLead:
    provider_lead_id: str
    form_id: str | None
    campaign_id: str | None
    campaign_name: str | None
    adset_id: str | None
    ad_id: str | None
    fields: dict[str, str]
    is_test: bool = False


def lead_of(data: dict[str, Any]) -> AdLead:
    fields: dict[str, str] = {}
    for item in data.get("field_data") or []:
        if isinstance(item, dict) and item.get("name"):
            values = item.get("values") or []
            fields[str(item["name"])[:100]] = ", ".join(str(v) for v in values)[:1000]
    return AdLead(
        provider_lead_id=str(data.get("id") or ""),
        form_id=_str(data.get("form_id")),
        campaign_id=_str(data.get("campaign_id")),
        campaign_name=_str(data.get("campaign_name")),
        adset_id=_str(data.get("adset_id")),
        ad_id=_str(data.get("ad_id")),
        fields=fields,
    )


def _str(value: Any) -> str | None:
    return None if value in (None, "") else str(value)[:255]


class GraphClient:
    def __init__(self, settings: Settings, base_url: str | None, access_token: str) -> None:
        self.base = (base_url or DEFAULT_BASE_URL).rstrip("/")
        self.token = access_token
        self.rules = outbound.policy(settings)
        self.usage = 0.0  # the highest quota share any answer reported, percent
        self.regain_minutes = 0

    def pace(self, base: timedelta) -> timedelta:
        """The wait before the next call of a long read (the backfill): ``base``, longer as
        the quota fills, and at least until a throttled caller regains access."""
        if self.regain_minutes:
            return max(base, timedelta(minutes=self.regain_minutes))
        if self.usage >= 90:
            return max(base, timedelta(minutes=5))
        if self.usage >= 75:
            return max(base, timedelta(minutes=1))
        return base

    async def _get(self, path: str, params: dict[str, str]) -> dict[str, Any]:
        url = path if path.startswith("http") else f"{self.base}/{path.lstrip('/')}"
        try:
            outbound.check_url(self.rules, url)
        except outbound.UrlProblem as exc:
            raise GraphError(f"refused address: {exc.message}", transient=False) from exc
        try:
            async with outbound.client(self.rules, timeout=TIMEOUT_SECONDS) as http:
                response = await http.get(url, params={**params, "access_token": self.token})
        except outbound.OutboundRefused as exc:
            raise GraphError(str(exc), transient=False) from exc
        except httpx.HTTPError as exc:
            raise GraphError(f"network error: {exc.__class__.__name__}", transient=True) from exc
        usage, regain = usage_of(response.headers)
        self.usage, self.regain_minutes = max(self.usage, usage), max(self.regain_minutes, regain)
        try:
            body = response.json()
        except ValueError:
            body = {}
        if response.status_code >= 400 or (isinstance(body, dict) and "error" in body):
            error = body.get("error") if isinstance(body, dict) else None
            message = (error or {}).get("message") if isinstance(error, dict) else None
            code = (error or {}).get("code") if isinstance(error, dict) else None
            transient = (
                response.status_code >= 500
                or response.status_code == 429
                or code
                in (
                    4,
                    17,
                    32,
                    613,
                )
            )
            raise GraphError(
                f"Graph API HTTP {response.status_code}: {message or 'error'}"[:500],
                transient=transient,
            )
        if not isinstance(body, dict):
            raise GraphError("Graph API answered something that is not an object", transient=True)
        return body

    async def lead(self, leadgen_id: str) -> AdLead:
        data = await self._get(leadgen_id, {"fields": LEAD_FIELDS})
        found = lead_of(data)
        found.provider_lead_id = found.provider_lead_id or leadgen_id
        return found

    async def form_leads(
        self, form_id: str, *, since: int, after: str | None, limit: int = 100
    ) -> tuple[list[AdLead], str | None]:
        """One page of a form's leads created since ``since`` (epoch seconds); the next
        cursor or None."""
        params = {
            "fields": LEAD_FIELDS,
            "limit": str(limit),
            "filtering": f'[{{"field":"time_created","operator":"GREATER_THAN","value":{since}}}]',
        }
        if after:
            params["after"] = after
        data = await self._get(f"{form_id}/leads", params)
        leads = [lead_of(item) for item in data.get("data") or [] if isinstance(item, dict)]
        paging = data.get("paging") or {}
        cursor = (paging.get("cursors") or {}).get("after") if paging.get("next") else None
        return [lead for lead in leads if lead.provider_lead_id], cursor

    async def _every(self, path: str, params: dict[str, str]) -> list[dict[str, Any]]:
        """Every item of a paged list (``paging.cursors.after`` while ``paging.next``)."""
        items: list[dict[str, Any]] = []
        after: str | None = None
        for _ in range(MAX_PAGES):
            data = await self._get(path, {**params, **({"after": after} if after else {})})
            items.extend(item for item in data.get("data") or [] if isinstance(item, dict))
            paging = data.get("paging") or {}
            after = (paging.get("cursors") or {}).get("after") if paging.get("next") else None
            if not after:
                break
        return items

    async def page_forms(self, page_id: str) -> list[str]:
        items = await self._every(f"{page_id}/leadgen_forms", {"fields": "id,name"})
        return [str(item["id"]) for item in items if item.get("id")]

    async def campaign_insights(
        self, account_id: str, since: str, until: str
    ) -> list[dict[str, Any]]:
        return await self._every(
            f"{account_id}/insights",
            {
                "level": "campaign",
                "fields": "campaign_id,campaign_name,spend,account_currency,date_start",
                "time_increment": "1",
                "time_range": f'{{"since":"{since}","until":"{until}"}}',
            },
        )

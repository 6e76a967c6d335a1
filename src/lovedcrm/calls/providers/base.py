"""The voice provider interface: what every adapter (Twilio, Telnyx, sandbox) offers, and the
provider-neutral shapes its callbacks are parsed into.

Adapters are plain objects built from one decrypted configuration and an ``httpx.AsyncClient``
(through ``core.outbound``); they know the wire format and nothing about the database.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal, Protocol, runtime_checkable

ProviderKind = Literal["twilio", "telnyx", "sandbox"]
# The product's call states.
CallStatus = Literal[
    "queued", "ringing", "in_progress", "completed", "no_answer", "busy", "failed", "canceled"
]
TERMINAL: frozenset[str] = frozenset({"completed", "no_answer", "busy", "failed", "canceled"})
MISSED: frozenset[str] = frozenset({"no_answer", "busy", "canceled"})
_RANK = {"queued": 0, "ringing": 1, "in_progress": 2}


def rank(status: str | None) -> int:
    """How far a call has got: a state only ever moves to a higher rank (terminal ones: 3)."""
    if status in TERMINAL:
        return 3
    return _RANK.get(status or "queued", 0)


class ProviderError(Exception):
    """A provider refused or failed a request. ``transient``: retrying later may succeed."""

    def __init__(
        self,
        code: str,
        message: str,
        *,
        transient: bool = False,
        http_status: int | None = None,
        details: str | None = None,
    ) -> None:
        super().__init__(f"[{code}] {message}")
        self.code = code
        self.message = message
        self.transient = transient
        self.http_status = http_status
        self.details = details


@dataclass(frozen=True)
class ProviderCall:
    id: str
    status: str


@dataclass(frozen=True)
class CallUpdate:
    """One thing a callback says about one call.

    ``event_key`` makes the callback idempotent (Twilio's CallSid + SequenceNumber, Telnyx's
    event id); ``call_ref`` is our call id when the provider carries it back (our callback
    URL's query, Telnyx's ``client_state``)."""

    event_key: str
    provider_call_id: str | None
    status: str | None = None
    call_ref: str | None = None
    sequence: int | None = None
    occurred_at: datetime | None = None
    duration_seconds: int | None = None
    price: Decimal | None = None
    price_unit: str | None = None
    recording_url: str | None = None
    recording_id: str | None = None
    recording_duration_seconds: int | None = None
    reason: str | None = None
    # inbound: a new call the business number received
    direction: str | None = None
    from_number: str | None = None
    to_number: str | None = None
    # Telnyx: the event that asks us to act (``answered`` of the agent leg, ``incoming``)
    action: str | None = None
    leg: str | None = None
    raw: dict[str, Any] = field(default_factory=dict)

    def data(self) -> dict[str, Any]:
        """JSON-safe, for ``call_events.data``."""
        out: dict[str, Any] = {}
        for name in (
            "status",
            "call_ref",
            "sequence",
            "duration_seconds",
            "price_unit",
            "recording_url",
            "recording_id",
            "recording_duration_seconds",
            "reason",
            "direction",
            "from_number",
            "to_number",
            "action",
            "leg",
        ):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        if self.price is not None:
            out["price"] = str(self.price)
        if self.occurred_at is not None:
            out["occurred_at"] = self.occurred_at.isoformat()
        return out

    @classmethod
    def from_data(
        cls, event_key: str, provider_call_id: str | None, data: Mapping[str, Any]
    ) -> CallUpdate:
        price = data.get("price")
        occurred = data.get("occurred_at")
        return cls(
            event_key=event_key,
            provider_call_id=provider_call_id,
            status=data.get("status"),
            call_ref=data.get("call_ref"),
            sequence=data.get("sequence"),
            occurred_at=datetime.fromisoformat(occurred) if occurred else None,
            duration_seconds=data.get("duration_seconds"),
            price=Decimal(price) if price is not None else None,
            price_unit=data.get("price_unit"),
            recording_url=data.get("recording_url"),
            recording_id=data.get("recording_id"),
            recording_duration_seconds=data.get("recording_duration_seconds"),
            reason=data.get("reason"),
            direction=data.get("direction"),
            from_number=data.get("from_number"),
            to_number=data.get("to_number"),
            action=data.get("action"),
            leg=data.get("leg"),
        )


@dataclass(frozen=True)
class ConnectionCheck:
    ok: bool
    detail: str


@runtime_checkable
class VoiceProvider(Protocol):
    kind: ProviderKind

    async def dial(
        self,
        *,
        from_business: str,
        agent_phone: str,
        lead_phone: str,
        callback_url: str,
        call_ref: str,
        record: bool = True,
    ) -> ProviderCall:
        """Call the agent's phone first; once answered, bridge to the lead. ``callback_url``
        receives the call's events; ``call_ref`` (our call id) comes back with them."""
        ...

    async def hangup(self, provider_call_id: str) -> None: ...

    async def check_connection(self) -> ConnectionCheck: ...

    def verify_callback(self, url: str, headers: Mapping[str, str], body: bytes) -> bool:
        """Constant-time check of the provider's signature. ``url`` is the public URL the
        provider posted to (configured base URL + path + query); header keys lower-case."""
        ...

    def parse_callback(self, url: str, body: bytes) -> list[CallUpdate]: ...

    async def fetch_recording(self, url: str, *, max_bytes: int) -> bytes: ...

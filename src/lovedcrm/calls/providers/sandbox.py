"""The offline voice provider for the demo and tests: nothing leaves the machine. A dial
answers at once; the calls service then plays the call out on a timer (ringing, answered,
completed, a short generated recording) through the same path real callbacks take."""

from __future__ import annotations

import io
import math
import random
import uuid
import wave
from collections.abc import Mapping

from lovedcrm.calls.providers.base import CallUpdate, ConnectionCheck, ProviderCall, ProviderKind

# Seconds after the dial at which each state arrives (short: the browser test waits for them).
RINGING_AFTER = 1.0
ANSWERED_AFTER = 2.5
COMPLETED_AFTER = 5.0


def duration_for(call_ref: str) -> int:
    """The sandbox call's talk time: random, but the same for the same call."""
    return random.Random(call_ref).randint(20, 185)  # noqa: S311 - a simulation, not a secret


def tone_wav(seconds: float = 2.0, frequency: float = 440.0, rate: int = 8000) -> bytes:
    """A short sine tone as 8 kHz 16-bit mono WAV (the sandbox's 'recording')."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        frames = bytearray()
        for n in range(int(seconds * rate)):
            value = int(8000 * math.sin(2 * math.pi * frequency * n / rate))
            frames += value.to_bytes(2, "little", signed=True)
        out.writeframes(bytes(frames))
    return buffer.getvalue()


class SandboxProvider:
    kind: ProviderKind = "sandbox"

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
        return ProviderCall(id=f"SB{uuid.uuid4().hex}", status="queued")

    async def hangup(self, provider_call_id: str) -> None:
        return None

    async def check_connection(self) -> ConnectionCheck:
        return ConnectionCheck(True, "The sandbox works offline: calls are simulated.")

    def verify_callback(self, url: str, headers: Mapping[str, str], body: bytes) -> bool:
        return False  # the sandbox sends no callbacks over HTTP

    def parse_callback(self, url: str, body: bytes) -> list[CallUpdate]:
        return []

    async def fetch_recording(self, url: str, *, max_bytes: int) -> bytes:
        return tone_wav()

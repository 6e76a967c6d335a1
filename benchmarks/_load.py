"""Open-loop HTTP load at a fixed rate, for the benchmarks that need one (``wrk`` sends as
fast as the server answers; a target such as "500 webhooks per second for 60 seconds" needs
the requests sent on a schedule whatever the answers).

Request ``i`` is due at ``start + i / rate``. Whichever of the keep-alive connections is free
takes the next due request, so a slow answer delays nothing else while connections remain.
Latency counts from when a request was *due*, not when it could be sent: a server that falls
behind shows it (no coordinated omission).

Run as a script, it reads a file of prepared requests (one per line: header value, a tab,
the body), POSTs them in order to one URL with that value in one header, and prints one JSON
object: counts, the achieved rate, latency percentiles from due time and from sending, and
the line numbers that were answered 2xx (so a caller can check exactly which messages were
acknowledged).

Usage: python benchmarks/_load.py URL FILE --rate 500 --seconds 60 [--connections 32]
       [--header X-Hub-Signature-256] [--content-type application/json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit


@dataclass
class Outcome:
    sent: int = 0
    answered: int = 0
    errors: int = 0
    non_2xx: int = 0
    from_due_ms: list[float] = field(default_factory=list)
    from_send_ms: list[float] = field(default_factory=list)
    acked: list[int] = field(default_factory=list)
    first_due: float = 0.0
    last_done: float = 0.0


def prepare(url: str, header: str, content_type: str, lines: list[str]) -> list[bytes]:
    """Each line ``value<TAB>body`` as the bytes of one HTTP/1.1 request."""
    parts = urlsplit(url)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    out = []
    for line in lines:
        value, body = line.split("\t", 1)
        raw = body.encode()
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
            f"Content-Type: {content_type}\r\n{header}: {value}\r\n"
            f"Content-Length: {len(raw)}\r\n\r\n"
        )
        out.append(head.encode() + raw)
    return out


async def _read_answer(reader: asyncio.StreamReader) -> int:
    """Read one HTTP/1.1 answer (headers and a Content-Length or chunked body); its status."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:])}
    if "content-length" in headers:
        await reader.readexactly(int(headers["content-length"]))
    elif headers.get("transfer-encoding", "").lower() == "chunked":
        while True:
            size = int((await reader.readuntil(b"\r\n")).strip().split(b";")[0], 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    return status


async def run(
    url: str, requests: list[bytes], rate: float, seconds: float, connections: int
) -> Outcome:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    total = min(len(requests), int(rate * seconds))
    queue: asyncio.Queue[tuple[int, float] | None] = asyncio.Queue()
    outcome = Outcome()
    loop = asyncio.get_running_loop()
    start = loop.time() + 0.2
    outcome.first_due = start

    async def produce() -> None:
        i = 0
        while i < total:
            now = loop.time()
            while i < total and start + i / rate <= now:
                queue.put_nowait((i, start + i / rate))
                i += 1
            if i < total:
                await asyncio.sleep(max(0.0, start + i / rate - loop.time()))
        for _ in range(connections):
            queue.put_nowait(None)

    async def connection() -> None:
        reader: asyncio.StreamReader | None = None
        writer: asyncio.StreamWriter | None = None
        while True:
            item = await queue.get()
            if item is None:
                break
            i, due = item
            try:
                if writer is None or reader is None:
                    reader, writer = await asyncio.open_connection(host, port)
                sent = loop.time()
                writer.write(requests[i])
                outcome.sent += 1
                status = await asyncio.wait_for(_read_answer(reader), timeout=30)
            except (OSError, asyncio.IncompleteReadError, TimeoutError, ValueError):
                outcome.errors += 1
                if writer is not None:
                    writer.close()
                reader = writer = None
                continue
            done = loop.time()
            outcome.answered += 1
            outcome.last_done = max(outcome.last_done, done)
            outcome.from_due_ms.append((done - due) * 1000)
            outcome.from_send_ms.append((done - sent) * 1000)
            if 200 <= status < 300:
                outcome.acked.append(i)
            else:
                outcome.non_2xx += 1
        if writer is not None:
            writer.close()

    await asyncio.gather(produce(), *(connection() for _ in range(connections)))
    return outcome


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2) if ordered else 0.0


def summary(outcome: Outcome, rate: float, seconds: float) -> dict[str, Any]:
    span = max(outcome.last_done - outcome.first_due, 1e-9)
    return {
        "target_rate_per_s": rate,
        "target_seconds": seconds,
        "sent": outcome.sent,
        "answered": outcome.answered,
        "acknowledged_2xx": len(outcome.acked),
        "non_2xx": outcome.non_2xx,
        "errors": outcome.errors,
        "duration_s": round(span, 2),
        "rate_per_s": round(outcome.answered / span, 1),
        "latency_from_due_ms": {
            "p50": pct(outcome.from_due_ms, 0.5),
            "p95": pct(outcome.from_due_ms, 0.95),
            "p99": pct(outcome.from_due_ms, 0.99),
            "max": round(max(outcome.from_due_ms), 2) if outcome.from_due_ms else 0.0,
        },
        "latency_from_send_ms": {
            "p50": pct(outcome.from_send_ms, 0.5),
            "p95": pct(outcome.from_send_ms, 0.95),
            "p99": pct(outcome.from_send_ms, 0.99),
        },
        "acked_lines": sorted(outcome.acked),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("url")
    ap.add_argument("file")
    ap.add_argument("--rate", type=float, required=True)
    ap.add_argument("--seconds", type=float, required=True)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--header", default="X-Hub-Signature-256")
    ap.add_argument("--content-type", default="application/json")
    args = ap.parse_args()
    with open(args.file, encoding="utf-8") as f:
        lines = [line.rstrip("\n") for line in f if line.strip()]
    requests = prepare(args.url, args.header, args.content_type, lines)
    began = time.monotonic()
    outcome = asyncio.run(run(args.url, requests, args.rate, args.seconds, args.connections))
    result = summary(outcome, args.rate, args.seconds)
    result["wall_s"] = round(time.monotonic() - began, 2)
    print(json.dumps(result))


if __name__ == "__main__":
    main()

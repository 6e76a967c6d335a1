"""Fake provider servers that speak the real wire formats over real HTTP on loopback, and the
small threaded server they share."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit


@dataclass
class RecordedRequest:
    method: str
    path: str
    query: dict[str, list[str]]
    # Lower-case keys.
    headers: dict[str, str]
    body: bytes
    json: Any


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    # Leave out Content-Length (the body then ends when the connection closes), like a server
    # streaming a file of unannounced size.
    omit_length: bool = False

    @classmethod
    def json(cls, data: Any, status: int = 200) -> Reply:
        return cls(status=status, body=json.dumps(data).encode())


class FakeServer:
    """A ThreadingHTTPServer on 127.0.0.1:<free port>; subclasses answer in ``handle``.

    Knobs shared by every fake: ``down`` (answer 503 to everything), ``hold`` (an event each
    request waits for before it is answered: a server that hangs, for timeouts) and ``delay``
    (seconds to wait before answering)."""

    def __init__(self) -> None:
        self.requests: list[RecordedRequest] = []
        self.down = False
        self.delay = 0.0
        self.hold: threading.Event | None = None
        self.lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _dispatch(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                parts = urlsplit(self.path)
                try:
                    parsed = json.loads(body) if body else None
                except ValueError:
                    parsed = None
                request = RecordedRequest(
                    method=self.command,
                    path=parts.path,
                    query=parse_qs(parts.query),
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=body,
                    json=parsed,
                )
                with fake.lock:
                    fake.requests.append(request)
                hold = fake.hold
                if hold is not None:
                    hold.wait(timeout=120)  # a safety net: the test releases it
                if fake.delay:
                    time.sleep(fake.delay)
                if fake.down:
                    reply = Reply(503, b"Service Unavailable", "text/plain")
                else:
                    with fake.lock:
                        reply = fake.handle(request)
                try:
                    self.send_response(reply.status)
                    self.send_header("Content-Type", reply.content_type)
                    if not reply.omit_length:
                        self.send_header("Content-Length", str(len(reply.body)))
                    for key, value in reply.headers.items():
                        self.send_header(key, value)
                    self.end_headers()
                    self.wfile.write(reply.body)
                except OSError:
                    pass  # the client gave up (size limit or timeout test)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _dispatch

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        # A short poll interval keeps shutdown() (once per test) fast.
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self.thread.start()

    def handle(self, request: RecordedRequest) -> Reply:
        raise NotImplementedError

    def requests_to(self, path: str, method: str | None = None) -> list[RecordedRequest]:
        with self.lock:
            return [
                r
                for r in self.requests
                if r.path == path and (method is None or r.method == method)
            ]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

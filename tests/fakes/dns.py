"""A fake system resolver: ``socket.getaddrinfo`` answers chosen names with chosen addresses
(a name that resolves to loopback, say) or holds the calling thread until the test lets it go
(a resolver that hangs). Every other name goes to the real resolver.

Whoever resolves through ``socket.getaddrinfo`` (the outbound guard's own threads, asyncio's
``loop.getaddrinfo``) sees it, so it tests the product's real resolution path."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from typing import Any

import pytest


class FakeDns:
    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.answers: dict[str, list[str]] = {}
        self.held: dict[str, threading.Event] = {}
        self.lock = threading.Lock()
        # Lookups of held names: started (a thread is inside the resolver) and returned.
        self.entered = 0
        self.returned = 0
        self._real: Callable[..., Any] = socket.getaddrinfo
        monkeypatch.setattr(socket, "getaddrinfo", self._getaddrinfo)

    def answer(self, name: str, *addresses: str) -> None:
        self.answers[name] = list(addresses)

    def hold(self, name: str) -> threading.Event:
        """Lookups of ``name`` wait for the returned event, then fail as unknown."""
        event = self.held[name] = threading.Event()
        return event

    def release_all(self) -> None:
        for event in self.held.values():
            event.set()

    def _getaddrinfo(self, host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else str(host)
        event = self.held.get(name)
        if event is not None:
            with self.lock:
                self.entered += 1
            try:
                event.wait(timeout=120)  # a safety net: the test releases it
                raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
            finally:
                with self.lock:
                    self.returned += 1
        if name in self.answers:
            number = int(port) if port else 0
            return [
                (
                    socket.AF_INET6 if ":" in address else socket.AF_INET,
                    socket.SOCK_STREAM,
                    socket.IPPROTO_TCP,
                    "",
                    (address, number, 0, 0) if ":" in address else (address, number),
                )
                for address in self.answers[name]
            ]
        return self._real(host, port, *args, **kwargs)

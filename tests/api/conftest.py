"""The API served over real HTTP: uvicorn on a free loopback port, in a thread of the test
process, on this run's test database (its lifespan opens its own database handle in the
server's event loop). Tools that only speak HTTP (schemathesis' command line, a generated
client) test this server as they would test a deployment."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import uvicorn

from lovedcrm.app import create_app
from lovedcrm.config import Settings


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LiveServer:
    def __init__(self, app: Any) -> None:
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        config = uvicorn.Config(
            app, host="127.0.0.1", port=port, log_level="warning", access_log=False
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def start(self) -> None:
        self.thread.start()
        while not self.server.started:  # set once the socket listens
            if not self.thread.is_alive():
                pytest.fail("the API server did not start (see the log above)")
            self.thread.join(timeout=0.05)
        assert httpx.get(f"{self.url}/readyz", timeout=10).status_code == 200

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=60)


@pytest.fixture(scope="module")
def live_settings(settings: Settings) -> Settings:
    """The suite's settings, with tokens that outlive a long run."""
    return settings.model_copy(update={"access_token_minutes": 240})


@pytest.fixture(scope="module")
def live_api(live_settings: Settings) -> Iterator[str]:
    """The base URL of the API served over HTTP."""
    server = LiveServer(create_app(live_settings))
    server.start()
    try:
        yield server.url
    finally:
        server.stop()

"""LLM providers behind one Protocol (``base.LLMProvider``): ``openai.OpenAICompatibleProvider``
for OpenAI, Azure OpenAI and self-hosted servers speaking Chat Completions, and
``sandbox.SandboxProvider`` (offline, deterministic). ``build_provider`` picks one from an
organization's configuration (``assistant.ai_settings.load_config``)."""

from __future__ import annotations

from collections.abc import Sequence

import httpx

from lovedcrm.assistant.llm.base import LLMConfig, LLMProvider, SpeechToText
from lovedcrm.assistant.llm.openai import OpenAICompatibleProvider, Sleeper
from lovedcrm.assistant.llm.sandbox import SandboxProvider
from lovedcrm.config import Settings
from lovedcrm.core import outbound


def http_client(settings: Settings, config: LLMConfig) -> httpx.AsyncClient:
    """The client every provider call goes through: the outbound guard checks each address
    (a self-hosted server on a private address only when ``LOVEDCRM_OUTBOUND_ALLOW`` lists
    it) and refuses redirects."""
    return outbound.client(outbound.policy(settings), timeout=config.timeout_seconds)


def build_provider(
    config: LLMConfig,
    client: httpx.AsyncClient | None = None,
    *,
    examples: Sequence[tuple[str, str]] = (),
    sleep: Sleeper | None = None,
) -> LLMProvider:
    """The adapter for ``config``: the sandbox (with ``examples`` to retrieve from) unless an
    OpenAI-compatible server is configured, which needs ``client``."""
    if config.provider == "openai_compatible" and config.base_url and config.model:
        if client is None:
            raise ValueError("an OpenAI-compatible provider needs an HTTP client")
        return OpenAICompatibleProvider(
            client=client,
            base_url=config.base_url,
            model=config.model,
            api_key=config.api_key,
            api_version=config.api_version,
            timeout_seconds=config.timeout_seconds,
            max_retries=config.max_retries,
            sleep=sleep,
        )
    return SandboxProvider(examples)


def build_transcriber(config: LLMConfig, client: httpx.AsyncClient | None = None) -> SpeechToText:
    """Speech-to-text for ``config``: the sandbox's demo text unless an OpenAI-compatible
    server is configured (its ``/audio/transcriptions``), which needs ``client``. No retries
    inside: the job that calls it retries later on 429/5xx."""
    if config.provider == "openai_compatible" and config.base_url:
        if client is None:
            raise ValueError("an OpenAI-compatible provider needs an HTTP client")
        return OpenAICompatibleProvider(
            client=client,
            base_url=config.base_url,
            model=config.model or config.transcription_model,
            api_key=config.api_key,
            api_version=config.api_version,
            timeout_seconds=max(config.timeout_seconds, 120.0),
            max_retries=0,
        )
    return SandboxProvider()

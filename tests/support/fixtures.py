"""Pytest fixtures several test files share: the local Bot API stand-in and a TelegramSender pointed at it.

Registered once in tests/conftest.py (``pytest_plugins``); a test file asks for ``api`` or ``telegram`` by name.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from reporting.delivery import TelegramSender
from support.botapi import BotApiStandIn

TELEGRAM_TOKEN = "123456:TEST-token"


@pytest.fixture
async def api(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[BotApiStandIn]:
    """A Bot API stand-in on loopback, with python-telegram-bot set to reach it without warnings or a proxy."""
    monkeypatch.setenv("PTB_TIMEDELTA", "true")  # integer retry_after would warn, and warnings are errors
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    async with BotApiStandIn() as standin:
        yield standin


@pytest.fixture
async def telegram(api: BotApiStandIn) -> AsyncIterator[TelegramSender]:
    """Our TelegramSender talking to ``api`` with TELEGRAM_TOKEN."""
    async with TelegramSender(TELEGRAM_TOKEN, api_url=api.base_url) as sender:
        yield sender

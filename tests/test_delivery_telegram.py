"""Telegram delivery with the real python-telegram-bot over real HTTP against the local Bot API stand-in."""

from __future__ import annotations

import gc
import socket

import pytest

from reporting.delivery import DeliveryError, RecipientGoneError, TelegramSender, escape

TOKEN = "123456:delivery-token"
MANAGER = 5001
PNG = b"\x89PNG\r\n\x1a\n" + bytes(200)
PDF = b"%PDF-1.4\n%%EOF\n"


async def test_a_text_goes_out_as_html_with_customer_text_escaped(api, telegram):
    comment = "<b>rude</b> staff & a <a href='x'>link</a>"
    text = f"<b>New case</b> at Branch 001\n<i>{escape(comment)}</i>"

    message_id = await telegram.send_text(MANAGER, text)

    [sent] = api.sent
    assert (sent.method, sent.chat_id, sent.message_id, sent.parse_mode) == ("sendMessage", MANAGER, message_id, "HTML")
    assert sent.text == text
    assert "&lt;b&gt;rude&lt;/b&gt; staff &amp; a &lt;a href=&#x27;x&#x27;&gt;" in sent.text


async def test_a_photo_goes_out_with_its_caption(api, telegram):
    await telegram.send_photo(MANAGER, PNG, caption_html="<b>CSAT</b> this week", filename="csat.png")
    [sent] = api.sent
    assert (sent.method, sent.text, sent.parse_mode) == ("sendPhoto", "<b>CSAT</b> this week", "HTML")
    assert (sent.file_name, sent.file_size) == ("csat.png", len(PNG))


async def test_a_document_goes_out_with_its_file_name(api, telegram):
    await telegram.send_document(MANAGER, PDF, filename="digest.pdf")
    [sent] = api.sent
    assert (sent.method, sent.file_name, sent.file_size) == ("sendDocument", "digest.pdf", len(PDF))


async def test_a_chat_that_blocked_the_bot_is_gone_for_good(api, telegram):
    api.block(MANAGER)
    with pytest.raises(RecipientGoneError, match="Forbidden: bot was blocked by the user") as caught:
        await telegram.send_text(MANAGER, "hello")
    assert caught.value.retryable is False
    assert api.sent == []


async def test_a_flood_limit_is_retryable_after_the_wait_telegram_asks_for(api, telegram):
    api.rate_limit_next(1, retry_after=7)
    with pytest.raises(DeliveryError) as caught:
        await telegram.send_photo(MANAGER, PNG)
    assert not isinstance(caught.value, RecipientGoneError)
    assert (caught.value.retryable, caught.value.retry_after) == (True, 7.0)
    await telegram.send_photo(MANAGER, PNG)
    assert len(api.sent) == 1


async def test_malformed_html_is_not_retryable(api, telegram):
    with pytest.raises(DeliveryError) as caught:
        await telegram.send_text(MANAGER, "")  # the stand-in refuses empty text as Telegram does
    assert caught.value.retryable is False
    assert not isinstance(caught.value, RecipientGoneError)


async def test_a_refused_token_is_reported_without_the_token(api):
    with pytest.raises(DeliveryError) as caught:
        async with TelegramSender("not-a-token-42", api_url=api.base_url):
            pass
    assert caught.value.retryable is False
    assert "not-a-token-42" not in str(caught.value)
    gc.collect()  # a connection left open by the failed start would warn here, and warnings are errors


async def test_an_unreachable_api_is_retryable(monkeypatch):
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(DeliveryError) as caught:
        async with TelegramSender(TOKEN, api_url=f"http://127.0.0.1:{port}/bot/"):
            pass
    assert caught.value.retryable is True
    assert TOKEN not in str(caught.value)

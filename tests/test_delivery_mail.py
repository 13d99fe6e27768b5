"""E-mail delivery against real SMTP servers on loopback: aiosmtpd accepting, refusing, or never answering."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from reporting.delivery import Attachment, DeliveryError, Email, InlineImage, Mailer, SmtpOptions, build_message

SENDER = "Closeloop <closeloop@bank.example>"
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
PDF = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"


class Inbox:
    """An aiosmtpd handler that keeps what it accepts and can refuse recipients or messages like a real server."""

    def __init__(self, *, refuse_rcpt: dict[str, str] | None = None, refuse_data: str | None = None) -> None:
        self.refuse_rcpt = refuse_rcpt or {}
        self.refuse_data = refuse_data
        self.envelopes: list[Envelope] = []
        self.logins: list[bytes] = []

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list) -> str:
        if address in self.refuse_rcpt:
            return self.refuse_rcpt[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.refuse_data:
            return self.refuse_data
        self.envelopes.append(envelope)
        return "250 Message accepted"

    def messages(self) -> list[EmailMessage]:
        return [message_from_bytes(e.content, policy=policy.default) for e in self.envelopes]  # type: ignore[misc]


@asynccontextmanager
async def smtp_server(handler: Any, **options: Any) -> AsyncIterator[int]:
    """Serve aiosmtpd on this test's own event loop, on a free port of 127.0.0.1; yield the port."""
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: SMTP(handler, hostname="mx.bank.test", **options), "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


@asynccontextmanager
async def silent_server() -> AsyncIterator[int]:
    """Accept connections and never say a word, like a firewall that swallows the greeting."""
    writers = []
    hold = asyncio.Event()

    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        await hold.wait()

    server = await asyncio.start_server(swallow, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        hold.set()
        for writer in writers:
            writer.close()
        server.close()
        await server.wait_closed()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def plain(port: int, **changes: Any) -> Mailer:
    options: dict[str, Any] = {"security": "none", "timeout": 5.0} | changes
    return Mailer(SmtpOptions(host="127.0.0.1", port=port, sender=SENDER, **options))


def digest_email(*to: str) -> Email:
    return Email(
        to=to,
        subject="每周摘要 Weekly digest: Branch 001",
        text="Satisfaction rose to 4.2.\n满意度上升。",
        html='<h1>Weekly digest</h1><p>满意度上升</p><img src="cid:csat-trend" alt="trend">',
        images=(InlineImage("csat-trend", PNG),),
        attachments=(Attachment("digest-2025-W10.pdf", PDF, "application/pdf"),),
    )


async def test_an_email_arrives_with_text_html_inline_image_and_pdf():
    inbox = Inbox()
    async with smtp_server(inbox) as port:
        refused = await plain(port).send(digest_email("ana@bank.example", "li@bank.example"))

    assert refused == {}
    [envelope] = inbox.envelopes
    assert envelope.mail_from == "closeloop@bank.example"
    assert envelope.rcpt_tos == ["ana@bank.example", "li@bank.example"]
    [message] = inbox.messages()
    assert message["Subject"] == "每周摘要 Weekly digest: Branch 001"
    assert message["From"] == SENDER
    assert message["Message-ID"].endswith("@bank.example>")
    assert message.get_body(("plain",)).get_content().splitlines() == ["Satisfaction rose to 4.2.", "满意度上升。"]
    html = message.get_body(("html",))
    assert 'src="cid:csat-trend"' in html.get_content()
    [image] = [part for part in message.walk() if part.get_content_type() == "image/png"]
    assert image["Content-ID"] == "<csat-trend>"
    assert image.get_content_disposition() == "inline"
    assert image.get_content() == PNG
    [pdf] = list(message.iter_attachments())
    assert (pdf.get_content_type(), pdf.get_filename(), pdf.get_content()) == (
        "application/pdf",
        "digest-2025-W10.pdf",
        PDF,
    )


def test_the_image_belongs_to_the_html_view_and_the_pdf_sits_beside_both():
    message = build_message(digest_email("ana@bank.example"), sender=SENDER)
    outline = [(part.get_content_type(), part.get_content_disposition()) for part in message.walk()]
    assert outline == [
        ("multipart/mixed", None),
        ("multipart/alternative", None),
        ("text/plain", None),
        ("multipart/related", None),
        ("text/html", None),
        ("image/png", "inline"),
        ("application/pdf", "attachment"),
    ]


def test_a_line_break_in_the_subject_cannot_add_headers():
    email = Email(to=("ana@bank.example",), subject="Digest\r\nBcc: thief@evil.example", text="x")
    with pytest.raises(ValueError, match=r"linefeed|carriage return"):
        build_message(email, sender=SENDER)


def test_images_need_an_html_body_and_a_plain_content_id():
    with pytest.raises(ValueError, match="HTML body"):
        build_message(Email(to=("a@b.example",), subject="s", text="t", images=(InlineImage("c", PNG),)), sender=SENDER)
    with pytest.raises(ValueError, match="content id"):
        InlineImage("<chart>", PNG)


async def test_a_permanently_refused_recipient_is_not_retryable():
    inbox = Inbox(refuse_rcpt={"gone@bank.example": "550 5.1.1 <gone@bank.example>: no such user"})
    async with smtp_server(inbox) as port:
        with pytest.raises(DeliveryError) as caught:
            await plain(port).send(digest_email("gone@bank.example"))

    assert caught.value.retryable is False
    assert "550 5.1.1" in str(caught.value)
    assert f"127.0.0.1:{port}" in str(caught.value)
    assert inbox.envelopes == []


async def test_a_temporarily_refused_recipient_is_retryable():
    inbox = Inbox(refuse_rcpt={"busy@bank.example": "450 4.2.1 mailbox busy, try later"})
    async with smtp_server(inbox) as port:
        with pytest.raises(DeliveryError) as caught:
            await plain(port).send(digest_email("busy@bank.example"))
    assert caught.value.retryable is True


async def test_one_refused_recipient_among_several_is_reported_and_the_others_get_the_mail():
    inbox = Inbox(refuse_rcpt={"gone@bank.example": "550 5.1.1 no such user"})
    async with smtp_server(inbox) as port:
        refused = await plain(port).send(digest_email("ana@bank.example", "gone@bank.example"))
    assert refused == {"gone@bank.example": "550 5.1.1 no such user"}
    assert inbox.envelopes[0].rcpt_tos == ["ana@bank.example"]


async def test_a_rejected_message_is_not_retryable():
    inbox = Inbox(refuse_data="554 5.7.1 Message rejected as spam")
    async with smtp_server(inbox) as port:
        with pytest.raises(DeliveryError, match=r"message refused: 554 5\.7\.1") as caught:
            await plain(port).send(digest_email("ana@bank.example"))
    assert caught.value.retryable is False


async def test_a_server_that_never_answers_times_out_as_retryable():
    async with silent_server() as port:
        started = time.monotonic()
        with pytest.raises(DeliveryError, match=r"no answer within 0\.3 s") as caught:
            await plain(port, timeout=0.3).send(digest_email("ana@bank.example"))
    assert caught.value.retryable is True
    assert time.monotonic() - started < 3


async def test_a_refused_connection_is_retryable():
    with pytest.raises(DeliveryError) as caught:
        await plain(closed_port()).send(digest_email("ana@bank.example"))
    assert caught.value.retryable is True


async def test_starttls_is_required_when_configured_never_skipped():
    inbox = Inbox()  # a plain server that offers no STARTTLS
    async with smtp_server(inbox) as port:
        mailer = Mailer(SmtpOptions(host="127.0.0.1", port=port, sender=SENDER, security="starttls", timeout=5))
        with pytest.raises(DeliveryError, match="STARTTLS") as caught:
            await mailer.send(digest_email("ana@bank.example"))
    assert caught.value.retryable is False
    assert inbox.envelopes == [], "nothing may go out in clear text when STARTTLS was asked for"


def accept_only(login: bytes, password: bytes, seen: list[bytes]) -> Callable[..., AuthResult]:
    def authenticator(server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any) -> AuthResult:
        assert isinstance(data, LoginPassword)
        seen.append(data.login)
        ok = data.login == login and data.password == password
        return AuthResult(success=ok, handled=False)  # handled=False: aiosmtpd answers 535 itself

    return authenticator


async def test_the_login_is_used_and_a_wrong_password_never_appears(caplog):
    caplog.set_level("DEBUG")
    inbox = Inbox()
    authenticator = accept_only(b"closeloop", b"right-pass", inbox.logins)
    # auth_require_tls=False: AUTH offered in clear text, on loopback only, so the test needs no certificate.
    async with smtp_server(inbox, authenticator=authenticator, auth_require_tls=False) as port:
        await plain(port, username="closeloop", password="right-pass").send(digest_email("ana@bank.example"))
        wrong = plain(port, username="closeloop", password="wrong-pass-8731")
        with pytest.raises(DeliveryError, match="login refused: 535") as caught:
            await wrong.send(digest_email("ana@bank.example"))

    assert set(inbox.logins) == {b"closeloop"}  # aiosmtplib tries each offered mechanism before giving up
    assert len(inbox.envelopes) == 1
    assert caught.value.retryable is False
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__
    assert "wrong-pass-8731" not in str(caught.value)
    assert "wrong-pass-8731" not in repr(wrong) + repr(wrong.options)
    assert "wrong-pass-8731" not in caplog.text

"""E-mail out: one multipart message (HTML, plain text, inline images, attachments) sent over SMTP by aiosmtplib."""

from __future__ import annotations

import logging
import re
import ssl
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import formatdate, make_msgid, parseaddr
from typing import Literal

import aiosmtplib

from reporting.delivery.errors import DeliveryError

log = logging.getLogger(__name__)

Security = Literal["none", "starttls", "tls"]
_CID = re.compile(r"[A-Za-z0-9._-]{1,64}")


@dataclass(frozen=True, slots=True)
class SmtpOptions:
    """Where and how to hand mail over; the composition root builds it from the ``[smtp]`` settings."""

    host: str
    sender: str
    port: int = 587
    security: Security = "starttls"
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    timeout: float = 30.0


@dataclass(frozen=True, slots=True)
class InlineImage:
    """An image the HTML body shows with ``<img src="cid:{cid}">`` (a chart), carried inside the message."""

    cid: str
    data: bytes = field(repr=False)
    subtype: str = "png"

    def __post_init__(self) -> None:
        if not _CID.fullmatch(self.cid):
            raise ValueError(f"content id {self.cid!r}: use 1-64 characters of A-Z, a-z, 0-9, '.', '_' and '-'")

    @property
    def filename(self) -> str:
        return f"{self.cid}.{self.subtype}"


@dataclass(frozen=True, slots=True)
class Attachment:
    """A file the recipient downloads (the digest as PDF or Excel)."""

    filename: str
    data: bytes = field(repr=False)
    content_type: str = "application/octet-stream"


@dataclass(frozen=True, slots=True)
class Email:
    """What to send to whom; ``text`` is always there, for clients that show no HTML."""

    to: tuple[str, ...]
    subject: str
    text: str
    html: str | None = None
    images: tuple[InlineImage, ...] = ()
    attachments: tuple[Attachment, ...] = ()


def build_message(email: Email, *, sender: str) -> EmailMessage:
    """Lay the message out as mixed[alternative[text, related[html, images]], attachments].

    That nesting is what mail clients expect: the text and the HTML are two views of one body, the images
    belong to the HTML view only, and the attachments sit beside both.

    Raises:
        ValueError: no recipient, images without HTML, or a header with a line break (header injection).
    """
    if not email.to:
        raise ValueError("an e-mail needs at least one recipient")
    if email.images and email.html is None:
        raise ValueError("inline images need an HTML body that refers to them")
    message = EmailMessage()
    message["From"] = sender
    message["To"] = ", ".join(email.to)
    message["Subject"] = email.subject
    message["Date"] = formatdate(usegmt=True)
    message["Message-ID"] = make_msgid(domain=_domain_of(sender))
    message.set_content(email.text)
    if email.html is not None:
        message.add_alternative(email.html, subtype="html")
        html_part = message.get_body(("html",))
        assert html_part is not None  # just added
        for image in email.images:
            html_part.add_related(
                image.data,
                maintype="image",
                subtype=image.subtype,
                cid=f"<{image.cid}>",
                disposition="inline",
                filename=image.filename,
            )
    for attachment in email.attachments:
        maintype, _, subtype = attachment.content_type.partition("/")
        message.add_attachment(
            attachment.data, maintype=maintype, subtype=subtype or "octet-stream", filename=attachment.filename
        )
    return message


class Mailer:
    """Send e-mails through one SMTP server, honouring its security mode, login and timeout."""

    def __init__(self, options: SmtpOptions) -> None:
        self.options = options

    def __repr__(self) -> str:
        return f"Mailer({self.options.host}:{self.options.port}, {self.options.security})"

    async def send(self, email: Email) -> dict[str, str]:
        """Send ``email``; return the recipients refused while others were accepted (address -> server reply).

        Raises:
            DeliveryError: nothing was accepted; ``retryable`` is False for 5xx replies and refused TLS/login set-ups.
        """
        options = self.options
        message = build_message(email, sender=options.sender)
        try:
            refused, _ = await aiosmtplib.send(
                message,
                hostname=options.host,
                port=options.port,
                username=options.username,
                password=options.password,
                use_tls=options.security == "tls",
                # False, not None: None would let aiosmtplib upgrade opportunistically and fall back silently.
                start_tls=options.security == "starttls",
                timeout=options.timeout,
            )
        except (aiosmtplib.SMTPException, OSError) as exc:
            raise self._error(exc) from None  # from None: the chained reply could quote what we sent
        log.info("mail: sent to %d recipient(s) via %s:%d", len(email.to) - len(refused), options.host, options.port)
        return {address: f"{reply.code} {reply.message}" for address, reply in refused.items()}

    def _error(self, exc: BaseException) -> DeliveryError:
        where = f"SMTP server {self.options.host}:{self.options.port}"
        message, retryable = _classify(exc, self.options.timeout)
        text = f"{where}: {message}"
        if self.options.password:
            text = text.replace(self.options.password, "***")
        return DeliveryError(text, retryable=retryable)


def _classify(exc: BaseException, timeout: float) -> tuple[str, bool]:
    """Say what went wrong and whether the same message may get through later.

    SMTP's own rule decides: a 4xx reply is transient, a 5xx reply permanent. A server that cannot be reached
    or does not answer may be back later; a server that lacks STARTTLS or a certificate that does not verify
    will not change by itself.
    """
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        replies = "; ".join(f"{r.recipient}: {r.code} {r.message}" for r in exc.recipients)
        return f"every recipient refused ({replies})", any(r.code < 500 for r in exc.recipients)
    if isinstance(exc, aiosmtplib.SMTPAuthenticationError):
        return f"login refused: {exc.code} {exc.message}", exc.code < 500
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return f"{_stage(exc)} refused: {exc.code} {exc.message}", exc.code < 500
    if isinstance(exc, aiosmtplib.SMTPTimeoutError):
        return f"no answer within {timeout:g} s", True
    if isinstance(exc.__cause__, ssl.SSLCertVerificationError):
        return f"TLS certificate not trusted: {exc.__cause__.verify_message}", False
    if type(exc) is aiosmtplib.SMTPException or isinstance(exc, aiosmtplib.SMTPNotSupported):
        # aiosmtplib's bare SMTPException means the server lacks what the settings ask for (STARTTLS, AUTH).
        return f"server does not allow the configured set-up: {exc}", False
    return f"{type(exc).__name__}: {exc}", True


def _stage(exc: aiosmtplib.SMTPResponseException) -> str:
    if isinstance(exc, aiosmtplib.SMTPSenderRefused):
        return "sender"
    if isinstance(exc, aiosmtplib.SMTPDataError):
        return "message"
    if isinstance(exc, aiosmtplib.SMTPHeloError):
        return "greeting"
    return "command"


def _domain_of(sender: str) -> str | None:
    """The sender's domain, so Message-IDs do not carry this machine's host name."""
    _, address = parseaddr(sender)
    return address.rpartition("@")[2] or None

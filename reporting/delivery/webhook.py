"""Webhook out: sign an event with HMAC-SHA256 and POST it as JSON; ``verify_signature`` for the receiving side.

A receiver checks ``X-Closeloop-Signature`` (``sha256=`` and the hex HMAC of ``"{timestamp}.{body}"`` under the
shared secret), refuses a timestamp too far from its clock (a replayed request), and de-duplicates on
``X-Closeloop-Delivery``: an event may arrive twice if Closeloop stopped between the POST and recording it.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx

from reporting.delivery.errors import DeliveryError

log = logging.getLogger(__name__)

EVENT_HEADER = "X-Closeloop-Event"
DELIVERY_HEADER = "X-Closeloop-Delivery"
TIMESTAMP_HEADER = "X-Closeloop-Timestamp"
SIGNATURE_HEADER = "X-Closeloop-Signature"
SIGNATURE_PREFIX = "sha256="
DEFAULT_TOLERANCE = 300.0  # seconds; five minutes, as Stripe and Slack use


@dataclass(frozen=True, slots=True)
class WebhookOptions:
    """Where events go and the key they are signed with; built from the ``[webhook]`` settings."""

    url: str
    secret: str = field(repr=False)
    timeout: float = 10.0
    max_attempts: int = 10


@dataclass(frozen=True, slots=True)
class Event:
    """One outbox row as the receiver sees it; ``id`` is the delivery id a receiver de-duplicates on."""

    id: int
    topic: str
    payload: dict[str, Any]
    created_at: datetime


def encode_event(event: Event) -> bytes:
    """The JSON body: the event in an envelope, so a receiver needs no headers to know what it holds."""
    envelope = {"id": event.id, "event": event.topic, "created_at": event.created_at.isoformat(), "data": event.payload}
    return json.dumps(envelope, ensure_ascii=False, separators=(",", ":")).encode()


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """Return the ``X-Closeloop-Signature`` value for ``body`` sent at ``timestamp`` (Unix seconds)."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return SIGNATURE_PREFIX + digest


def verify_signature(
    secret: str,
    timestamp: str,
    body: bytes,
    signature: str,
    *,
    tolerance: float = DEFAULT_TOLERANCE,
    now: float | None = None,
) -> bool:
    """Tell whether ``signature`` is ours for exactly this body and timestamp, and the timestamp is recent.

    The timestamp is inside the signed text, so a replay cannot refresh it; ``tolerance`` (seconds, either side
    of ``now``) bounds how long a captured request stays usable.
    """
    try:
        sent = int(timestamp)
    except ValueError:
        return False
    current = time.time() if now is None else now
    if abs(current - sent) > tolerance:
        return False
    # compare_digest: the time taken must not reveal how many leading characters matched.
    return hmac.compare_digest(sign(secret, timestamp, body).encode(), signature.encode())


class WebhookSender:
    """POST signed events to one URL. Use as ``async with WebhookSender(options) as sender``."""

    def __init__(self, options: WebhookOptions) -> None:
        self.options = options
        # Redirects are not followed: the signature was made for this URL's owner, not for wherever it points.
        self._client = httpx.AsyncClient(follow_redirects=False, headers={"User-Agent": "Closeloop-Webhook/1"})

    async def __aenter__(self) -> WebhookSender:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._client.aclose()

    async def post(self, event: Event) -> None:
        """Deliver ``event`` once.

        Raises:
            DeliveryError: no 2xx answer within ``timeout`` seconds in all. Always retryable: a receiver that
                answers 4xx is usually being fixed (a secret, a route), and the outbox caps the attempts.
        """
        body = encode_event(event)
        timestamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            EVENT_HEADER: event.topic,
            DELIVERY_HEADER: str(event.id),
            TIMESTAMP_HEADER: timestamp,
            SIGNATURE_HEADER: sign(self.options.secret, timestamp, body),
        }
        try:
            # One deadline for the whole exchange (httpx's timeout is per read): the outbox lease relies on it.
            async with asyncio.timeout(self.options.timeout):
                response = await self._client.post(self.options.url, content=body, headers=headers)
        except TimeoutError:
            raise DeliveryError(f"webhook: no answer within {self.options.timeout:g} s", retryable=True) from None
        except httpx.HTTPError as exc:
            raise DeliveryError(f"webhook: {type(exc).__name__}: {exc}", retryable=True) from None
        if not response.is_success:
            raise DeliveryError(
                f"webhook: receiver answered {response.status_code} {response.reason_phrase}{_excerpt(response)}",
                retryable=True,
                retry_after=_retry_after(response),
            )
        log.debug("webhook: event %d (%s) delivered", event.id, event.topic)


def _excerpt(response: httpx.Response) -> str:
    """The start of the receiver's answer, which often says what it disliked (a bad signature, a bad route)."""
    text = response.text.strip().replace("\n", " ")
    return f": {text[:200]}" if text else ""


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After", "")
    return float(value) if value.isdigit() else None

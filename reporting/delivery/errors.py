"""Why a delivery failed, in the terms a caller acts on: try again later, or give up (and maybe unsubscribe)."""

from __future__ import annotations


class DeliveryError(Exception):
    """A message did not reach its recipient.

    ``retryable`` says whether the same message may succeed later unchanged (a timeout, a 4xx SMTP reply, a
    rate limit) or never will (a refused address, a rejected message). ``retry_after`` is the wait in seconds
    the other side asked for, when it asked. The message names the server or service, never a password or
    customer text.
    """

    def __init__(self, message: str, *, retryable: bool, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after


class RecipientGoneError(DeliveryError):
    """The recipient refuses everything from us for good (a Telegram chat that blocked the bot).

    The caller should deactivate the subscription rather than try again.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message, retryable=False)

"""The audit trail's one way in: an entry per staff, system or command-line action, in the action's transaction.

The web console sets `request_address` for the duration of a request, so code far from the request (a case
action in reporting/) records where the action came from without passing the address through every call.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any

from store.models import ActorKind, AuditEntry

request_address: ContextVar[str | None] = ContextVar("closeloop_request_address", default=None)
ADDRESS_LIMIT = 45  # the column fits an IPv6 address


def audit_entry(
    *,
    actor_kind: ActorKind,
    actor_id: int | None,
    action: str,
    target_type: str,
    target_id: int | str | None,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    remote_addr: str | None = None,
) -> AuditEntry:
    """An audit row to add to the session that makes the change; the address defaults to the current request's."""
    address = remote_addr if remote_addr is not None else request_address.get()
    return AuditEntry(
        actor_kind=actor_kind,
        actor_id=actor_id,
        action=action,
        target_type=target_type,
        target_id=None if target_id is None else str(target_id),
        before=before,
        after=after,
        remote_addr=(address or "")[:ADDRESS_LIMIT] or None,
    )

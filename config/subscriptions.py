"""The subscriptions file: e-mail addresses that receive digests or case alerts, kept by the operator in TOML.

Loaded and checked against the branches file before anything starts; synchronised into the database at each
start (store.subscriptions.sync_file_subscriptions), where a removed entry deactivates its row.
"""

from __future__ import annotations

import logging
import re
from email.utils import parseaddr
from pathlib import Path
from typing import Literal

from pydantic import field_validator, model_validator

from config.branches import BranchList
from config.errors import ConfigError
from config.files import parse_file
from nlp.taxonomy import Strict, reject_duplicates
from store import Database
from store.models import ScopeKind, SubscriptionPurpose
from store.subscriptions import EmailSpec, sync_file_subscriptions

log = logging.getLogger(__name__)

EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
SCOPE_FORM = "branch:CODE, region:NAME or all"
PURPOSES = {"digest": SubscriptionPurpose.DIGEST, "alerts": SubscriptionPurpose.CASE_ALERT}


def is_email_address(text: str) -> bool:
    """Whether `text` is one bare address (no display name, no second address hidden after a comma)."""
    return bool(EMAIL.fullmatch(text)) and parseaddr(text)[1] == text


def parse_scope(text: str) -> tuple[ScopeKind, str | None]:
    """Split "branch:MAIN", "region:North" or "all" into a kind and a value.

    Raises:
        ValueError: any other form.
    """
    kind, _, value = text.strip().partition(":")
    if kind == "all" and not value:
        return ScopeKind.ALL, None
    if kind in ("branch", "region") and value.strip():
        return ScopeKind(kind), value.strip()
    raise ValueError(f"{text!r}: expected {SCOPE_FORM}")


class EmailEntry(Strict):
    address: str
    scope: str
    purpose: Literal["digest", "alerts"]
    language: Literal["en", "zh"] = "en"

    @field_validator("address")
    @classmethod
    def _one_address(cls, value: str) -> str:
        if not is_email_address(value.strip()):
            raise ValueError(f"not an e-mail address: {value!r}")
        return value.strip()

    @field_validator("scope")
    @classmethod
    def _known_scope_form(cls, value: str) -> str:
        parse_scope(value)
        return value.strip()

    def spec(self) -> EmailSpec:
        kind, value = parse_scope(self.scope)
        return EmailSpec(address=self.address, purpose=PURPOSES[self.purpose], scope_kind=kind, scope_value=value,
                         language=self.language)  # fmt: skip


class SubscriptionList(Strict):
    email: tuple[EmailEntry, ...] = ()

    @model_validator(mode="after")
    def _unique_entries(self) -> SubscriptionList:
        reject_duplicates("e-mail subscriptions", [_label(entry) for entry in self.email])
        return self


def _label(entry: EmailEntry) -> str:
    """Name what makes an entry distinct, as the operator would write it: a@bank.example (alerts, branch:MAIN)."""
    kind, value = parse_scope(entry.scope)
    return f"{entry.address.lower()} ({entry.purpose}, {kind}{f':{value}' if value else ''})"


def load_subscriptions(path: Path, branches: BranchList) -> SubscriptionList:
    """Read the subscriptions file and check every scope names a branch or region of the branches file.

    Raises:
        ConfigError: naming the file, the entry and what is wrong.
    """
    subscriptions = parse_file(SubscriptionList, path)
    codes = {b.code for b in branches.branches}
    regions = {b.region for b in branches.branches if b.region}
    problems = []
    for index, entry in enumerate(subscriptions.email):
        kind, value = parse_scope(entry.scope)
        known = codes if kind == ScopeKind.BRANCH else regions if kind == ScopeKind.REGION else None
        # Exact match: alerts find their subscriptions by the branch code and region exactly as stored.
        if known is not None and value not in known:
            problems.append(f"{path}: key email[{index}] ({entry.address}).scope: unknown {kind} {value!r} "
                            f"(the branches file has: {', '.join(sorted(known))})")  # fmt: skip
    if problems:
        raise ConfigError("\n".join(problems))
    return subscriptions


async def sync_subscriptions(database: Database, subscriptions: SubscriptionList, path: Path) -> None:
    """Bring the database's "file" subscriptions in line with the file; log what changed."""
    result = await sync_file_subscriptions(database, [entry.spec() for entry in subscriptions.email])
    log.info("subscriptions synchronised from %s: %s", path, result)

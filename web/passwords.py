"""Password hashing with argon2id: hash, verify with advice to rehash, and a decoy for usernames that don't exist."""

from __future__ import annotations

import functools
import secrets
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

MIN_LENGTH = 10
# argon2 takes any length; the cap keeps a megabyte "password" from costing more than a normal one to read.
MAX_LENGTH = 1024

# The library's defaults (argon2id, RFC 9106's low-memory profile: 64 MiB, 3 passes). Tests swap in a cheap hasher
# through this name; production never changes it.
HASHER = PasswordHasher()


@dataclass(frozen=True, slots=True)
class Verdict:
    is_match: bool
    new_hash: str | None = None  # set when the stored hash used older parameters: store this one instead


def password_problem(password: str) -> str | None:
    """Say what is wrong with a new password, or None when it is acceptable."""
    if len(password) < MIN_LENGTH:
        return f"the password must have at least {MIN_LENGTH} characters"
    if len(password) > MAX_LENGTH:
        return f"the password must have at most {MAX_LENGTH} characters"
    if not password.strip():
        return "the password must not be blank"
    return None


def hash_password(password: str) -> str:
    return HASHER.hash(password)


def check_password(stored_hash: str | None, password: str) -> Verdict:
    """Verify a password against a stored hash; ``None`` (no such user) is checked against a decoy hash.

    The decoy costs what a real check costs, so the answer's timing does not tell which usernames exist.
    Slow on purpose (about 0.1 s with the defaults): call it off the event loop.
    """
    hasher = HASHER
    is_too_long = len(password) > MAX_LENGTH  # no stored password is: checked at the normal cost, then refused
    try:
        hasher.verify(stored_hash or _decoy(hasher), password[:MAX_LENGTH])
    except (VerificationError, InvalidHashError):  # a mismatch, or a hash we cannot read: never a match
        return Verdict(is_match=False)
    if stored_hash is None or is_too_long:
        return Verdict(is_match=False)
    new_hash = hasher.hash(password) if hasher.check_needs_rehash(stored_hash) else None
    return Verdict(is_match=True, new_hash=new_hash)


@functools.cache
def _decoy(hasher: PasswordHasher) -> str:
    return hasher.hash(secrets.token_urlsafe(16))

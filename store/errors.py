"""The store's exceptions: one root for everything persistence raises on purpose."""

from __future__ import annotations


class StoreError(Exception):
    """Raise for any persistence failure the rest of Closeloop is expected to handle."""


class DatabaseUnavailableError(StoreError):
    """Raise when the database cannot be reached; the message names the target, never a password."""

"""Persistence for Closeloop: the database handle, migrations, branch sync and the ORM models."""

from store.branches import BranchSpec, CounterSpec, SyncResult, sync_branches
from store.database import Database, normalize_url
from store.errors import DatabaseUnavailableError, StoreError
from store.migrate import current_revision, head_revision, upgrade

__all__ = [
    "BranchSpec",
    "CounterSpec",
    "Database",
    "DatabaseUnavailableError",
    "StoreError",
    "SyncResult",
    "current_revision",
    "head_revision",
    "normalize_url",
    "sync_branches",
    "upgrade",
]

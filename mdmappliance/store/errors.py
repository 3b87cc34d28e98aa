"""Errors of the store: the database cannot be opened, upgraded or used."""

from __future__ import annotations

from mdmappliance.core.errors import ApplianceError


class StoreError(ApplianceError):
    """The database cannot be opened or upgraded."""


class DatabaseTooNew(StoreError):
    """The database was written by a newer mdmappliance than this one."""


class MigrationFailed(StoreError):
    """A schema migration raised; the database was left as it was."""


class StoreClosed(StoreError):
    """Work was submitted to a store that is stopping or stopped."""

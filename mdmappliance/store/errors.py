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


class StoreUnavailable(StoreError):
    """The database cannot do the work right now: another process holds it, the file or the
    disk refuses writes, or it is damaged. Nothing was written. ``transient`` faults (busy)
    pass by themselves; the others need the administrator, and the store reconnects once
    they are gone. Device requests get 503 with Retry-After, admin writes 503."""

    def __init__(self, reason: str, *, transient: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.transient = transient

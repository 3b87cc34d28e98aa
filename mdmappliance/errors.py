"""Named errors that stop the appliance before it serves.

Each carries a one-line message meant for an administrator; the CLI prints it without a
traceback and exits with the class's ``exit_status``.
"""

from __future__ import annotations


class ApplianceError(Exception):
    """Base of the errors an administrator can act on."""

    exit_status = 1


class ConfigError(ApplianceError):
    """The config file is missing, malformed, or names something unusable."""

    exit_status = 2

    def __init__(self, path: object, key: str | None, problem: str) -> None:
        self.path = str(path)
        self.key = key
        self.problem = problem
        where = f"{self.path}: {key}" if key else self.path
        super().__init__(f"{where}: {problem}")


class StoreError(ApplianceError):
    """The database cannot be opened or upgraded."""


class DatabaseTooNew(StoreError):
    """The database was written by a newer mdmappliance than this one."""


class MigrationFailed(StoreError):
    """A schema migration raised; the database was left as it was."""


class StoreClosed(StoreError):
    """Work was submitted to a store that is stopping or stopped."""


class InitError(ApplianceError):
    """``mdmappliance init`` was asked for something it will not do."""

    exit_status = 2

"""The config file's error: it names the file, the key and the problem."""

from __future__ import annotations

from mdmappliance.core.errors import ApplianceError


class ConfigError(ApplianceError):
    """The config file is missing, malformed, or names something unusable."""

    exit_status = 2

    def __init__(self, path: object, key: str | None, problem: str) -> None:
        self.path = str(path)
        self.key = key
        self.problem = problem
        where = f"{self.path}: {key}" if key else self.path
        super().__init__(f"{where}: {problem}")

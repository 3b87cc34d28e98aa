"""Why a command is not queued, and why a device's answer cannot be read."""

from __future__ import annotations


class CommandRejected(ValueError):
    """The command cannot be queued as given."""


class CommandInvalid(CommandRejected):
    """The command breaks the spec's rules: one message per problem, each naming its key."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


class ResultInvalid(ValueError):
    """A device's answer does not have the shape the spec gives it."""

"""Named errors that stop the appliance before it serves.

Each carries a one-line message meant for an administrator; the CLI prints it without a
traceback and exits with the class's ``exit_status``.
"""

from __future__ import annotations


class ApplianceError(Exception):
    """Base of the errors an administrator can act on."""

    exit_status = 1

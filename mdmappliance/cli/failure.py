"""How the command line fails: one line, ``mdmappliance: <what is wrong>``, and a status."""

from __future__ import annotations

import sys

PROG = "mdmappliance"


def fail(message: str, status: int = 1) -> int:
    """Print ``message`` for the admin and return the exit status to use."""
    print(f"{PROG}: {message}", file=sys.stderr)
    return status

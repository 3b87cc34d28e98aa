"""How the command line fails: one line, ``mdmappliance: <what is wrong>``, and a status."""

from __future__ import annotations

import errno
import sys

PROG = "mdmappliance"


def fail(message: str, status: int = 1) -> int:
    """Print ``message`` for the admin and return the exit status to use."""
    print(f"{PROG}: {message}", file=sys.stderr)
    return status


def file_problem(error: OSError) -> str:
    """An OSError in the admin's words: which file, and what is wrong with it (never a raw
    ``[Errno 2] ...``)."""
    name = error.filename if error.filename is not None else "a file"
    if error.errno == errno.ENOENT:
        return f"{name} does not exist"
    if error.errno in (errno.EACCES, errno.EPERM):
        return f"{name}: permission denied (run as the mdmappliance user, or with sudo)"
    if error.errno == errno.EISDIR:
        return f"{name} is a directory, not a file"
    return f"{name}: {error.strerror or error}"

"""The local network users file (Apache htdigest: ``user:realm:HA1``), for UserAuthenticate.

HA1 = MD5(user:realm:password): the appliance never holds a clear-text password.
"""

from __future__ import annotations

import re
from pathlib import Path

_HA1 = re.compile(r"^[0-9a-f]{32}$")


class UsersFileError(ValueError):
    """The users file cannot be read as htdigest."""


def read_users_file(path: Path, realm: str) -> dict[str, str]:
    """user -> HA1 for the entries of ``realm``."""
    users: dict[str, str] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        parts = line.strip().split(":")
        if len(parts) != 3 or not parts[0] or not _HA1.match(parts[2].lower()):
            raise UsersFileError(f"{path} line {number}: expected user:realm:HA1 (32 hex digits)")
        if parts[1] == realm:
            users[parts[0]] = parts[2].lower()
    return users

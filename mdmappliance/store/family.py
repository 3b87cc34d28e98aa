"""What every table family is: a set of typed operations on one SQLite connection.

The families are the only place with SQL. A second backend (PostgreSQL) is an added set of
classes with the same methods, built by its own ``Tx``.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable


class Family:
    __slots__ = ("_conn",)

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn


def id_list(ids: Iterable[int | str]) -> str:
    """A list of ids or names as one JSON parameter, read back with ``json_each``: one bound
    parameter whatever the count (SQLite limits the number of parameters)."""
    return json.dumps(list(ids))

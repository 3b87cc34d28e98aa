"""For the command line's file-level actions (``pushcert import``): the database opened from
this process (WAL lets it work beside a running service), and who acted, for the event log.
Fleet actions go through the admin API instead."""

from __future__ import annotations

import getpass
from collections.abc import Iterator
from contextlib import contextmanager

from mdmappliance.config import Config
from mdmappliance.store import Store


def cli_actor() -> str:
    """Who to record in the event log for a command-line action."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


@contextmanager
def offline_store(config: Config) -> Iterator[Store]:
    """The database opened from this process; WAL lets it work beside a running service."""
    store = Store.configured(config.store)
    store.open()
    try:
        yield store
    finally:
        store.close()

"""What the command line does on its own: open the database from this process (WAL lets it
work beside a running service) and name who acted, for the event log."""

from __future__ import annotations

import getpass
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from mdmappliance.config import Config
from mdmappliance.store.engine import Store

T = TypeVar("T")


def _cli_actor() -> str:
    """Who to record in the event log for a command-line action."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


@contextmanager
def offline_store(config: Config) -> Iterator[Store]:
    """The database opened from this process; WAL lets it work beside a running service."""
    store = Store(
        config.store.path,
        synchronous=config.store.synchronous,
        busy_timeout_ms=config.store.busy_timeout_ms,
        backup_dir=config.store.backup_dir,
    )
    store.open()
    try:
        yield store
    finally:
        store.close()


def offline_transaction(config: Config, fn: Callable[..., T], *args: Any) -> T:
    """One transaction on the database from this process (see ``offline_store``)."""
    with offline_store(config) as store:
        return store.transaction_now(fn, *args)

"""``Tx``: what a job run by the store gets, one attribute per table family.

Built once per connection (a job pays nothing to get it). Tests and the store's own code
may reach the connection as ``conn``; the rest of the appliance uses the families only.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from mdmappliance.store.commands import Commands
from mdmappliance.store.dep import DEP
from mdmappliance.store.enrollments import Enrollments
from mdmappliance.store.events import Events
from mdmappliance.store.fleet import Fleet
from mdmappliance.store.inventory import Inventory
from mdmappliance.store.links import Links
from mdmappliance.store.pushes import Pushes
from mdmappliance.store.scep import SCEP
from mdmappliance.store.settings import Settings
from mdmappliance.store.vpp import VPP
from mdmappliance.store.webhooks import Webhooks


class Tx:
    __slots__ = (
        "commands",
        "conn",
        "dep",
        "enrollments",
        "events",
        "fleet",
        "inventory",
        "links",
        "pushes",
        "scep",
        "settings",
        "vpp",
        "webhooks",
    )

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.commands = Commands(conn)
        self.dep = DEP(conn)
        self.enrollments = Enrollments(conn)
        self.events = Events(conn)
        self.fleet = Fleet(conn)
        self.inventory = Inventory(conn)
        self.links = Links(conn)
        self.pushes = Pushes(conn)
        self.scep = SCEP(conn)
        self.settings = Settings(conn)
        self.vpp = VPP(conn)
        self.webhooks = Webhooks(conn)


def record_event(tx: Tx, kind: str, /, **fields: Any) -> int:
    """``tx.events.record`` as a function, for ``store.transaction(record_event, kind, ...)``
    when an event is the whole transaction."""
    return tx.events.record(kind, **fields)

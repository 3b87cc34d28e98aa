"""The store: every SQL statement of the appliance, behind typed functions.

``engine`` owns the SQLite connection (its thread, transactions, group commit, migrations);
one module per table family holds that family's SQL.
"""

from mdmappliance.store.engine import Store, in_transaction
from mdmappliance.store.tx import Tx, record_event

__all__ = ["Store", "Tx", "in_transaction", "record_event"]

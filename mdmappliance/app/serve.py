"""``mdmappliance serve``: run the service tree on the global reactor, without twistd.

It does what ``twistd -n mdmappliance`` does, but needs no plugin discovery (so it works from
a zipapp or a frozen binary) and turns start-up failures into one line and an exit status.
Under systemd (``Type=notify``) the tree tells it when it is ready and when it stops.
"""

from __future__ import annotations

from pathlib import Path

from twisted.logger import Logger

from mdmappliance._version import __version__
from mdmappliance.app.logs import start_logging
from mdmappliance.app.notify import Notifier
from mdmappliance.app.reactor import global_reactor
from mdmappliance.app.service import make_service, urls
from mdmappliance.config import load_config
from mdmappliance.core.errors import ApplianceError
from mdmappliance.store import Store

log = Logger()


def serve(config_path: Path, *, log_format: str | None = None) -> int:
    """Run until SIGTERM or SIGINT; return the exit status."""
    config = load_config(config_path)
    start_logging(log_format or config.log.format, config.log.level)
    reactor = global_reactor()
    service = make_service(config, reactor, Notifier.from_environment())
    try:
        service.privilegedStartService()
    except ApplianceError:
        store = service.getServiceNamed("store")
        assert isinstance(store, Store)
        store.close()
        raise
    service.startService()
    reactor.addSystemEventTrigger("before", "shutdown", service.stopService)
    log.info(
        "mdmappliance {version} running with config {config}",
        version=__version__,
        config=str(config.path),
    )
    for name, url in urls(config).items():
        log.info("{name}: {url}", name=name, url=url)
    log.info("admin API key: {path}", path=str(config.admin.api_key_file))
    reactor.run()
    log.info("mdmappliance stopped")
    return 0

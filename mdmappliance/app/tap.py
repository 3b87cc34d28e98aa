"""The twistd plugin's options and service maker: ``twistd -n mdmappliance --config PATH``."""

from __future__ import annotations

import os
import sys
from typing import ClassVar

from twisted.application.service import IService
from twisted.python import usage

from mdmappliance.app import logs
from mdmappliance.config import LOG_FORMATS, Config, load_config
from mdmappliance.core.errors import ApplianceError

#: ``--config``, else ``$MDMAPPLIANCE_CONFIG`` (as for every ``mdmappliance`` command), else
#: the packaged location.
DEFAULT_CONFIG = os.environ.get("MDMAPPLIANCE_CONFIG") or "/etc/mdmappliance/mdmappliance.toml"


def _exit(error: ApplianceError) -> SystemExit:
    """twistd would print a traceback (or its whole usage text); print one line instead."""
    print(f"mdmappliance: {error}", file=sys.stderr)
    return SystemExit(error.exit_status)


class Options(usage.Options):
    optParameters: ClassVar[list[list[str | None]]] = [
        ["config", "c", DEFAULT_CONFIG, "The mdmappliance config file."],
        ["log-format", None, None, "Override [log] format: text or json."],
    ]

    config: Config

    def postOptions(self) -> None:
        if self["log-format"] not in (None, *LOG_FORMATS):
            raise usage.UsageError(f"--log-format must be one of {', '.join(LOG_FORMATS)}")
        try:
            self.config = load_config(self["config"])
        except ApplianceError as e:
            raise _exit(e) from None
        logs.twistd_settings.update(
            format=self["log-format"] or self.config.log.format, level=self.config.log.level
        )
        parent = getattr(self, "parent", None)
        if parent is not None and parent.get("logger") is None:
            parent["logger"] = "mdmappliance.app.logs.twistd_observer"


def makeService(options: Options) -> IService:
    """The tree, telling systemd about readiness when run by a ``Type=notify`` unit."""
    from mdmappliance.app.notify import Notifier
    from mdmappliance.app.reactor import global_reactor
    from mdmappliance.app.service import make_service

    try:
        return make_service(options.config, global_reactor(), Notifier.from_environment())
    except ApplianceError as e:
        raise _exit(e) from None

"""Errors of the command line that the appliance itself never raises."""

from __future__ import annotations

from mdmappliance.core.errors import ApplianceError


class InitError(ApplianceError):
    """``mdmappliance init`` was asked for something it will not do."""

    exit_status = 2

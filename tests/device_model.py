"""Moved to ``mdmappliance.simulator.model``; kept while suites written against the old path
are converted."""

from mdmappliance.simulator.model import DeviceModel, error, example_value, generic_answer

__all__ = ["DeviceModel", "error", "example_value", "generic_answer"]

"""Managed app configuration, attributes and feedback (iOS 7 and later): the three queries.

Setting configuration and attributes goes through Settings items (``settings.py``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mdmappliance.commands import rights
from mdmappliance.commands.base import (
    Checker,
    CommandSpec,
    InventoryUpdate,
    MacSupport,
    Outcome,
    Parser,
    by_identifier,
    dicts,
)


def build_identifiers(checker: Checker) -> None:
    identifiers = checker.strings("Identifiers", required=True)
    if identifiers == []:
        checker.problem("Identifiers", "is empty: name at least one app")


def build_feedback(checker: Checker) -> None:
    build_identifiers(checker)
    checker.boolean("DeleteFeedback")


def _parser(answer_key: str, kind: str) -> Parser:
    def parse(result: Mapping[str, Any], command: Mapping[str, Any]) -> Outcome:
        entries = by_identifier(dicts(result, answer_key))
        scope = tuple(command.get("Identifiers") or ())
        return Outcome(
            inventory=[InventoryUpdate(kind, entries, merge=True, scope=scope)],
            summary={"apps": sorted(entries)},
        )

    return parse


SPECS = (
    CommandSpec(
        "ManagedApplicationConfiguration",
        "appconfig",
        build_identifiers,
        rights=rights.APP_MANAGEMENT,
        mac=MacSupport.NONE,
        parse=_parser("ApplicationConfigurations", "app_configurations"),
    ),
    CommandSpec(
        "ManagedApplicationAttributes",
        "appconfig",
        build_identifiers,
        rights=rights.APP_MANAGEMENT,
        mac=MacSupport.NONE,
        parse=_parser("ApplicationAttributes", "app_attributes"),
    ),
    CommandSpec(
        "ManagedApplicationFeedback",
        "appconfig",
        build_feedback,
        rights=rights.APP_MANAGEMENT,
        mac=MacSupport.NONE,
        parse=_parser("ManagedApplicationFeedback", "app_feedback"),
    ),
)

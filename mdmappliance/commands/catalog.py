"""Every request type of the spec, and the two steps every command goes through.

``prepare`` checks a command description once (keys, types, the spec's constraints) and
``fit`` makes it fit one target (access rights, OS X support, supervision, per-target data),
refusing it with a message that names the key or the right.
"""

from __future__ import annotations

import plistlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mdmappliance.commands import (
    appconfig,
    apps,
    certificates,
    information,
    lock,
    mirroring,
    profiles,
    programs,
    provisioning,
    restrictions,
    rights,
    settings,
)
from mdmappliance.commands.base import (
    BuildContext,
    Checker,
    CommandSpec,
    Fitted,
    MacSupport,
    Target,
)
from mdmappliance.commands.errors import CommandInvalid
from mdmappliance.mdm.platforms import Platform

CATALOG: dict[str, CommandSpec] = {
    spec.request_type: spec
    for family in (
        profiles,
        provisioning,
        certificates,
        information,
        lock,
        mirroring,
        restrictions,
        apps,
        appconfig,
        settings,
        programs,
    )
    for spec in family.SPECS
}

QUEUEABLE_STATES = ("authenticated", "enrolled")


@dataclass(frozen=True)
class Prepared:
    """A checked command, ready to be fitted to targets. ``spec`` is None when unchecked."""

    spec: CommandSpec | None
    command: dict[str, Any]
    warnings: tuple[str, ...]
    rights: int

    @property
    def request_type(self) -> str:
        return str(self.command["RequestType"])


def prepare(
    description: Mapping[str, Any],
    context: BuildContext | None = None,
    *,
    unchecked: bool = False,
) -> Prepared:
    """Check a command description against the spec, or raise CommandInvalid.

    ``unchecked`` sends a request type the catalog does not know (a newer OS's command) as
    it is: only its RequestType and plist-ness are checked, and the caller is warned.
    """
    context = context or BuildContext()
    if not isinstance(description, Mapping):
        raise CommandInvalid(["the command must be a dictionary"])
    request_type = description.get("RequestType")
    if not isinstance(request_type, str) or not request_type:
        raise CommandInvalid(["RequestType is required (a string naming the request type)"])
    if unchecked:
        try:
            plistlib.dumps(dict(description), fmt=plistlib.FMT_XML)
        except (TypeError, OverflowError, ValueError) as e:
            raise CommandInvalid([f"the command is not a property list: {e}"]) from None
        note = f"{request_type} was sent unchecked: the catalog did not validate its keys"
        return Prepared(None, dict(description), (note,), 0)
    spec = CATALOG.get(request_type)
    if spec is None:
        raise CommandInvalid(
            [
                f"RequestType {request_type!r} is not a request type of the spec "
                f"(known: {', '.join(sorted(CATALOG))})"
            ]
        )
    checker = Checker(description, "", context)
    checker._seen.add("RequestType")
    spec.build(checker)
    checker.finish_keys()
    if checker.problems:
        raise CommandInvalid(checker.problems)
    command = {"RequestType": request_type, **checker.out}
    try:
        plistlib.dumps(command, fmt=plistlib.FMT_XML)
    except (TypeError, OverflowError, ValueError) as e:
        # Free-form dictionaries (Configuration, ...) may hold what a plist cannot: null,
        # integers beyond 64 bits.
        raise CommandInvalid([f"the command is not a property list: {e}"]) from None
    return Prepared(spec, command, tuple(checker.warnings), spec.needed_rights(command, context))


def _rights_refusal(
    prepared: Prepared, target: Target, name: str, mac: bool, fitted: Fitted
) -> str | None:
    """Why the enrollment's AccessRights forbid command ``name``, or None. Rights that are
    not known (another CA enrolled it) only warn."""
    if target.access_rights is None:
        if prepared.rights:
            fitted.warnings.append(
                "this enrollment's AccessRights are not known (enrolled through another CA); "
                f"{name} needs {rights.describe(prepared.rights)}"
            )
    elif lacking := rights.missing(prepared.rights, target.access_rights, mac=mac):
        return f"{name} needs {rights.describe(lacking)}, which this enrollment lacks"
    return None


def _os_x_refusal(spec: CommandSpec, target: Target, fitted: Fitted) -> str | None:
    """Why OS X cannot take the command on this channel (Table 10), or None; partial support
    only warns, with the spec's note."""
    name = spec.request_type
    if spec.mac is MacSupport.NONE:
        return f"OS X does not support {name} (Table 10)"
    if spec.mac_channel == "device" and target.is_user:
        return f"on OS X, {name} goes to the device channel, not a user's"
    if spec.mac_channel == "user" and not target.is_user:
        return f"on OS X, {name} goes to a user channel, not the device's"
    if spec.mac is MacSupport.PARTIAL:
        fitted.warnings.append(f"{name}: {spec.mac_note}")
    return None


def fit(prepared: Prepared, target: Target) -> Fitted:
    """The command as it is sent to ``target``, or the reason it cannot be."""
    if target.state not in QUEUEABLE_STATES:
        return Fitted(None, f"the enrollment is {target.state.replace('_', ' ')}")
    command = dict(prepared.command)
    fitted = Fitted(command)
    spec = prepared.spec
    if spec is None:
        return fitted
    name = spec.request_type
    mac = target.platform is Platform.MACOS
    refusal = _rights_refusal(prepared, target, name, mac, fitted)
    if refusal is None and mac:
        refusal = _os_x_refusal(spec, target, fitted)
    if refusal is not None:
        return Fitted(None, refusal)
    if spec.supervised_only and target.supervised is not True:
        fitted.warnings.append(
            f"{name} works on supervised devices only, and this one is not known to be"
        )
    if spec.fit is not None:
        spec.fit(command, target, fitted)
    return fitted

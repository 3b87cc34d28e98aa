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
from mdmappliance.commands.availability import OS_X_2014, is_2014_mac, judge, judge_keys, os_of
from mdmappliance.commands.base import (
    BuildContext,
    Checker,
    CommandSpec,
    Fitted,
    MacSupport,
    Target,
    no_keys,
)
from mdmappliance.commands.errors import CommandInvalid
from mdmappliance.commands.schema_check import SchemaCheck, check_keys
from mdmappliance.mdm.platforms import Platform
from mdmappliance.mdm.schema import RequestSchema, apple_schema

#: The request types the spec (and the catalog's families) give rules beyond Apple's schema.
FAMILY_SPECS: dict[str, CommandSpec] = {
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


#: The family of the request types only Apple's schema describes.
SCHEMA_ONLY = "apple"


def _schemas() -> dict[str, RequestSchema]:
    """Apple's schema of every request type, with what the 2014 reference adds to it."""
    schemas = dict(apple_schema().commands)
    for request_type, path, keys in (
        ("Settings", "Settings", settings.SPEC_ONLY_ITEMS),
        ("InstallApplication", "Options", apps.SPEC_ONLY_OPTIONS),
    ):
        schemas[request_type] = schemas[request_type].extended(path, keys)
    return schemas


def _from_schema(schema: RequestSchema) -> CommandSpec:
    """A request type the spec does not describe: Apple's schema is all its rules."""
    needs = rights.of_schema(s.access_rights for s in schema.support.values())
    return CommandSpec(schema.name, SCHEMA_ONLY, no_keys, rights=needs)


SCHEMAS = _schemas()
#: Every request type Apple's schema defines (and any the spec adds).
CATALOG: dict[str, CommandSpec] = {
    **{name: _from_schema(schema) for name, schema in sorted(SCHEMAS.items())},
    **FAMILY_SPECS,
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
                f"RequestType {request_type!r} is not a request type of Apple's schema "
                f"or the spec (known: {', '.join(sorted(CATALOG))})"
            ]
        )
    checker = Checker(description, "", context)
    spec.build(checker)
    given = {k: v for k, v in description.items() if k != "RequestType"}
    check = SchemaCheck()
    keys = check_keys(
        SCHEMAS[request_type].keys,
        overlaid(given, checker.out),
        "",
        check,
        filled_here=spec.filled_here,
    )
    problems = [*checker.problems, *check.problems(checker.problem_paths)]
    if problems:
        raise CommandInvalid(problems)
    command = {"RequestType": request_type, **keys}
    try:
        plistlib.dumps(command, fmt=plistlib.FMT_XML)
    except (TypeError, OverflowError, ValueError) as e:
        # Free-form dictionaries (Configuration, ...) may hold what a plist cannot: null,
        # integers beyond 64 bits.
        raise CommandInvalid([f"the command is not a property list: {e}"]) from None
    warnings = tuple(dict.fromkeys([*checker.warnings, *check.warnings]))
    return Prepared(spec, command, warnings, spec.needed_rights(command, context))


def overlaid(given: Any, built: Any) -> Any:
    """The caller's keys with the family's checked values laid over them, at every level,
    so that a key a family rule did not read is still there for the schema to judge."""
    if isinstance(given, Mapping) and isinstance(built, Mapping):
        merged = dict(given)
        for key, value in built.items():
            merged[key] = overlaid(given.get(key), value) if key in given else value
        return merged
    if isinstance(given, list | tuple) and isinstance(built, list) and len(given) == len(built):
        return [overlaid(g, b) for g, b in zip(given, built, strict=True)]
    return built


def _rights_refusal(
    prepared: Prepared, target: Target, name: str, mac: bool, fitted: Fitted
) -> str | None:
    """Why the enrollment's AccessRights forbid command ``name``, or None. Rights that are
    not known (another CA enrolled it) only warn. A request type only Apple's schema
    describes needs the right it names for the target's OS."""
    needed = prepared.rights
    found = os_of(target)
    if prepared.spec is not None and prepared.spec.family == SCHEMA_ONLY and found:
        support = SCHEMAS[name].support.get(found[0])
        needed = rights.of_schema([support.access_rights if support else None])
    if target.access_rights is None:
        if needed:
            fitted.warnings.append(
                "this enrollment's AccessRights are not known (enrolled through another CA); "
                f"{name} needs {rights.describe(needed)}"
            )
    elif lacking := rights.missing(needed, target.access_rights, mac=mac):
        return f"{name} needs {rights.describe(lacking)}, which this enrollment lacks"
    return None


def _os_x_refusal(spec: CommandSpec, target: Target, fitted: Fitted) -> str | None:
    """Why OS X cannot take the command on this channel (Table 10), or None; partial support
    only warns, with the spec's note. Table 10 is true of the OS X versions of 2014: for a
    later macOS, Apple's schema decides; for a Mac of unknown version, Table 10 warns."""
    name = spec.request_type
    refusal = None
    if spec.mac is MacSupport.NONE:
        refusal = f"OS X 10.9 does not support {name} (Table 10)"
    elif spec.mac_channel == "device" and target.is_user:
        refusal = f"on OS X 10.9, {name} goes to the device channel, not a user's (Table 10)"
    elif spec.mac_channel == "user" and not target.is_user:
        refusal = f"on OS X 10.9, {name} goes to a user channel, not the device's (Table 10)"
    old_mac = is_2014_mac(target)
    if old_mac:
        if refusal is None and spec.mac is MacSupport.PARTIAL:
            fitted.warnings.append(f"{name}: {spec.mac_note}")
        return refusal
    if refusal is not None and old_mac is None:
        fitted.warnings.append(
            f"{refusal}; this Mac's OS version is not known, and later macOS supports it"
        )
    return None


def _availability(
    spec: CommandSpec, command: dict[str, Any], target: Target, fitted: Fitted
) -> str | None:
    """Why the target's OS cannot take the command or one of its keys (Apple's schema), or
    None; keys a platform ignores by the spec are dropped there, with a warning."""
    schema = SCHEMAS[spec.request_type]
    spec_says = is_2014_mac(target) and spec.family != SCHEMA_ONLY
    if spec_says:
        # The spec (Table 10, its key tables) is true of an OS X of 2014: Apple's schema
        # only adds the version a 2014 request type came with (InstallApplication, 10.9).
        mac = schema.support.get("macOS")
        if mac is None or mac.introduced is None or mac.introduced[:2] > OS_X_2014:
            return None
    verdict = judge(spec.request_type, schema.support, target)
    fitted.warnings.extend(verdict.warnings)
    if verdict.refusal is not None or spec_says:
        return verdict.refusal
    for _path, key, verdict in list(judge_keys(schema, command, target)):
        if verdict.refusal is not None and key in spec.ignored_where_unsupported:
            del command[key]
            fitted.warnings.append(f"{verdict.refusal}: it is left out for this device")
            continue
        if verdict.refusal is not None:
            return verdict.refusal
        fitted.warnings.extend(verdict.warnings)
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
    if refusal is None:
        refusal = _availability(spec, command, target, fitted)
    if refusal is not None:
        return Fitted(None, refusal)
    if spec.supervised_only and target.supervised is not True:
        fitted.warnings.append(
            f"{name} works on supervised devices only, and this one is not known to be"
        )
    if spec.fit is not None:
        spec.fit(command, target, fitted)
    fitted.warnings = list(dict.fromkeys(fitted.warnings))
    return fitted

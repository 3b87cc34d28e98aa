"""InviteToProgram: invite the user to a volume purchasing program (iOS 7, OS X 10.9)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mdmappliance.commands import rights
from mdmappliance.commands.base import Checker, CommandSpec, Outcome, ResultInvalid, https_url

PROGRAMS = ("com.apple.cloudvpp",)
INVITATION_RESULTS = ("Acknowledged", "InvalidProgramID", "InvalidInvitationURL")


def build(checker: Checker) -> None:
    checker.string("ProgramID", required=True, choices=PROGRAMS)
    checker.string("InvitationURL", required=True, max_len=2048, check=https_url)


def parse(result: Mapping[str, Any], command: Mapping[str, Any]) -> Outcome:
    value = result.get("InvitationResult")
    if value not in INVITATION_RESULTS:
        raise ResultInvalid(f"InvitationResult must be one of {', '.join(INVITATION_RESULTS)}")
    return Outcome(summary={"InvitationResult": value})


SPECS = (
    CommandSpec(
        "InviteToProgram",
        "vpp",
        build,
        rights=rights.APP_MANAGEMENT,
        parse=parse,
    ),
)

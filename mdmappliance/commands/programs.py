"""InviteToProgram: invite the user to a volume purchasing program (iOS 7, OS X 10.9)."""

from __future__ import annotations

from mdmappliance.commands import rights
from mdmappliance.commands.base import Checker, CommandSpec, https_url, one_answer

PROGRAMS = ("com.apple.cloudvpp",)
INVITATION_RESULTS = ("Acknowledged", "InvalidProgramID", "InvalidInvitationURL")


def build(checker: Checker) -> None:
    checker.string("ProgramID", required=True, choices=PROGRAMS)
    checker.string("InvitationURL", required=True, max_len=2048, check=https_url)


SPECS = (
    CommandSpec(
        "InviteToProgram",
        "vpp",
        build,
        rights=rights.APP_MANAGEMENT,
        parse=one_answer("InvitationResult", INVITATION_RESULTS),
    ),
)

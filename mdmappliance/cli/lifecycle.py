"""``mdmappliance enroll-link`` and ``mdmappliance device``: enrollment links and the end of
a device's management (revoke, retire), over the admin API like every fleet command."""

from __future__ import annotations

import argparse
import json
import sys
import urllib.parse
from typing import Any

from mdmappliance.cli.client import AdminClient, APIError
from mdmappliance.cli.failure import fail
from mdmappliance.config import load_config
from mdmappliance.enrollment.links import parse_duration


def cmd_link_create(args: argparse.Namespace) -> int:
    if args.expires:
        try:
            parse_duration(args.expires)
        except ValueError as e:
            return fail(f"--expires: {e}", 2)
    body: dict[str, Any] = {"note": args.note or ""}
    if args.expires:
        body["expires"] = args.expires
    link = AdminClient.from_config(args.config).call("POST", "/v1/enrollment-tokens", body)
    if args.json:
        print(json.dumps(link))
    else:
        print(link["url"])
        print(f"link {link['id']}, single use, expires {link['expires_at']}")
    if not load_config(args.config).push_topic():
        print(
            "warning: this link answers 503 until a push certificate is imported "
            "(mdmappliance pushcert import) or [device] topic is set: profiles need a topic",
            file=sys.stderr,
        )
    return 0


def cmd_link_list(args: argparse.Namespace) -> int:
    links = AdminClient.from_config(args.config).call("GET", "/v1/enrollment-tokens")
    fields = ("id", "status", "created_at", "expires_at", "used_at", "note")
    rows = [{key: link[key] for key in fields} for link in links["enrollment_tokens"]]
    if args.json:
        print(json.dumps(rows))
        return 0
    print(f"{'ID':>5}  {'STATUS':8}  {'EXPIRES':24}  NOTE")
    for row in rows:
        print(f"{row['id']:>5}  {row['status']:8}  {row['expires_at']:24}  {row['note']}")
    return 0


def cmd_link_revoke(args: argparse.Namespace) -> int:
    try:
        AdminClient.from_config(args.config).call("DELETE", f"/v1/enrollment-tokens/{args.id}")
    except APIError as e:
        if e.status != 404:
            raise
        return fail(f"link {args.id} does not exist, or was already used or revoked", 1)
    print(f"link {args.id} revoked")
    return 0


def _device_path(udid: str, action: str) -> str:
    return f"/v1/devices/{urllib.parse.quote(udid, safe='')}/{action}"


def cmd_device_revoke(args: argparse.Namespace) -> int:
    try:
        result = AdminClient.from_config(args.config).call(
            "POST", _device_path(args.udid, "revoke")
        )
    except APIError as e:
        if e.status != 404:
            raise
        return fail(f"no unrevoked identity is bound to {args.udid}", 1)
    count = result["revoked_identities"]
    print(f"{args.udid}: {count} identity certificate(s) revoked; its requests are refused")
    return 0


def cmd_device_retire(args: argparse.Namespace) -> int:
    result = AdminClient.from_config(args.config).call(
        "POST", _device_path(args.udid, "retire"), {"now": args.now}
    )
    if result["command_uuid"]:
        print(
            f"{args.udid}: RemoveProfile queued ({result['command_uuid']}); the device is "
            "retired when it answers, and gets 401 from then on"
        )
    else:
        print(f"{args.udid}: retired; it gets 401 from now on")
    return 0


def add_parsers(sub: Any, default_config: str) -> None:
    link = sub.add_parser("enroll-link", help="one-time enrollment links")
    link_sub = link.add_subparsers(dest="link_command", required=True, metavar="ACTION")
    create = link_sub.add_parser("create", help="make a new single-use link")
    create.add_argument(
        "--expires", help="lifetime like 30m, 12h, 7d (default [enrollment] link_days)"
    )
    create.add_argument("--note", help="a note for the list (whose device, ticket number)")
    create.set_defaults(func=cmd_link_create)
    listing = link_sub.add_parser("list", help="list links and their status")
    listing.set_defaults(func=cmd_link_list)
    revoke = link_sub.add_parser("revoke", help="revoke an unused link")
    revoke.add_argument("id", type=int)
    revoke.set_defaults(func=cmd_link_revoke)
    for command in (create, listing, revoke):
        command.add_argument("--config", default=default_config, help=f"default {default_config}")
        command.add_argument("--json", action="store_true", help="machine-readable output")


def add_device_actions(device_sub: Any, default_config: str) -> None:
    """``devices revoke`` and ``devices retire`` (the ``devices`` group is ``fleet``'s)."""
    revoke_device = device_sub.add_parser("revoke", help="refuse the device's identities")
    revoke_device.add_argument("udid")
    revoke_device.set_defaults(func=cmd_device_revoke)
    retire = device_sub.add_parser(
        "retire", help="remove the MDM profile (RemoveProfile), then answer 401"
    )
    retire.add_argument("udid")
    retire.add_argument(
        "--now",
        action="store_true",
        help="retire at once, without waiting for RemoveProfile's answer",
    )
    retire.set_defaults(func=cmd_device_retire)
    for command in (revoke_device, retire):
        command.add_argument("--config", default=default_config, help=f"default {default_config}")

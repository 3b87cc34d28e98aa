"""``mdmappliance dep``: the DEP key pair and server token (files, offline), and the sync,
devices, profiles and disown (over the admin API, like every fleet command)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from mdmappliance import pki
from mdmappliance.cli.client import AdminClient
from mdmappliance.cli.failure import fail, file_problem
from mdmappliance.core.timestamps import utc_timestamp
from mdmappliance.dep.profiles import ProfileInvalid, read_profile_file
from mdmappliance.dep.token import (
    ServerToken,
    TokenError,
    make_keypair,
    parse_token_file,
    read_token,
    store_token,
)
from mdmappliance.store import Tx


def cmd_keypair(args: argparse.Namespace) -> int:
    from mdmappliance.config import load_config

    d = load_config(args.config).dep
    if d.key_file.exists() and not args.force:
        return fail(
            f"{d.key_file} exists: a new key pair cannot decrypt tokens made for the certificate "
            "already uploaded to Apple (--force replaces it)"
        )
    make_keypair(d.key_file, d.cert_file, f"mdmappliance DEP ({Path(args.config).name})")
    print(f"DEP key pair written: {d.key_file} (0600, it never leaves this box)")
    print(f"Upload {d.cert_file} to your MDM server in Apple Business Manager, then run")
    print("  mdmappliance dep token import <the downloaded .p7m>")
    return 0


def cmd_token_import(args: argparse.Namespace) -> int:
    from mdmappliance.cli.offline import cli_actor, offline_store
    from mdmappliance.config import load_config

    config = load_config(args.config)
    d = config.dep
    try:
        data = Path(args.file).read_bytes()
        key = pki.read_private_key(d.key_file) if d.key_file.exists() else None
        cert = pki.read_certificate(d.cert_file) if d.cert_file.exists() else None
        token = parse_token_file(data, key, cert)
        try:
            current = read_token(d.token_file)
        except TokenError as e:
            print(f"warning: the current token file is unreadable ({e}); replacing it")
            current = None
        if current is not None and current.consumer_key != token.consumer_key and not args.force:
            return fail(
                "this token is for another DEP server (another consumer key): importing it "
                "makes this appliance a different MDM server in Apple's eyes; devices assigned "
                "to the current one are no longer seen, synced or given profiles here (--force "
                "imports it anyway)"
            )
        store_token(d.token_file, token)
        with offline_store(config) as store:
            store.transaction_now(_record_import, token, current, cli_actor())
    except (TokenError, pki.PKIError) as e:
        return fail(str(e))
    except OSError as e:
        return fail(file_problem(e))
    print(f"DEP server token imported: {d.token_file} (0600)")
    print(f"  expires  {token.access_token_expiry} ({token.days_left():.0f} days)")
    print("The running appliance picks it up at its next sync (or `mdmappliance dep sync`).")
    return 0


def _record_import(tx: Tx, token: ServerToken, current: ServerToken | None, actor: str) -> None:
    replaced = current is not None and current.consumer_key != token.consumer_key
    if replaced:
        tx.dep.save_cursor(None, "fetch", utc_timestamp())  # another server: start over
    tx.events.record(
        "dep.token_imported",
        actor=actor,
        detail={"access_token_expiry": token.access_token_expiry, "other_server": replaced},
    )


def _print(result: Any, as_json: bool) -> None:
    if as_json:
        print(json.dumps(result))
    else:
        print(json.dumps(result, indent=2, sort_keys=True))


def cmd_sync(args: argparse.Namespace) -> int:
    _print(AdminClient.from_config(args.config).call("POST", "/v1/dep/sync"), args.json)
    return 0


def cmd_devices(args: argparse.Namespace) -> int:
    client = AdminClient.from_config(args.config)
    page = client.call("GET", "/v1/dep/devices", after=args.after or "", limit=args.limit)
    if args.json:
        print(json.dumps(page))
        return 0
    print(f"{'SERIAL':16}  {'STATE':9}  {'PROFILE':9}  {'MODEL':16}  OP")
    for device in page["devices"]:
        print(
            f"{device['serial']:16}  {device['state']:9}  {device['profile_status'] or '-':9}  "
            f"{(device['model'] or '-')[:16]:16}  "
            f"{device['op_type'] or '-'} {device['op_date'] or ''}"
        )
    if "next" in page:
        print(f"more: --after {page['next']}", file=sys.stderr)
    return 0


def cmd_account(args: argparse.Namespace) -> int:
    _print(AdminClient.from_config(args.config).call("GET", "/v1/dep/account"), args.json)
    return 0


def cmd_profile_define(args: argparse.Namespace) -> int:
    try:
        profile = read_profile_file(Path(args.file))
    except ProfileInvalid as e:
        return fail(str(e), 2)
    body = {"profile": profile, "default": args.default}
    _print(AdminClient.from_config(args.config).call("POST", "/v1/dep/profiles", body), args.json)
    return 0


def cmd_profile_assign(args: argparse.Namespace) -> int:
    path = f"/v1/dep/profiles/{args.profile_uuid}/devices"
    result = AdminClient.from_config(args.config).call("PUT", path, {"devices": args.serials})
    _print(result, args.json)
    return 0


def cmd_profile_show(args: argparse.Namespace) -> int:
    path = f"/v1/dep/profiles/{args.profile_uuid}"
    _print(AdminClient.from_config(args.config).call("GET", path), args.json)
    return 0


def cmd_profile_remove(args: argparse.Namespace) -> int:
    body = {"devices": args.serials}
    result = AdminClient.from_config(args.config).call("POST", "/v1/dep/remove-profile", body)
    _print(result, args.json)
    return 0


def cmd_device(args: argparse.Namespace) -> int:
    path = f"/v1/dep/devices/{args.serial}"
    query = {"live": "true"} if args.live else {}
    _print(AdminClient.from_config(args.config).call("GET", path, **query), args.json)
    return 0


def cmd_profiles(args: argparse.Namespace) -> int:
    _print(AdminClient.from_config(args.config).call("GET", "/v1/dep/profiles"), args.json)
    return 0


def cmd_disown(args: argparse.Namespace) -> int:
    if not args.yes:
        return fail(
            "disowning is for good: Apple forgets these devices for your organization (only "
            "Apple's support undoes it); add --yes to do it",
            2,
        )
    body = {"devices": args.serials, "confirm": "disown"}
    _print(AdminClient.from_config(args.config).call("POST", "/v1/dep/disown", body), args.json)
    return 0


def add_parser(sub: Any, default_config: str) -> None:
    dep = sub.add_parser("dep", help="Apple's Device Enrollment Program")
    actions = dep.add_subparsers(dest="dep_command", required=True, metavar="ACTION")
    commands = []
    keypair = actions.add_parser(
        "keypair", help="make the key pair whose certificate goes to Apple"
    )
    keypair.add_argument("--force", action="store_true", help="replace an existing key pair")
    keypair.set_defaults(func=cmd_keypair)
    token = actions.add_parser("token", help="the DEP server token")
    token_actions = token.add_subparsers(dest="token_command", required=True, metavar="ACTION")
    imp = token_actions.add_parser("import", help="install the .p7m (or JSON) from Apple's portal")
    imp.add_argument("file")
    imp.add_argument("--force", action="store_true", help="accept a token for another DEP server")
    imp.set_defaults(func=cmd_token_import)
    commands += [keypair, imp]
    sync = actions.add_parser("sync", help="run the device sync now")
    sync.set_defaults(func=cmd_sync)
    devices = actions.add_parser("devices", help="the DEP devices assigned to this server")
    devices.add_argument("--after", help="list serials after this one")
    devices.add_argument("--limit", type=int, default=100)
    devices.set_defaults(func=cmd_devices)
    account = actions.add_parser("account", help="Apple's account details for this server")
    account.set_defaults(func=cmd_account)
    profiles = actions.add_parser("profiles", help="the DEP profiles defined here")
    profiles.set_defaults(func=cmd_profiles)
    profile = actions.add_parser("profile", help="define or assign a DEP profile")
    profile_actions = profile.add_subparsers(
        dest="profile_command", required=True, metavar="ACTION"
    )
    define = profile_actions.add_parser("define", help="define a profile from a JSON file")
    define.add_argument("file")
    define.add_argument("--default", action="store_true", help="assign it to devices without one")
    define.set_defaults(func=cmd_profile_define)
    assign = profile_actions.add_parser("assign", help="assign a profile to devices")
    assign.add_argument("profile_uuid")
    assign.add_argument("serials", nargs="+")
    assign.set_defaults(func=cmd_profile_assign)
    show = profile_actions.add_parser("show", help="a profile as Apple holds it")
    show.add_argument("profile_uuid")
    show.set_defaults(func=cmd_profile_show)
    remove = profile_actions.add_parser("remove", help="remove the profile from devices")
    remove.add_argument("serials", nargs="+")
    remove.set_defaults(func=cmd_profile_remove)
    device = actions.add_parser("device", help="one DEP device")
    device.add_argument("serial")
    device.add_argument("--live", action="store_true", help="also Apple's Device Details now")
    device.set_defaults(func=cmd_device)
    disown = actions.add_parser("disown", help="disown devices for good")
    disown.add_argument("serials", nargs="+")
    disown.add_argument("--yes", action="store_true", help="yes, for good")
    disown.set_defaults(func=cmd_disown)
    api = (sync, devices, device, account, profiles, define, assign, show, remove, disown)
    for command in api:
        command.add_argument("--json", action="store_true", help="print JSON")
    for command in (*commands, *api):
        command.add_argument("--config", default=default_config, help=f"default {default_config}")

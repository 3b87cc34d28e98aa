"""``mdmappliance vpp``: the sToken (a file, offline), and the sync, users and licenses
(over the admin API, like every fleet command)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from mdmappliance.cli.client import AdminClient
from mdmappliance.cli.failure import fail
from mdmappliance.store import Tx
from mdmappliance.vpp.token import SToken, STokenError, parse_stoken, store_stoken


def cmd_token_import(args: argparse.Namespace) -> int:
    from mdmappliance.cli.offline import cli_actor, offline_store
    from mdmappliance.config import load_config

    config = load_config(args.config)
    try:
        token = parse_stoken(Path(args.file).read_bytes())
        if token.days_left() < 0:
            return fail(
                f"this sToken expired on {token.exp_date}: download a new one from the VPP portal"
            )
        store_stoken(config.vpp.token_file, token)
        with offline_store(config) as store:
            store.transaction_now(_record_import, token, cli_actor())
    except (STokenError, OSError) as e:
        return fail(str(e))
    print(f"VPP sToken imported for {token.org_name}: {config.vpp.token_file} (0600)")
    print(f"  expires  {token.exp_date} ({token.days_left():.0f} days)")
    print("The running appliance picks it up at its next sync (or `mdmappliance vpp sync`).")
    return 0


def _record_import(tx: Tx, token: SToken, actor: str) -> None:
    tx.events.record(
        "vpp.token_imported",
        actor=actor,
        detail={"org_name": token.org_name, "exp_date": token.exp_date},
    )


def _print(result: Any, as_json: bool) -> None:
    print(json.dumps(result) if as_json else json.dumps(result, indent=2, sort_keys=True))


def _call(args: argparse.Namespace, method: str, path: str, body: Any = None, **query: Any) -> int:
    _print(AdminClient.from_config(args.config).call(method, path, body, **query), args.json)
    return 0


def cmd_sync(args: argparse.Namespace) -> int:
    return _call(args, "POST", "/v1/vpp/sync")


def cmd_users(args: argparse.Namespace) -> int:
    return _call(args, "GET", "/v1/vpp/users", after=args.after, limit=args.limit)


def cmd_licenses(args: argparse.Namespace) -> int:
    return _call(
        args, "GET", "/v1/vpp/licenses", after=args.after, limit=args.limit, user_id=args.user_id
    )


def cmd_register(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"udid": args.udid, "invite": not args.no_invite}
    if args.email:
        body["email"] = args.email
    return _call(args, "POST", "/v1/vpp/users", body)


def cmd_retire(args: argparse.Namespace) -> int:
    return _call(args, "POST", f"/v1/vpp/users/{args.user_id}/retire")


def cmd_edit(args: argparse.Namespace) -> int:
    return _call(args, "POST", f"/v1/vpp/users/{args.user_id}/edit", {"email": args.email})


def cmd_associate(args: argparse.Namespace) -> int:
    return _call(
        args, "POST", f"/v1/vpp/licenses/{args.license_id}/associate", {"user_id": args.user_id}
    )


def cmd_install(args: argparse.Namespace) -> int:
    body = {"udid": args.udid, "adam_id": args.adam_id}
    return _call(args, "POST", "/v1/vpp/install", body)


def cmd_disassociate(args: argparse.Namespace) -> int:
    return _call(args, "POST", f"/v1/vpp/licenses/{args.license_id}/disassociate")


def add_parser(sub: Any, default_config: str) -> None:
    vpp = sub.add_parser("vpp", help="Apple's Volume Purchase Program (app licenses)")
    actions = vpp.add_subparsers(dest="vpp_command", required=True, metavar="ACTION")
    token = actions.add_parser("token", help="the VPP sToken")
    token_actions = token.add_subparsers(dest="token_command", required=True, metavar="ACTION")
    imp = token_actions.add_parser("import", help="install the sToken file from the VPP portal")
    imp.add_argument("file")
    imp.set_defaults(func=cmd_token_import)
    sync = actions.add_parser("sync", help="run the VPP sync now")
    sync.set_defaults(func=cmd_sync)
    users = actions.add_parser("users", help="the VPP users")
    licenses = actions.add_parser("licenses", help="the VPP licenses")
    for listing in (users, licenses):
        listing.add_argument("--after", type=int, default=0)
        listing.add_argument("--limit", type=int, default=100)
    licenses.add_argument("--user-id", type=int, default=None)
    users.set_defaults(func=cmd_users)
    licenses.set_defaults(func=cmd_licenses)
    register = actions.add_parser("register", help="register the VPP user of an enrolled device")
    register.add_argument("udid")
    register.add_argument("--email")
    register.add_argument("--no-invite", action="store_true", help="do not send InviteToProgram")
    register.set_defaults(func=cmd_register)
    retire = actions.add_parser("retire", help="retire a VPP user (revocable licenses go back)")
    retire.add_argument("user_id", type=int)
    retire.set_defaults(func=cmd_retire)
    edit = actions.add_parser("edit", help="change a VPP user's email")
    edit.add_argument("user_id", type=int)
    edit.add_argument("--email", required=True)
    edit.set_defaults(func=cmd_edit)
    associate = actions.add_parser("associate", help="assign a license to a VPP user")
    associate.add_argument("license_id", type=int)
    associate.add_argument("user_id", type=int)
    associate.set_defaults(func=cmd_associate)
    disassociate = actions.add_parser("disassociate", help="take a license back")
    disassociate.add_argument("license_id", type=int)
    disassociate.set_defaults(func=cmd_disassociate)
    install = actions.add_parser(
        "install", help="assign a license to a device's user, then InstallApplication"
    )
    install.add_argument("udid")
    install.add_argument("adam_id", type=int, help="the app's iTunes Store ID")
    install.set_defaults(func=cmd_install)
    api = (sync, users, licenses, register, retire, edit, associate, disassociate, install)
    for command in api:
        command.add_argument("--json", action="store_true", help="print JSON")
    for command in (imp, *api):
        command.add_argument("--config", default=default_config, help=f"default {default_config}")

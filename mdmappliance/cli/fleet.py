"""The fleet commands of ``mdmappliance``, over the local admin API: ``devices``, ``command``,
``push`` and ``events``. The URL and key come from the config file.

Tables for people, ``--json`` for scripts; any failure prints one line and exits non-zero.
"""

from __future__ import annotations

import argparse
import json
import plistlib
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mdmappliance.admin.queries import DEVICE_STATES
from mdmappliance.cli import lifecycle
from mdmappliance.cli.client import AdminClient, APIError
from mdmappliance.mdm.platforms import PLATFORMS
from mdmappliance.store.commands import FINAL
from mdmappliance.store.fleet import DEVICE_FIELDS


def _table(rows: list[dict[str, Any]], columns: Sequence[str]) -> str:
    cells = [[("" if row.get(c) is None else str(row.get(c))) for c in columns] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(line.rstrip() for line in lines)


def _print(args: argparse.Namespace, data: Any, human: str) -> None:
    print(json.dumps(data, indent=2, sort_keys=True) if args.json else human)


#: Key types of Apple's schema whose values are given as text on the command line.
TEXT_TYPES = ("string", "data", "date")


def _value(request_type: str, name: str, raw: str) -> Any:
    """A ``--Key value`` typed by the catalog: text for a string key (``--PIN 123456`` stays
    the string it must be), JSON for numbers, booleans, arrays and dictionaries; for a key
    the catalog does not know, JSON where it parses, text otherwise."""
    from mdmappliance.commands.catalog import SCHEMAS

    schema = SCHEMAS.get(request_type)
    key = schema.key(name) if schema is not None else None
    if key is not None and key.type in TEXT_TYPES:
        return raw
    try:
        return json.loads(raw)
    except ValueError:
        if key is not None and key.type not in ("any",):
            raise APIError(f"--{name} is {key.type} in Apple's schema; {raw!r} is not") from None
        return raw


def command_keys(extra: list[str], request_type: str = "") -> dict[str, Any]:
    """``--Key value`` pairs after the request type, each typed as ``_value`` says."""
    keys: dict[str, Any] = {}
    i = 0
    while i < len(extra):
        token = extra[i]
        if not token.startswith("--") or len(token) < 3:
            raise APIError(f"unexpected {token!r}: command keys are given as --Key value")
        name, eq, inline = token[2:].partition("=")
        if eq:
            raw = inline
            i += 1
        else:
            if i + 1 >= len(extra):
                raise APIError(f"--{name} needs a value")
            raw = extra[i + 1]
            i += 2
        keys[name] = _value(request_type, name, raw)
    return keys


#: What ``devices show`` prints of a device, in the API's order.
SHOWN_FIELDS = (
    *(f for f in DEVICE_FIELDS if f not in ("enrollment_id", "inactive_since", "push_token_valid")),
    "access_rights",
    "unlock_token_escrowed",
)


def cmd_devices_list(args: argparse.Namespace) -> int:
    client = AdminClient.from_config(args.config)
    devices: list[dict[str, Any]] = []
    cursor: int | None = 0
    while cursor is not None:
        page = client.call(
            "GET",
            "/v1/devices",
            state=args.state,
            platform=args.platform,
            serial=args.serial,
            cursor=cursor,
            limit=1000,
        )
        devices += page["devices"]
        cursor = page["next_cursor"]
    columns = ("udid", "serial_number", "device_name", "platform", "os_version", "state")
    _print(args, devices, _table(devices, (*columns, "last_seen")) + f"\n{len(devices)} device(s)")
    return 0


def _shown(value: Any) -> str:
    """A field as people read it: "-" for nothing, yes/no for booleans."""
    if value is None or value == "":
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def cmd_devices_show(args: argparse.Namespace) -> int:
    device = AdminClient.from_config(args.config).call(
        "GET", f"/v1/devices/{urllib.parse.quote(args.udid)}"
    )
    lines = [f"{key:22} {_shown(device.get(key))}" for key in SHOWN_FIELDS]
    identity = device.get("identity") or {}
    lines.append(f"{'identity expires':22} {_shown(identity.get('not_after'))}")
    for kind, entry in sorted(device.get("inventory", {}).items()):
        count = len(entry["data"]) if isinstance(entry["data"], list | dict) else 1
        lines.append(f"{'inventory ' + kind:22} {count} item(s), reported {entry['reported_at']}")
    _print(args, device, "\n".join(lines))
    return 0


def _load_command(args: argparse.Namespace, extra: list[str]) -> dict[str, Any]:
    command: dict[str, Any] = {}
    if args.plist:
        try:
            loaded = plistlib.loads(Path(args.plist).read_bytes())
        except Exception as e:
            raise APIError(f"{args.plist} is not a property list ({e})") from None
        if not isinstance(loaded, dict):
            raise APIError(f"{args.plist} must hold a dictionary")
        command.update(loaded.get("Command", loaded))
    command.update(command_keys(extra, args.request_type))
    command["RequestType"] = args.request_type
    from mdmappliance.commands.base import json_safe

    return dict(json_safe(command))  # data as base64 text, as the API takes it


def cmd_command_send(args: argparse.Namespace, extra: list[str]) -> int:
    client = AdminClient.from_config(args.config)
    body: dict[str, Any] = {
        "command": _load_command(args, extra),
        "push": not args.no_push,
        "partial": args.partial,
        "sign_profile": args.sign_profile,
        "confirm_clear_passcode": args.confirm_clear_passcode,
        "unchecked": args.unchecked,
    }
    if args.all:
        body["all"] = True
    else:
        body["udids"] = args.udid
    result = client.call("POST", "/v1/commands", body)
    if not args.json:
        for warning in result["warnings"]:
            print(f"warning: {warning}", file=sys.stderr)
        for refusal in result["refused"]:
            print(f"refused: {refusal['udid']}: {refusal['reason']}", file=sys.stderr)
    if args.wait is None:
        human = _table(result["commands"], ("udid", "command_uuid"))
        _print(args, result, human + f"\n{len(result['commands'])} command(s) queued")
        return 0
    statuses = wait_for(client, [c["command_uuid"] for c in result["commands"]], args.wait)
    rows = [_result_row(s) for s in statuses]
    _print(args, statuses, _table(rows, ("udid", "uuid", "state", "result")))
    return 0 if all(s["state"] in FINAL for s in statuses) else 1


def wait_for(client: AdminClient, uuids: list[str], seconds: float) -> list[dict[str, Any]]:
    """Poll until every command has a final state or ``seconds`` pass. On a terminal, a
    progress bar; otherwise (a log, a pipe) one line per command as it ends. At the timeout,
    which commands are still pending, by device."""
    deadline = time.monotonic() + seconds
    done: dict[str, dict[str, Any]] = {}
    bar = sys.stderr.isatty()
    while True:
        for command_uuid in uuids:
            if command_uuid not in done:
                status = client.call("GET", f"/v1/commands/{command_uuid}")
                if status["state"] in FINAL:
                    done[command_uuid] = status
                    if not bar:
                        row = _result_row(status)
                        print(
                            f"{len(done)}/{len(uuids)} {row['udid']} {row['state']} "
                            f"{row['result']}".rstrip(),
                            file=sys.stderr,
                            flush=True,
                        )
        if bar:
            width = 30
            filled = width * len(done) // max(1, len(uuids))
            shown = "#" * filled + "-" * (width - filled)
            print(f"\r[{shown}] {len(done)}/{len(uuids)} answered", end="", file=sys.stderr)
        if len(done) == len(uuids) or time.monotonic() >= deadline:
            break
        time.sleep(0.5)
    if bar:
        print(file=sys.stderr)
    statuses = [done.get(u) or client.call("GET", f"/v1/commands/{u}") for u in uuids]
    pending = [s for s in statuses if s["state"] not in FINAL]
    if pending:
        print(
            f"still pending after {seconds:g} s ({len(pending)} of {len(uuids)}): "
            + ", ".join(f"{s['udid']} {s['uuid']} ({s['state']})" for s in pending),
            file=sys.stderr,
        )
    return statuses


def _result_row(status: dict[str, Any]) -> dict[str, Any]:
    result = status.get("result") or {}
    words = "; ".join(result.get("errors") or []) or result.get("status") or ""
    return {
        "udid": status["udid"],
        "uuid": status["uuid"],
        "state": status["state"],
        "result": words,
    }


def cmd_command_show(args: argparse.Namespace) -> int:
    status = AdminClient.from_config(args.config).call("GET", f"/v1/commands/{args.uuid}")
    lines = [
        f"{key:14} {status.get(key)}"
        for key in (
            "uuid",
            "request_type",
            "udid",
            "state",
            "created_at",
            "sent_at",
            "result_at",
            "not_now_count",
        )
    ]
    result = status.get("result") or {}
    if result:
        lines.append(f"{'result':14} {result.get('status')} at {result.get('received_at')}")
        lines += [f"{'error':14} {error}" for error in result.get("errors", [])]
        summary = {
            k: v
            for k, v in result.items()
            if k not in ("status", "received_at", "errors", "answer")
        }
        if summary:
            lines.append(f"{'summary':14} {json.dumps(summary, sort_keys=True)}")
    _print(args, status, "\n".join(lines))
    return 0


def cmd_command_list(args: argparse.Namespace) -> int:
    page = AdminClient.from_config(args.config).call(
        "GET",
        f"/v1/devices/{urllib.parse.quote(args.udid)}/commands",
        state=args.state,
        limit=args.limit,
    )
    columns = ("uuid", "request_type", "state", "created_at", "result_at", "not_now_count")
    _print(args, page, _table(page["commands"], columns))
    return 0


def cmd_command_cancel(args: argparse.Namespace) -> int:
    result = AdminClient.from_config(args.config).call("DELETE", f"/v1/commands/{args.uuid}")
    _print(args, result, f"{args.uuid}: canceled")
    return 0


def cmd_push(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"all": True} if args.all else {"udids": args.udid}
    result = AdminClient.from_config(args.config).call("POST", "/v1/push", body)
    for unknown in result.get("unknown", []):
        print(f"unknown: {unknown}", file=sys.stderr)
    count = result.get("pushed", len(result.get("requested", [])))
    _print(args, result, f"{count} device(s) pushed")
    return 1 if result.get("unknown") else 0


def cmd_events(args: argparse.Namespace) -> int:
    client = AdminClient.from_config(args.config)
    after = args.after
    if not args.json:
        print(f"{'ID':>8} {'AT':24} {'KIND':32} {'ACTOR':24} SUBJECT DETAIL")
    while True:
        page = client.call("GET", "/v1/events", after=after, limit=args.limit)
        for event in page["events"]:
            if args.json:
                print(json.dumps(event, sort_keys=True))
            else:
                detail = json.dumps(event["detail"], sort_keys=True)
                print(
                    f"{event['id']:>8} {event['at']} {event['kind']:32} {event['actor']:24} "
                    f"{event['subject'] or '-'} {detail}"
                )
        after = page["next_cursor"]
        if not args.follow:
            return 0
        time.sleep(1.0)


def add_parsers(sub: Any, default_config: str) -> None:
    devices = sub.add_parser(
        "devices",
        aliases=["device"],
        help="list, show, revoke and retire devices (over the admin API)",
    )
    dsub = devices.add_subparsers(dest="devices_command", required=True, metavar="ACTION")
    dlist = dsub.add_parser("list", help="devices, with filters")
    dlist.add_argument("--state", choices=DEVICE_STATES)
    dlist.add_argument("--platform", choices=PLATFORMS)
    dlist.add_argument("--serial")
    dlist.set_defaults(func=cmd_devices_list)
    dshow = dsub.add_parser("show", help="one device with its inventory")
    dshow.add_argument("udid")
    dshow.set_defaults(func=cmd_devices_show)
    lifecycle.add_device_actions(dsub, default_config)

    command = sub.add_parser("command", help="send, show, list and cancel commands")
    csub = command.add_subparsers(dest="command_command", required=True, metavar="ACTION")
    send = csub.add_parser(
        "send",
        help="queue a command: send RequestType (--udid U ... | --all) [--Key value ...]",
        allow_abbrev=False,
    )
    send.add_argument("request_type", help="e.g. DeviceInformation, InstallProfile, Settings")
    target = send.add_mutually_exclusive_group(required=True)
    target.add_argument("--udid", action="append", help="a target device (repeatable)")
    target.add_argument("--all", action="store_true", help="every enrolled device")
    send.add_argument("--plist", help="the command's keys from a property list file")
    send.add_argument("--no-push", action="store_true", help="queue without pushing")
    send.add_argument(
        "--partial",
        action="store_true",
        help="queue for the devices that accept it, report the others",
    )
    send.add_argument(
        "--sign-profile",
        action="store_true",
        help="InstallProfile: sign the profile with the appliance's certificate",
    )
    send.add_argument(
        "--confirm-clear-passcode",
        action="store_true",
        help="ClearPasscode: yes, the owner has the device in hand",
    )
    send.add_argument(
        "--unchecked",
        action="store_true",
        help="send a request type the catalog does not know, as given",
    )
    send.add_argument(
        "--wait",
        type=float,
        nargs="?",
        const=300.0,
        metavar="SECONDS",
        help="wait for the results (default 300 s) and show them",
    )
    send.set_defaults(func=cmd_command_send, takes_extra=True)
    show = csub.add_parser("show", help="a command's state and result (errors in plain words)")
    show.add_argument("uuid")
    show.set_defaults(func=cmd_command_show)
    clist = csub.add_parser("list", help="a device's commands")
    clist.add_argument("--udid", required=True)
    clist.add_argument("--state")
    clist.add_argument("--limit", type=int, default=100)
    clist.set_defaults(func=cmd_command_list)
    ccancel = csub.add_parser("cancel", help="cancel a command that has no result yet")
    ccancel.add_argument("uuid")
    ccancel.set_defaults(func=cmd_command_cancel)

    push = sub.add_parser("push", help="push devices so that they poll now")
    ptarget = push.add_mutually_exclusive_group(required=True)
    ptarget.add_argument("--udid", action="append")
    ptarget.add_argument("--all", action="store_true")
    push.set_defaults(func=cmd_push)

    events = sub.add_parser("events", help="the event (audit) log")
    events.add_argument("--after", type=int, default=0, help="events after this id")
    events.add_argument("--limit", type=int, default=100)
    events.add_argument("--follow", action="store_true", help="keep printing new events")
    events.set_defaults(func=cmd_events)

    for parser in (dlist, dshow, send, show, clist, ccancel, push, events):
        parser.add_argument("--config", default=default_config, help=f"default {default_config}")
        parser.add_argument("--json", action="store_true", help="machine-readable output")

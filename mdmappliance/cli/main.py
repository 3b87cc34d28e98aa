"""The ``mdmappliance`` command.

Failures an admin can act on print one line, ``mdmappliance: <what is wrong>``, and exit
non-zero (2 for a bad config or bad arguments, 1 otherwise); tracebacks are for bugs.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

from mdmappliance._version import __version__
from mdmappliance.cli import backup, dep, fleet, lifecycle, pushcert, simulate, vpp
from mdmappliance.cli.client import APIError
from mdmappliance.cli.failure import PROG, fail, file_problem
from mdmappliance.config import LOG_FORMATS, load_config, render_example
from mdmappliance.core.errors import ApplianceError

#: Where every command reads the config: ``--config``, else ``$MDMAPPLIANCE_CONFIG``, else
#: the packaged location.
CONFIG_VARIABLE = "MDMAPPLIANCE_CONFIG"
DEFAULT_CONFIG = os.environ.get(CONFIG_VARIABLE) or "/etc/mdmappliance/mdmappliance.toml"
T = TypeVar("T")


def cmd_init(args: argparse.Namespace) -> int:
    from mdmappliance.app.service import urls
    from mdmappliance.cli.installation import InitRequest, initialize

    result = initialize(
        InitRequest(
            data_dir=Path(args.data_dir),
            hostname=args.hostname,
            config_path=Path(args.config) if args.config else None,
            server_cert=Path(args.server_cert) if args.server_cert else None,
            server_key=Path(args.server_key) if args.server_key else None,
            admin_port=args.admin_port,
            device_port=args.device_port,
            enrollment_port=args.enrollment_port,
            topic=args.topic,
            force=args.force,
        )
    )
    config = result.config
    if not result.changed:
        print(
            f"Nothing to do: {config.appliance.data_dir} is already initialized; "
            "nothing was changed."
        )
    for title, lines in (
        ("Created", result.created),
        ("Replaced", result.replaced),
        ("Kept", result.kept if result.changed else []),
    ):
        for line in lines:
            print(f"{title:9} {line}")
    print()
    print("Installation:")
    rows = [
        ("config file", str(config.path)),
        ("admin API key", str(config.admin.api_key_file)),
        ("CA certificate", str(config.pki.ca_cert)),
        ("database", str(config.store.path)),
    ]
    rows += [(name, url) for name, url in urls(config).items()]
    for name, value in rows:
        print(f"  {name:15} {value}")
    for warning in config.warnings:
        print(f"warning: {warning}")
    if not config.push_topic():
        print(
            "note: no push topic yet: enrollment links answer 503 until a push certificate "
            f"is imported ({PROG} pushcert) or [device] topic is set (init --topic)"
        )
    elif config.device.topic and not config.apns.cert_file.exists():
        print(
            f"note: profiles are served with the topic {config.device.topic}; pushes need a "
            f"real push certificate for it ({PROG} pushcert): until then devices poll only "
            "when they check in"
        )
    print()
    print(f"Start it with: {PROG} serve --config {config.path}")
    print(f"Point every command at it: export {CONFIG_VARIABLE}={config.path}")
    return 0


def cmd_check_config(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    for warning in config.warnings:
        print(f"warning: {warning}")
    print(f"{config.path}: OK")
    return 0


def cmd_config_example(args: argparse.Namespace) -> int:
    sys.stdout.write(render_example())
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from mdmappliance.app.serve import serve

    return serve(Path(args.config), log_format=args.log_format)


def cmd_completion(args: argparse.Namespace) -> int:
    from mdmappliance.cli.completion import bash_script
    from mdmappliance.commands.catalog import CATALOG

    sys.stdout.write(bash_script(build_parser(), sorted(CATALOG)))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description="A self-hosted Apple MDM server (see README.md)."
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    init = sub.add_parser("init", help="create a complete installation in a data directory")
    init.add_argument("--data-dir", required=True, help="where the appliance keeps its state")
    init.add_argument("--hostname", required=True, help="the name devices reach it by")
    init.add_argument(
        "--config", help="where to write the config (default DATA_DIR/mdmappliance.toml)"
    )
    init.add_argument("--server-cert", help="your own TLS server certificate (PEM or DER)")
    init.add_argument("--server-key", help="the private key of --server-cert")
    init.add_argument("--admin-port", type=int, help="admin API port (default 9180)")
    init.add_argument("--device-port", type=int, help="device listener port (default 443)")
    init.add_argument("--enrollment-port", type=int, help="enrollment listener port (default 8444)")
    init.add_argument(
        "--topic",
        help="[device] topic (com.apple.mgmt.…): serve profiles before a push certificate "
        "is imported (the demo's; pushes need the real certificate)",
    )
    init.add_argument(
        "--force",
        action="store_true",
        help="replace existing keys and certificates (the old ones are kept aside)",
    )
    init.set_defaults(func=cmd_init)

    serve = sub.add_parser("serve", help="run the appliance in the foreground")
    serve.add_argument("--config", default=DEFAULT_CONFIG, help=f"default {DEFAULT_CONFIG}")
    serve.add_argument(
        "--log-format",
        choices=LOG_FORMATS,
        help="override [log] format: text, or one JSON object per line",
    )
    serve.set_defaults(func=cmd_serve)

    check = sub.add_parser("check-config", help="validate a config file and exit")
    check.add_argument("--config", default=DEFAULT_CONFIG, help=f"default {DEFAULT_CONFIG}")
    check.set_defaults(func=cmd_check_config)

    example = sub.add_parser("config-example", help="print the documented example config")
    example.set_defaults(func=cmd_config_example)

    completion = sub.add_parser("completion", help="print the shell completion script")
    completion.add_argument("shell", choices=("bash",))
    completion.set_defaults(func=cmd_completion)

    lifecycle.add_parsers(sub, DEFAULT_CONFIG)
    pushcert.add_parser(sub, DEFAULT_CONFIG)
    dep.add_parser(sub, DEFAULT_CONFIG)
    vpp.add_parser(sub, DEFAULT_CONFIG)
    backup.add_parsers(sub, DEFAULT_CONFIG)
    fleet.add_parsers(sub, DEFAULT_CONFIG)
    simulate.add_parser(sub, DEFAULT_CONFIG)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args: Any
    args, extra = parser.parse_known_args(argv)
    if extra and not getattr(args, "takes_extra", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        status: int = (
            args.func(args, extra) if getattr(args, "takes_extra", False) else args.func(args)
        )
    except ApplianceError as e:
        return fail(str(e), e.exit_status)
    except APIError as e:
        return fail(str(e), 1)
    except OSError as e:  # a file the command needs (an API key, a certificate): in words
        return fail(file_problem(e), 1)
    except KeyboardInterrupt:
        return fail("interrupted", 130)
    return status

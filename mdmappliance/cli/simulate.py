"""``mdmappliance simulate``: enroll simulated iPhones and Macs into the running appliance and
keep them polling, so that devices, inventory and results show without Apple hardware.

Links come from the admin API (one single-use link per device, noted ``mdmappliance
simulate``); the devices trust the appliance by its CA certificate, from the config.
"""

from __future__ import annotations

import argparse
from typing import Any

from twisted.internet import defer, task

from mdmappliance.cli.client import AdminClient
from mdmappliance.cli.failure import fail
from mdmappliance.config import load_config

MAX_DEVICES = 200


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _say(line: str) -> None:
    print(line, flush=True)


def cmd_simulate(args: argparse.Namespace) -> int:
    from mdmappliance.simulator.device import SimulatorError
    from mdmappliance.simulator.fleet import kinds_for, run_fleet

    if args.devices > MAX_DEVICES:
        return fail(f"--devices: at most {MAX_DEVICES}", 2)
    if args.macs is not None and args.macs > args.devices:
        return fail("--macs: more Macs than --devices", 2)
    config = load_config(args.config)
    client = AdminClient(
        config.admin_url(), config.read_admin_api_key(), ca_file=config.pki.ca_cert
    )
    kinds = kinds_for(args.devices, args.macs)
    links = [
        client.call(
            "POST",
            "/v1/enrollment-tokens",
            {"note": f"mdmappliance simulate: {kind.name} {n}", "expires": "1h"},
        )["url"]
        for n, kind in enumerate(kinds, start=1)
    ]
    _say(
        f"simulating {len(kinds)} devices against {config.appliance.hostname} "
        f"(polling every {args.interval:g} s; Ctrl-C stops them)"
    )
    outcome: dict[str, Any] = {}

    async def main(reactor: Any) -> None:
        try:
            await run_fleet(
                links,
                kinds,
                config.pki.ca_cert,
                _say,
                interval=args.interval,
                rounds=args.rounds,
            )
        except SimulatorError as e:
            outcome["error"] = str(e)

    status: object = 0
    try:
        task.react(lambda reactor: defer.ensureDeferred(main(reactor)))
    except SystemExit as e:  # react always ends with it, when the fleet stops or on Ctrl-C
        status = e.code
    if outcome.get("error"):
        return fail(f"a simulated device was refused: {outcome['error']}", 1)
    return int(status or 0)


def add_parser(sub: Any, default_config: str) -> None:
    simulate = sub.add_parser(
        "simulate",
        help="enroll simulated iPhones and Macs and keep them polling (no Apple hardware)",
    )
    simulate.add_argument("--config", default=default_config, help=f"default {default_config}")
    simulate.add_argument(
        "--devices", type=_positive, default=3, help="how many devices (default 3)"
    )
    simulate.add_argument(
        "--macs", type=int, help="how many of them are Macs (default one in five, at least one)"
    )
    simulate.add_argument(
        "--interval",
        type=float,
        default=5.0,
        help="seconds between polls, as a push would wake them (default 5)",
    )
    simulate.add_argument(
        "--rounds", type=_positive, help="stop after this many polls (default: until Ctrl-C)"
    )
    simulate.set_defaults(func=cmd_simulate)

"""``mdmappliance pushcert``: import the push certificate, show it, make the CSR for it, and
(for MDM vendors) sign a customer's CSR ("MDM Vendor CSR Signing Overview")."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from mdmappliance import pki
from mdmappliance.cli.failure import fail, file_problem
from mdmappliance.core.files import write_atomic
from mdmappliance.pki.pushcert import (
    ImportPlan,
    PushCertError,
    check_import,
    load_push_identity,
    make_csr,
    read_push_certificate,
    vendor_sign,
    write_push_identity,
)
from mdmappliance.store import Tx


def cmd_import(args: argparse.Namespace) -> int:
    from mdmappliance.cli.offline import cli_actor, offline_store
    from mdmappliance.config import load_config

    config = load_config(args.config)
    password = Path(args.password_file).read_bytes().strip() if args.password_file else None
    try:
        certificate, key = load_push_identity(
            Path(args.cert), Path(args.key) if args.key else None, password
        )
        with offline_store(config) as store:
            in_use = store.transaction_now(lambda tx: tx.enrollments.topics_in_use())
            plan = check_import(certificate, key, in_use, force=args.force)
            if config.device.topic and config.device.topic != plan.topic:
                raise PushCertError(
                    f"[device] topic in {config.path} is {config.device.topic!r}, not this "
                    f"certificate's {plan.topic!r}; empty it to use the certificate's topic"
                )
            write_push_identity(plan, config.apns.cert_file, config.apns.key_file)
            store.transaction_now(_record_import, plan, cli_actor())
    except PushCertError as e:
        return fail(str(e))
    except OSError as e:
        return fail(file_problem(e))
    for warning in plan.warnings:
        print(f"warning: {warning}")
    print(f"push certificate imported: topic {plan.topic}")
    print(f"  expires  {plan.certificate.not_valid_after_utc:%Y-%m-%d}")
    print(f"  written  {config.apns.cert_file} and {config.apns.key_file}")
    print("Restart the appliance (systemctl restart mdmappliance) to push with it.")
    return 0


def _record_import(tx: Tx, plan: ImportPlan, actor: str) -> None:
    tx.events.record(
        "pushcert.imported",
        actor=actor,
        detail={
            "topic": plan.topic,
            "serial": format(plan.certificate.serial_number, "x"),
            "not_after": plan.certificate.not_valid_after_utc.isoformat(),
            "warnings": list(plan.warnings),
        },
    )


def cmd_show(args: argparse.Namespace) -> int:
    from mdmappliance.config import load_config

    config = load_config(args.config)
    try:
        push = read_push_certificate(config.apns.cert_file)
    except FileNotFoundError:
        return fail(
            f"no push certificate yet ({config.apns.cert_file}): import one with "
            "`mdmappliance pushcert import CERT KEY` (README: Push notifications)"
        )
    except OSError as e:
        return fail(file_problem(e))
    except PushCertError as e:
        return fail(f"{config.apns.cert_file}: {e}")
    print(f"topic     {push.topic}")
    print(f"subject   {push.certificate.subject.rfc4514_string()}")
    print(f"expires   {push.not_after:%Y-%m-%d} ({push.days_left():.0f} days left)")
    return 0


def cmd_csr(args: argparse.Namespace) -> int:
    """The customer's side: a key pair that never leaves this machine, and the CSR."""
    out = Path(args.out)
    key_path, csr_path = out / "push-request.key", out / "push-request.csr"
    if key_path.exists() and not args.force:
        return fail(f"{key_path} exists; --force makes a new key pair (the old CSR is void)")
    key, csr = make_csr(args.common_name, args.organization)
    write_atomic(key_path, pki.private_key_pem(key), mode=0o600)
    write_atomic(csr_path, csr, mode=0o644)
    print(f"CSR       {csr_path}  (send this to your MDM vendor to sign)")
    print(f"key       {key_path}  (stays here; `pushcert import CERT {key_path}` uses it)")
    return 0


def cmd_vendor_sign(args: argparse.Namespace) -> int:
    """The vendor's side: sign a customer's CSR with the MDM vendor signing certificate."""
    try:
        vendor_cert = pki.read_certificates(Path(args.vendor_cert))[0]
        vendor_key = pki.read_private_key(Path(args.vendor_key))
        chain = [c for path in args.chain for c in pki.read_certificates(Path(path))]
        signed = vendor_sign(Path(args.csr).read_bytes(), vendor_cert, vendor_key, chain)
    except (PushCertError, pki.PKIError) as e:
        return fail(str(e))
    except OSError as e:
        return fail(file_problem(e))
    write_atomic(Path(args.out), signed.request, mode=0o644)
    print(f"PushCertWebRequest written to {args.out}")
    print("The customer uploads it at https://identity.apple.com/pushcert")
    return 0


def add_parser(sub: Any, default_config: str) -> None:
    push = sub.add_parser("pushcert", help="the APNs push certificate")
    actions = push.add_subparsers(dest="pushcert_command", required=True, metavar="ACTION")
    imp = actions.add_parser("import", help="install a push certificate (PEM pair or PKCS#12)")
    imp.add_argument("cert", help="the certificate (PEM), or a PKCS#12 file holding both")
    imp.add_argument("key", nargs="?", help="its private key (PEM); omit for PKCS#12")
    imp.add_argument("--password-file", help="file holding the PKCS#12 password")
    imp.add_argument(
        "--force",
        action="store_true",
        help="accept a topic other than the one enrolled devices use (strands them)",
    )
    imp.set_defaults(func=cmd_import)
    show = actions.add_parser("show", help="the installed push certificate")
    show.set_defaults(func=cmd_show)
    for command in (imp, show):
        command.add_argument("--config", default=default_config, help=f"default {default_config}")
    csr = actions.add_parser("csr", help="make a key pair and CSR for a new push certificate")
    csr.add_argument("--out", default=".", help="directory for push-request.key/.csr")
    csr.add_argument("--common-name", default="mdmappliance push certificate")
    csr.add_argument("--organization", default="")
    csr.add_argument("--force", action="store_true", help="replace an existing key pair")
    csr.set_defaults(func=cmd_csr)
    sign = actions.add_parser("vendor-sign", help="(MDM vendors) sign a customer's CSR")
    sign.add_argument("--csr", required=True, help="the customer's CSR (PEM or DER)")
    sign.add_argument("--vendor-cert", required=True, help="your MDM Vendor signing certificate")
    sign.add_argument("--vendor-key", required=True, help="its private key")
    sign.add_argument(
        "--chain",
        action="append",
        default=[],
        required=True,
        help="the chain to Apple's root (WWDR intermediate, Apple Root CA); repeatable",
    )
    sign.add_argument("--out", default="PushCertWebRequest", help="the request file to write")
    sign.set_defaults(func=cmd_vendor_sign)

"""``mdmappliance init``: a complete, verifiable installation, made once and then left alone."""

from __future__ import annotations

import datetime
import ipaddress
import stat
import subprocess
from pathlib import Path

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID
from twisted.trial.unittest import TestCase

from mdmappliance import pki
from mdmappliance.cli.errors import InitError
from mdmappliance.cli.installation import InitRequest, InitResult, initialize
from mdmappliance.config import load_config
from mdmappliance.store import Store
from mdmappliance.store.settings import INSTALLATION_ID
from tests.support import get_setting, run_cli

KEY_FILES = ("pki/ca.key", "pki/server.key", "admin-api-key")


def snapshot(directory: Path) -> dict[str, tuple[bytes, int]]:
    """Every file's bytes and modification time."""
    return {
        str(p.relative_to(directory)): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


def openssl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["openssl", *args], capture_output=True, text=True, timeout=60)


class Init(TestCase):
    def setUp(self) -> None:
        self.dir = Path(self.mktemp()).absolute()

    def init(
        self,
        hostname: str = "mdm.example.com",
        server_cert: Path | None = None,
        server_key: Path | None = None,
        force: bool = False,
    ) -> InitResult:
        request = InitRequest(
            data_dir=self.dir,
            hostname=hostname,
            server_cert=server_cert,
            server_key=server_key,
            force=force,
        )
        return initialize(request)

    def test_chain_verifies(self) -> None:
        self.init()
        ca_pem, server_pem = self.dir / "pki/ca.pem", self.dir / "pki/server.pem"
        ca = pki.read_certificate(ca_pem)
        server = pki.read_certificate(server_pem)
        server.verify_directly_issued_by(ca)
        result = openssl(
            "verify",
            "-CAfile",
            str(ca_pem),
            "-purpose",
            "sslserver",
            "-verify_hostname",
            "mdm.example.com",
            str(server_pem),
        )
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        self.assertIn("OK", result.stdout)
        self.assertTrue(pki.is_ca_certificate(ca))
        self.assertIn("mdm.example.com", pki.certificate_names(server))
        self.assertTrue(
            pki.key_matches_certificate(pki.read_private_key(self.dir / "pki/ca.key"), ca)
        )
        self.assertTrue(
            pki.key_matches_certificate(pki.read_private_key(self.dir / "pki/server.key"), server)
        )
        eku = server.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        self.assertIn(ExtendedKeyUsageOID.SERVER_AUTH, list(eku))
        lifetime = server.not_valid_after_utc - server.not_valid_before_utc
        self.assertLessEqual(
            lifetime,
            datetime.timedelta(days=825, minutes=5),
            "Apple refuses private-CA server certificates valid > 825 days",
        )

    def test_key_files_are_private(self) -> None:
        self.init()
        for name in KEY_FILES:
            mode = stat.S_IMODE((self.dir / name).stat().st_mode)
            self.assertEqual(mode, 0o600, name)

    def test_installation_is_complete(self) -> None:
        self.init()
        config = load_config(self.dir / "mdmappliance.toml")
        self.assertEqual(config.appliance.hostname, "mdm.example.com")
        self.assertEqual(len(config.warnings), 1, "only: no push topic configured yet")
        self.assertIn("no push topic", config.warnings[0])
        self.assertGreaterEqual(len(config.read_admin_api_key()), 32)
        store = Store(config.store.path)
        store.open()
        try:
            self.assertIsNotNone(store.transaction_now(get_setting, INSTALLATION_ID))
        finally:
            store.close()

    def test_ip_address_hostname(self) -> None:
        self.init(hostname="192.0.2.10")
        server = pki.read_certificate(self.dir / "pki/server.pem")
        san = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        self.assertEqual(
            san.get_values_for_type(x509.IPAddress), [ipaddress.ip_address("192.0.2.10")]
        )

    def test_again_changes_nothing(self) -> None:
        self.init()
        before = snapshot(self.dir)
        result = self.init()
        self.assertFalse(result.changed)
        self.assertEqual(snapshot(self.dir), before)

    def test_force_replaces_keys_and_keeps_the_old_ones(self) -> None:
        self.init()
        old_key = (self.dir / "admin-api-key").read_bytes()
        old_ca = (self.dir / "pki/ca.pem").read_bytes()
        store = Store(self.dir / "mdmappliance.db")
        store.open()
        installation = store.transaction_now(get_setting, INSTALLATION_ID)
        store.close()
        result = self.init(force=True)
        self.assertTrue(result.replaced)
        self.assertNotEqual((self.dir / "admin-api-key").read_bytes(), old_key)
        self.assertNotEqual((self.dir / "pki/ca.pem").read_bytes(), old_ca)
        aside = list((self.dir / "pki").glob("ca.key.replaced-*"))
        self.assertEqual(len(aside), 1)
        self.assertEqual(stat.S_IMODE(aside[0].stat().st_mode), 0o600)
        store = Store(self.dir / "mdmappliance.db")
        store.open()
        self.assertEqual(
            store.transaction_now(get_setting, INSTALLATION_ID),
            installation,
            "the database is never replaced",
        )
        store.close()
        load_config(self.dir / "mdmappliance.toml")

    def test_new_ca_reissues_the_server_certificate(self) -> None:
        self.init()
        (self.dir / "pki/ca.pem").unlink()
        (self.dir / "pki/ca.key").unlink()
        self.init()
        ca = pki.read_certificate(self.dir / "pki/ca.pem")
        pki.read_certificate(self.dir / "pki/server.pem").verify_directly_issued_by(ca)

    def test_half_a_pair_is_refused(self) -> None:
        self.init()
        (self.dir / "pki/ca.key").unlink()
        before = snapshot(self.dir)
        with self.assertRaises(InitError) as caught:
            self.init()
        self.assertIn("ca.key does not", str(caught.exception))
        self.assertEqual(snapshot(self.dir), before)

    def own_pair(self, hostname: str) -> tuple[Path, Path]:
        where = Path(self.mktemp()).absolute()
        where.mkdir()
        cert, key = where / "own.pem", where / "own.key"
        result = openssl(
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "30",
            "-subj",
            f"/CN={hostname}",
            "-addext",
            f"subjectAltName=DNS:{hostname}",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        )
        self.assertEqual(result.returncode, 0, result.stderr)
        return cert, key

    def test_admins_own_server_certificate(self) -> None:
        cert, key = self.own_pair("mdm.example.com")
        self.init(server_cert=cert, server_key=key)
        config = load_config(self.dir / "mdmappliance.toml")
        self.assertEqual(config.pki.server_cert, cert)
        self.assertEqual(config.pki.server_key, key)
        self.assertFalse((self.dir / "pki/server.pem").exists())

    def test_own_certificate_must_match_its_key_and_hostname(self) -> None:
        cert, _ = self.own_pair("mdm.example.com")
        _, other_key = self.own_pair("mdm.example.com")
        with self.assertRaises(InitError) as caught:
            self.init(server_cert=cert, server_key=other_key)
        self.assertIn("is not the private key of", str(caught.exception))
        cert, key = self.own_pair("elsewhere.example.com")
        with self.assertRaises(InitError) as caught:
            self.init(server_cert=cert, server_key=key)
        self.assertIn("does not name 'mdm.example.com'", str(caught.exception))
        self.assertFalse(self.dir.exists(), "nothing is created for a refused request")


class InitCommand(TestCase):
    def test_prints_where_everything_is_and_is_idempotent(self) -> None:
        data = Path(self.mktemp()).absolute()
        first = run_cli(
            "init", "--data-dir", str(data), "--hostname", "localhost", "--admin-port", "19999"
        )
        self.assertEqual(first.returncode, 0, first.stderr)
        for expected in (
            f"config file     {data}/mdmappliance.toml",
            f"admin API key   {data}/admin-api-key",
            f"CA certificate  {data}/pki/ca.pem",
            f"database        {data}/mdmappliance.db",
            "http://127.0.0.1:19999/v1/health",
        ):
            self.assertIn(expected, first.stdout)
        second = run_cli("init", "--data-dir", str(data), "--hostname", "localhost")
        self.assertEqual(second.returncode, 0, second.stderr)
        self.assertIn("Nothing to do", second.stdout)
        self.assertNotIn("Created", second.stdout)

    def test_refusal_is_one_line(self) -> None:
        data = Path(self.mktemp()).absolute()
        result = run_cli(
            "init",
            "--data-dir",
            str(data),
            "--hostname",
            "localhost",
            "--server-cert",
            "/nonexistent.pem",
        )
        self.assertEqual(result.returncode, 2)
        self.assertEqual(
            result.stderr.strip(), "mdmappliance: --server-cert and --server-key go together"
        )

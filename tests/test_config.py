"""Config loading: every class of mistake gets its own one-line message naming the key."""

from __future__ import annotations

import dataclasses
import datetime
import os
import re
import subprocess
import tomllib
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from twisted.trial.unittest import TestCase

from mdmappliance import pki
from mdmappliance.config import SECTIONS, load_config, render_config, render_example
from mdmappliance.config.errors import ConfigError
from tests.support import REPO, make_installation, run_cli, subprocess_env, twistd


class Mistakes(TestCase):
    """Each mistake an admin makes is named: the file, the key, the problem."""

    def setUp(self) -> None:
        self.dir = Path(self.mktemp())
        self.config_path = make_installation(self.dir)

    def edit(self, old: str, new: str) -> None:
        text = self.config_path.read_text()
        self.assertIn(old, text)
        self.config_path.write_text(text.replace(old, new, 1))

    def append(self, text: str) -> None:
        with self.config_path.open("a") as f:
            f.write(text)

    def set_key(self, section: str, line: str) -> None:
        self.edit(f"[{section}]\n", f"[{section}]\n{line}\n")

    def assertConfigError(self, key: str | None, pattern: str) -> ConfigError:
        with self.assertRaises(ConfigError) as caught:
            load_config(self.config_path)
        error: ConfigError = caught.exception
        self.assertEqual(error.key, key)
        self.assertRegex(error.problem, pattern)
        self.assertIn(str(self.config_path), str(error))
        self.assertNotIn("\n", str(error))
        return error

    def test_valid_installation_loads(self) -> None:
        config = load_config(self.config_path)
        self.assertEqual(config.appliance.data_dir, self.dir.absolute())
        self.assertEqual(config.store.path, self.dir.absolute() / "mdmappliance.db")
        self.assertEqual(config.admin.port, 9180)
        self.assertEqual(config.apns.cert_file, self.dir.absolute() / "push" / "push.pem")
        (warning,) = config.warnings  # the test installation has a topic but no push cert
        self.assertIn("no pushes until `mdmappliance pushcert import`", warning)

    def test_missing_file(self) -> None:
        self.config_path.unlink()
        self.assertConfigError(None, "cannot read config file: No such file")

    def test_bad_toml(self) -> None:
        self.append("\n[admin\nport = 1\n")
        self.assertConfigError(None, r"invalid TOML: .*line \d+")

    def test_not_utf8(self) -> None:
        self.config_path.write_bytes(b'[appliance]\nhostname = "\xff"\n')
        self.assertConfigError(None, "not UTF-8")

    def test_unknown_key(self) -> None:
        self.set_key("admin", "prot = 9000")
        self.assertConfigError("admin.prot", r"unknown key \(known keys: bind, port")

    def test_unknown_section(self) -> None:
        self.append("\n[adimn]\nport = 9000\n")
        self.assertConfigError("adimn", "unknown section")

    def test_section_not_a_table(self) -> None:
        text = self.config_path.read_text().replace("[log]\n", "")
        self.config_path.write_text("log = 3\n" + text)
        self.assertConfigError("log", "must be a table")

    def test_wrong_type(self) -> None:
        self.set_key("admin", 'port = "9000"')
        self.assertConfigError("admin.port", r"must be an integer, got a string \('9000'\)")

    def test_boolean_is_not_an_integer(self) -> None:
        self.set_key("store", "busy_timeout_ms = true")
        self.assertConfigError("store.busy_timeout_ms", "must be an integer, got a boolean")

    def test_out_of_range(self) -> None:
        self.set_key("admin", "port = 70000")
        self.assertConfigError("admin.port", "must be from 1 to 65535, got 70000")

    def test_bad_choice(self) -> None:
        self.set_key("store", 'synchronous = "SOMETIMES"')
        self.assertConfigError("store.synchronous", "must be one of OFF, NORMAL, FULL, EXTRA")

    def test_missing_required_key(self) -> None:
        self.edit('hostname = "localhost"', "")
        self.assertConfigError("appliance.hostname", "required key is missing")

    def test_bad_hostname(self) -> None:
        self.edit('hostname = "localhost"', 'hostname = "mdm..example.com"')
        self.assertConfigError("appliance.hostname", "not a valid DNS name")

    def test_bind_must_be_an_address(self) -> None:
        self.set_key("admin", 'bind = "localhost"')
        self.assertConfigError("admin.bind", "not an IP address")

    def test_missing_key_file(self) -> None:
        (self.dir / "pki" / "server.key").unlink()
        self.assertConfigError("pki.server_key", "server.key does not exist")

    def test_key_file_is_a_directory(self) -> None:
        (self.dir / "pki" / "server.key").unlink()
        (self.dir / "pki" / "server.key").mkdir()
        self.assertConfigError("pki.server_key", "is not a regular file")

    def test_key_file_without_permission(self) -> None:
        if os.geteuid() == 0:
            raise self.skipTest("root reads every file whatever its mode")
        (self.dir / "pki" / "server.key").chmod(0)
        self.assertConfigError("pki.server_key", "not readable")

    def test_key_file_holds_garbage(self) -> None:
        (self.dir / "pki" / "server.key").write_text("-----BEGIN PRIVATE KEY-----\nnope\n")
        self.assertConfigError("pki.server_key", "does not hold a PEM or DER private key")

    def test_certificate_key_mismatch(self) -> None:
        self.set_key("pki", 'server_key = "pki/ca.key"')
        self.assertConfigError("pki.server_key", "ca.key is not the private key of .*server.pem")

    def test_ca_must_be_a_ca(self) -> None:
        self.set_key("pki", 'ca_cert = "pki/server.pem"')
        self.set_key("pki", 'ca_key = "pki/server.key"')
        self.assertConfigError("pki.ca_cert", "not a CA certificate")

    def test_server_certificate_must_name_the_hostname(self) -> None:
        self.edit('hostname = "localhost"', 'hostname = "mdm.example.com"')
        self.assertConfigError(
            "pki.server_cert", "does not name hostname 'mdm.example.com'.*it names: localhost"
        )

    def test_short_api_key(self) -> None:
        (self.dir / "admin-api-key").write_text("short\n")
        self.assertConfigError("admin.api_key_file", "at least 32 characters")

    def test_data_dir_missing(self) -> None:
        self.edit('data_dir = "."', 'data_dir = "nowhere"')
        self.assertConfigError("appliance.data_dir", "is not a directory")

    def test_unlock_key_missing(self) -> None:
        (self.dir / "unlock-token.key").unlink()
        self.assertConfigError("device.unlock_key_file", "`mdmappliance init` creates it")

    def test_unlock_key_wrong_size(self) -> None:
        (self.dir / "unlock-token.key").write_bytes(b"short")
        self.assertConfigError("device.unlock_key_file", "exactly 32 bytes")

    def test_users_file_malformed(self) -> None:
        (self.dir / "users").write_text("cjoe:mdmappliance:not-a-hash\n")
        self.set_key("device", 'users_file = "users"')
        self.assertConfigError("device.users_file", "line 1: expected user:realm:HA1")

    def test_users_file_without_the_realm(self) -> None:
        (self.dir / "users").write_text(f"cjoe:elsewhere:{'a' * 32}\n")
        self.set_key("device", 'users_file = "users"')
        self.assertConfigError("device.users_file", "no user in realm 'mdmappliance'")

    def test_extra_ca_must_be_a_ca(self) -> None:
        self.set_key("device", 'extra_ca_files = ["pki/server.pem"]')
        self.assertConfigError("device.extra_ca_files", "not a CA")

    def test_extra_ca_must_be_an_array(self) -> None:
        self.set_key("device", 'extra_ca_files = "pki/ca.pem"')
        self.assertConfigError("device.extra_ca_files", "must be an array of paths")

    def test_topic_prefix(self) -> None:
        self.edit('topic = "com.apple.mgmt.External.test-topic"', 'topic = "com.example.push"')
        self.assertConfigError("device.topic", "start with 'com.apple.mgmt.'")

    def test_device_paths(self) -> None:
        self.set_key("device", 'checkin_path = "mdm/checkin"')
        self.assertConfigError("device.checkin_path", "must be a URL path")

    def test_proxy_needs_its_own_port(self) -> None:
        config = load_config(self.config_path)
        self.set_key("proxy", f'enabled = true\nbind = "127.0.0.1"\nport = {config.device.port}')
        self.assertConfigError("proxy.port", "needs its own port")

    def test_scep_identity_needs_scep(self) -> None:
        self.set_key("scep", "enabled = false")
        self.assertConfigError("enrollment.identity", 'is "scep" but')
        self.set_key("enrollment", 'identity = "pkcs12"')
        load_config(self.config_path)

    def test_scep_settings(self) -> None:
        self.set_key("enrollment", 'identity = "pem"')
        self.assertConfigError("enrollment.identity", "must be one of scep, pkcs12")

    def test_scep_values(self) -> None:
        for line, key, problem in (
            ('path = "/enroll/x"', "scep.path", "enrollment links' path"),
            ('path = "scep"', "scep.path", "/"),
            ("rsa_min_bits = 1024", "scep.rsa_min_bits", "from 2048"),
            ('ec_curves = ["P-521"]', "scep.ec_curves", "one of P-256, P-384"),
            ('url = "http://scep.example.com/scep"', "scep.url", "https"),
            ("challenge_hours = 0", "scep.challenge_hours", "must be from"),
        ):
            self.setUp()
            self.set_key("scep", line)
            self.assertConfigError(key, problem)

    def replace_ca(self, ca: pki.IssuedPair) -> None:
        (self.dir / "pki" / "ca.pem").write_bytes(pki.certificate_pem(ca.certificate))
        key = self.dir / "pki" / "ca.key"
        key.write_bytes(pki.private_key_pem(ca.key))

    def test_scep_needs_an_rsa_ca(self) -> None:
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "EC CA")])
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(1)
            .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256())
        )  # fmt: skip
        self.replace_ca(pki.IssuedPair(cert, key))
        self.assertConfigError("pki.ca_key", "RSA CA key")

    def test_ca_without_key_encipherment_is_a_warning(self) -> None:
        ca = pki.create_ca("old CA")
        usage = ca.certificate.extensions.get_extension_for_class(x509.KeyUsage).value
        self.assertTrue(usage.key_encipherment, "new CAs are fit for SCEP")
        old = (
            x509.CertificateBuilder().subject_name(ca.certificate.subject)
            .issuer_name(ca.certificate.subject).public_key(ca.key.public_key())
            .serial_number(2).not_valid_before(ca.certificate.not_valid_before_utc)
            .not_valid_after(ca.certificate.not_valid_after_utc)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(True, False, False, False, False, True, True, False, False),
                critical=True,
            )
            .sign(ca.key, hashes.SHA256())
        )  # fmt: skip
        self.replace_ca(pki.IssuedPair(old, ca.key))
        config = load_config(self.config_path)
        self.assertTrue(any("keyEncipherment" in w for w in config.warnings), config.warnings)

    def test_loose_key_mode_is_a_warning(self) -> None:
        (self.dir / "pki" / "server.key").chmod(0o644)
        config = load_config(self.config_path)
        (warning,) = [w for w in config.warnings if not w.startswith("apns.cert_file")]
        self.assertIn("mode 0644", warning)


def _single_line_failure(
    test: TestCase, result: subprocess.CompletedProcess[str], config_path: Path, key: str | None
) -> str:
    test.assertEqual(result.returncode, 2, result.stderr)
    lines = result.stderr.strip().splitlines()
    test.assertEqual(len(lines), 1, result.stderr)
    line = lines[0]
    test.assertTrue(line.startswith("mdmappliance: "), line)
    test.assertIn(str(config_path), line)
    if key:
        test.assertIn(key, line)
    test.assertNotIn("Traceback", result.stderr + result.stdout)
    return line


class ServiceRefusesBadConfig(TestCase):
    """``serve`` and twistd stop with exit status 2 and one line, no traceback."""

    def setUp(self) -> None:
        self.dir = Path(self.mktemp())
        self.config_path = make_installation(self.dir)

    def serve(self) -> subprocess.CompletedProcess[str]:
        return run_cli("serve", "--config", str(self.config_path))

    def test_each_class_of_mistake(self) -> None:
        base = self.config_path.read_text()
        key_path = self.dir / "pki" / "server.key"
        cases: list[tuple[str, str | None, str]] = [
            ("missing file", None, "No such file"),
            ("bad TOML", None, "invalid TOML"),
            ("unknown key", "admin.prot", "unknown key"),
            ("wrong type", "admin.port", "must be an integer"),
            ("unreadable key file", "pki.server_key", "not a regular file"),
            ("certificate/key mismatch", "pki.server_key", "is not the private key of"),
        ]
        for label, key, problem in cases:
            self.config_path.write_text(base)
            if key_path.is_dir():
                key_path.rmdir()
                (self.dir / "pki" / "server.key.saved").rename(key_path)
            if label == "missing file":
                self.config_path.unlink()
            elif label == "bad TOML":
                self.config_path.write_text(base + "\n[admin\n")
            elif label == "unknown key":
                self.config_path.write_text(base.replace("[admin]\n", "[admin]\nprot = 1\n"))
            elif label == "wrong type":
                self.config_path.write_text(base.replace("[admin]\n", '[admin]\nport = "x"\n'))
            elif label == "unreadable key file":
                key_path.rename(self.dir / "pki" / "server.key.saved")
                key_path.mkdir()
            else:
                self.config_path.write_text(
                    base.replace("[pki]\n", '[pki]\nserver_key = "pki/ca.key"\n')
                )
            line = _single_line_failure(self, self.serve(), self.config_path, key)
            self.assertIn(problem, line, label)

    def test_check_config(self) -> None:
        ok = run_cli("check-config", "--config", str(self.config_path))
        self.assertEqual(ok.returncode, 0, ok.stderr)
        self.assertIn(": OK", ok.stdout)
        text = self.config_path.read_text()
        self.config_path.write_text(text.replace("[log]\n", '[log]\nlevel = "loud"\n'))
        bad = run_cli("check-config", "--config", str(self.config_path))
        _single_line_failure(self, bad, self.config_path, "log.level")

    def test_twistd_refuses_bad_config(self) -> None:
        text = self.config_path.read_text()
        self.config_path.write_text(text.replace("[admin]\n", "[admin]\nprot = 1\n"))
        result = subprocess.run(
            [
                twistd(),
                "--nodaemon",
                "--pidfile=",
                "mdmappliance",
                "--config",
                str(self.config_path),
            ],
            capture_output=True,
            text=True,
            env=subprocess_env(),
            timeout=60,
            cwd=str(self.dir),
            stdin=subprocess.DEVNULL,
        )
        _single_line_failure(self, result, self.config_path, "admin.prot")


class Documentation(TestCase):
    """conf/mdmappliance.toml documents every key with its default, and is what the code says."""

    def test_example_is_current(self) -> None:
        shipped = (REPO / "conf" / "mdmappliance.toml").read_text()
        self.assertEqual(shipped, render_example(), "run `make conf` to regenerate it")

    def test_every_key_is_documented_with_its_default(self) -> None:
        text = render_example()
        uncommented = re.sub(r"^#(\w+ = )", r"\1", text, flags=re.MULTILINE)
        document = tomllib.loads(uncommented)
        for name, cls in SECTIONS.items():
            self.assertEqual(set(document[name]), {f.name for f in dataclasses.fields(cls)})
            for f in dataclasses.fields(cls):
                if f.default is not dataclasses.MISSING:
                    shown = document[name][f.name]
                    default = list(f.default) if isinstance(f.default, tuple) else f.default
                    self.assertEqual(str(shown), str(default), f"{name}.{f.name}")

    def test_rendered_values_round_trip(self) -> None:
        text = render_config(
            {"appliance": {"data_dir": "/x", "hostname": "h"}, "admin": {"port": 1234}}, "t"
        )
        document = tomllib.loads(text)
        self.assertEqual(document["admin"], {"port": 1234})
        self.assertEqual(document["appliance"], {"data_dir": "/x", "hostname": "h"})

"""``mdmappliance backup`` and ``restore``: an archive made while devices poll and commands
are queued brings the same fleet back in a new directory; a damaged, foreign or too-new
archive is refused in one line; a database of an old schema comes back and migrates."""

from __future__ import annotations

import hashlib
import io
import json
import os
import sqlite3
import stat
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import treq
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.client import Agent, HTTPConnectionPool

from mdmappliance.cli.backup import restore, write_backup
from mdmappliance.config import load_config
from mdmappliance.simulator.device import SimulatedDevice
from mdmappliance.store import Store, Tx
from mdmappliance.store.backup import MAX_RESTARTS, copy_live_database
from mdmappliance.store.commands import EXPIRY_DUE
from mdmappliance.store.migrate import load_migrations, migrate
from tests.support import SCHEMA_VERSION, InProcessAppliance, make_installation, run_cli


def members(archive: Path) -> dict[str, bytes]:
    with tarfile.open(archive, "r:gz") as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers()}  # type: ignore[union-attr]


def repack(archive: Path, contents: dict[str, bytes]) -> None:
    with tarfile.open(archive, "w:gz") as tar:
        for name, data in contents.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def rehash(contents: dict[str, bytes], **manifest_changes: Any) -> None:
    """Make the manifest agree with ``contents`` again (a forger's archive)."""
    manifest = json.loads(contents["manifest.json"])
    for entry in manifest["files"]:
        data = contents[entry["member"]]
        entry["sha256"], entry["size"] = hashlib.sha256(data).hexdigest(), len(data)
    manifest.update(manifest_changes)
    contents["manifest.json"] = json.dumps(manifest).encode()


def database_of(contents: dict[str, bytes]) -> str:
    (name,) = [n for n in contents if n.startswith("database/")]
    return name


class AdminAPI:
    def __init__(self, appliance: InProcessAppliance) -> None:
        self.url = appliance.config.admin_url()
        self.headers: dict[bytes | str, bytes | str] = {
            "Authorization": f"Bearer {appliance.config.read_admin_api_key()}"
        }
        self.http = treq.client.HTTPClient(
            Agent(reactor, pool=HTTPConnectionPool(reactor, persistent=False))
        )

    async def call(self, method: str, path: str, body: Any = None) -> Any:
        response = await self.http.request(method, self.url + path, json=body, headers=self.headers)
        result = await response.json()
        assert response.code in (200, 201), (response.code, result)
        return result

    async def udids(self) -> set[str]:
        listed = await self.call("GET", "/v1/devices?limit=1000")
        return {d["udid"] for d in listed["devices"]}

    async def commands(self, udid: str, state: str) -> list[str]:
        listed = await self.call("GET", f"/v1/devices/{udid}/commands?state={state}&limit=1000")
        return [c["uuid"] for c in listed["commands"]]


class BackupUnderLoad(TestCase):
    timeout = 240

    async def test_restored_appliance_serves_the_same_fleet(self) -> None:
        original = InProcessAppliance(Path(self.mktemp()))
        self.addCleanup(original.stop)
        poller, idle, other = [await original.enrolled(self) for _ in range(3)]
        api = AdminAPI(original)
        sent: dict[str, list[str]] = {d.udid: [] for d in (poller, idle, other)}
        rounds = [0]
        stop = [False]
        enough: Deferred[None] = Deferred()

        async def load() -> None:
            """Queue a command for every device and let one of them poll, until told."""
            while not stop[0]:
                queued = await api.call(
                    "POST", "/v1/commands", {"all": True, "command": {"RequestType": "DeviceLock"}}
                )
                for entry in queued["commands"]:
                    sent[entry["udid"]].append(entry["command_uuid"])
                await poller.poll()
                rounds[0] += 1
                if rounds[0] == 3:
                    enough.callback(None)

        running = Deferred.fromCoroutine(load())
        await enough
        before = {udid: list(uuids) for udid, uuids in sent.items()}
        acknowledged_before = list(poller.executed)
        out = Path(self.mktemp()).absolute()
        out.parent.mkdir(parents=True, exist_ok=True)
        # One page per step: the copy is long enough for the load to write between steps.
        report = await deferToThread(write_backup, original.config, out, step_pages=1)
        stop[0] = True
        await running
        self.assertGreater(rounds[0], 3)

        self.assertEqual(stat.S_IMODE(out.stat().st_mode), 0o600)
        self.assertIn("integrity_check ok", report.database_note)
        contents = members(out)
        manifest = json.loads(contents["manifest.json"])
        self.assertEqual(manifest["schema_version"], SCHEMA_VERSION)
        for entry in manifest["files"]:
            self.assertEqual(hashlib.sha256(contents[entry["member"]]).hexdigest(), entry["sha256"])
        await original.stop()

        data_dir = Path(self.mktemp()).absolute()
        restored_report = restore(out, data_dir)
        self.assertEqual(restored_report.schema_version, SCHEMA_VERSION)
        for key in ("pki/ca.key", "pki/server.key", "admin-api-key", "unlock-token.key"):
            self.assertEqual(stat.S_IMODE((data_dir / key).stat().st_mode), 0o600, key)
        self.assertEqual(stat.S_IMODE((data_dir / "mdmappliance.db").stat().st_mode), 0o600)
        restored = InProcessAppliance.reopen(data_dir / "mdmappliance.toml")
        self.addCleanup(restored.stop)
        self.assertEqual(restored.config.appliance.data_dir, data_dir)
        self.assertEqual(restored.config.pki.ca_key, data_dir / "pki/ca.key")
        api = AdminAPI(restored)
        self.assertEqual(await api.udids(), {poller.udid, idle.udid, other.udid})
        acknowledged = await api.commands(poller.udid, "acknowledged")
        self.assertEqual(acknowledged[: len(acknowledged_before)], acknowledged_before)

        for device in (idle, other):
            queued = await api.commands(device.udid, "queued")
            # What was queued before the backup began is there; nothing it never saw is.
            self.assertEqual(queued[: len(before[device.udid])], before[device.udid])
            self.assertEqual(queued, sent[device.udid][: len(queued)])
            # The device, with the identity it had, gets exactly those from the new place.
            again = SimulatedDevice(
                base_url=restored.base_url,
                ca_cert=restored.config.pki.ca_cert,
                identity=device.identity,
                udid=device.udid,
            )
            self.addCleanup(again.close)
            self.assertEqual(await again.poll(), queued)
        self.assertEqual(await api.commands(idle.udid, "queued"), [])


#: A writer in a process of its own, as the service is to the backup command: it gives up at
#: the first lock it cannot take at once (timeout 0), and says when it is writing steadily.
WRITER = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], timeout=0, isolation_level=None)
conn.execute("PRAGMA synchronous = OFF")
n = 0
while True:
    conn.execute("INSERT OR REPLACE INTO settings VALUES ('tick', ?, 'now')", (str(n),))
    n += 1
    if n == 200:
        print("writing", flush=True)
"""


class CopyBesideAWriter(SynchronousTestCase):
    def test_writers_are_never_blocked_and_the_copy_finishes(self) -> None:
        """A copy made one page per step beside a writer that commits without pause: every
        write between two steps restarts a stepped copy, so it ends in one step (a WAL read
        snapshot), the writer never meets a lock, and the copy is sound."""
        directory = Path(self.mktemp())
        directory.mkdir()
        live = directory / "live.db"
        store = Store(live)
        store.open()
        store.close()
        conn = sqlite3.connect(live, isolation_level=None)
        for i in range(200):
            conn.execute("INSERT INTO settings VALUES (?, ?, 'now')", (f"pad{i}", "x" * 900))
        conn.close()
        writer = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(live)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.addCleanup(writer.wait)
        self.addCleanup(writer.kill)
        self.assertEqual(writer.stdout.readline(), "writing\n")  # type: ignore[union-attr]
        copy = copy_live_database(live, directory / "copy.db", step_pages=1)
        if writer.poll() is not None:  # it met a lock: the copy blocked it
            self.fail(writer.stderr.read())  # type: ignore[union-attr]
        self.assertLessEqual(copy.restarts, MAX_RESTARTS + 1)
        self.assertGreater(copy.pages, 50)
        self.assertEqual(copy.schema_version, SCHEMA_VERSION)
        self.assertEqual(stat.S_IMODE((directory / "copy.db").stat().st_mode), 0o600)
        self.assertFalse((directory / "copy.db-wal").exists())
        ticks = sqlite3.connect(directory / "copy.db").execute(
            "SELECT count(*) FROM settings WHERE key = 'tick'"
        )
        self.assertEqual(ticks.fetchone(), (1,))


class Refusals(SynchronousTestCase):
    def setUp(self) -> None:
        self.config_path = make_installation(Path(self.mktemp()))
        self.archive = Path(self.mktemp()).absolute()
        self.archive.parent.mkdir(parents=True, exist_ok=True)
        self.target = Path(self.mktemp()).absolute()

    def backup(self) -> None:
        result = run_cli("backup", "--out", str(self.archive), "--config", str(self.config_path))
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn(f"Backup written: {self.archive} (mode 0600", result.stdout)

    def refused(self, *extra: str) -> str:
        """The restore's one-line refusal; the target left absent."""
        result = run_cli("restore", str(self.archive), "--data-dir", str(self.target), *extra)
        self.assertEqual(result.returncode, 1, result.stdout + result.stderr)
        lines = result.stderr.strip().splitlines()
        self.assertEqual(len(lines), 1, result.stderr)
        self.assertTrue(lines[0].startswith("mdmappliance: "), lines[0])
        return lines[0]

    def test_archive_is_created_private_whatever_the_umask(self) -> None:
        created: list[tuple[str, int]] = []
        real_open = os.open

        def spy(path: Any, flags: int, mode: int = 0o777, **kw: Any) -> int:
            if str(path).endswith(".tmp"):
                created.append((str(path), mode))
            return real_open(path, flags, mode, **kw)

        self.patch(os, "open", spy)
        old = os.umask(0)
        try:
            write_backup(load_config(self.config_path), self.archive)
        finally:
            os.umask(old)
        self.assertEqual([mode for _, mode in created], [0o600])
        self.assertEqual(stat.S_IMODE(self.archive.stat().st_mode), 0o600)
        self.assertEqual([p for p in self.archive.parent.iterdir() if p != self.archive], [])

    def test_non_empty_directory_and_existing_config_need_force(self) -> None:
        self.backup()
        self.target.mkdir()
        (self.target / "something").write_text("mine")
        line = self.refused()
        self.assertIn(f"{self.target} is not empty", line)
        self.assertEqual([p.name for p in self.target.iterdir()], ["something"])

        elsewhere = Path(self.mktemp()).absolute()
        elsewhere.write_text("an admin's config")
        self.target = Path(self.mktemp()).absolute()
        line = self.refused("--config", str(elsewhere))
        self.assertIn(f"{elsewhere} exists: add --force", line)
        self.assertEqual(elsewhere.read_text(), "an admin's config")

        result = run_cli(
            "restore", str(self.archive), "--data-dir", str(self.target), "--config",
            str(elsewhere), "--force",
        )  # fmt: skip
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(load_config(elsewhere).appliance.data_dir, self.target)

    def test_tampered_archive(self) -> None:
        self.backup()
        contents = members(self.archive)
        key = next(n for n in contents if n.endswith("ca.key"))
        contents[key] = contents[key].replace(b"A", b"B", 1)
        repack(self.archive, contents)
        line = self.refused()
        self.assertIn(f"the SHA-256 of {key} does not match its manifest", line)
        self.assertFalse(self.target.exists())

    def test_newer_schema_in_the_database(self) -> None:
        self.backup()
        contents = members(self.archive)
        forged = Path(self.mktemp())
        forged.write_bytes(contents[database_of(contents)])
        conn = sqlite3.connect(forged)
        conn.execute("PRAGMA user_version = 99")
        conn.close()
        contents[database_of(contents)] = forged.read_bytes()
        rehash(contents)
        repack(self.archive, contents)
        line = self.refused()
        self.assertIn(
            f"schema version 99, but this mdmappliance only knows up to version {SCHEMA_VERSION}",
            line,
        )
        self.assertFalse(self.target.exists())

    def test_newer_schema_in_the_manifest(self) -> None:
        self.backup()
        contents = members(self.archive)
        rehash(contents, schema_version=SCHEMA_VERSION + 1)
        repack(self.archive, contents)
        line = self.refused()
        self.assertIn(f"schema version {SCHEMA_VERSION + 1}, but this mdmappliance", line)

    def test_not_a_backup(self) -> None:
        self.archive.write_bytes(b"not a tar at all")
        self.assertIn("is not an mdmappliance backup", self.refused())
        repack(self.archive, {"hello.txt": b"hi"})
        self.assertIn("is not a readable mdmappliance backup", self.refused())


def first_release_database(path: Path) -> None:
    """A database as the first schemas that held a fleet wrote it (migrations 1 and 2: the
    foundation, then devices, enrollments, identities and the queue), with one of each row."""
    conn = sqlite3.connect(path, isolation_level=None)
    migrate(conn, load_migrations()[:2], db_path=path, backup_dir=path.parent / "backups")
    now = "2024-01-02T03:04:05.000Z"
    rows = [
        ("INSERT INTO settings VALUES ('installation_id', 'old-install', ?)", (now,)),
        ("INSERT INTO events (at, kind, actor) VALUES (?, 'appliance.initialized', 'cli')", (now,)),
        (
            "INSERT INTO devices (udid, serial_number, model, os_version, first_seen, updated_at) "
            "VALUES ('UDID-1', 'SERIAL1', 'iPhone10,3', '12.1', ?, ?)",
            (now, now),
        ),
        (
            "INSERT INTO enrollments (id, udid, topic, state, push_token, push_magic, "
            "token_valid, created_at, updated_at, enrolled_at, last_seen) VALUES (7, 'UDID-1', "
            "'com.apple.mgmt.x', 'enrolled', x'0102', 'MAGIC', 1, ?, ?, ?, ?)",
            (now, now, now, now),
        ),
        (
            "INSERT INTO identities VALUES ('ab' || hex(zeroblob(31)), 'UDID-1', 'CN=UDID-1', "
            "'CN=CA', '01', ?, '2030-01-01T00:00:00.000Z', ?, 1)",
            (now, now),
        ),
        (
            "INSERT INTO commands (id, uuid, enrollment_id, request_type, payload, state, "
            "created_at, updated_at) VALUES (1, 'CMD-QUEUED', 7, 'DeviceLock', ?, 'queued', ?, ?)",
            (b"<plist>queued</plist>", now, now),
        ),
        (
            "INSERT INTO commands (id, uuid, enrollment_id, request_type, payload, state, "
            "created_at, updated_at, result_at) VALUES (2, 'CMD-DONE', 7, 'DeviceInformation', "
            "x'00', 'acknowledged', ?, ?, ?)",
            (now, now, now),
        ),
        (
            "INSERT INTO command_results (command_id, status, raw, received_at) "
            "VALUES (2, 'Acknowledged', x'01', ?)",
            (now,),
        ),
    ]
    for statement, args in rows:
        conn.execute(statement, args)
    conn.close()


def read_back(tx: Tx) -> dict[str, Any]:
    enrollment = tx.enrollments.get("UDID-1")
    assert enrollment is not None
    pending = tx.commands.next_pending(enrollment.id, (), "2024-01-03T00:00:00.000Z")
    assert pending is not EXPIRY_DUE
    detail = tx.fleet.device("UDID-1")
    return {
        "installation": tx.settings.get("installation_id"),
        "kinds": [e.kind for e in tx.events.after(0, 10)],
        "state": enrollment.state,
        "identity": tx.enrollments.current_identity("UDID-1"),
        "pending": None if pending is None else (pending.uuid, pending.payload),
        "done": tx.commands.find("CMD-DONE"),
        "serial": None if detail is None else detail["serial_number"],
    }


class Upgrade(SynchronousTestCase):
    def test_first_schema_migrates_with_its_data(self) -> None:
        directory = Path(self.mktemp())
        directory.mkdir()
        path = directory / "old.db"
        first_release_database(path)
        store = Store(path)
        report = store.open()
        try:
            found = store.transaction_now(read_back)
        finally:
            store.close()
        self.assertEqual((report.from_version, report.to_version), (2, SCHEMA_VERSION))
        self.assertIsNotNone(report.backup)
        self.assertEqual(found["installation"], "old-install")
        self.assertEqual(found["kinds"], ["appliance.initialized"])
        self.assertEqual(found["state"], "enrolled")
        self.assertEqual(found["identity"], "ab" + "00" * 31)
        self.assertEqual(found["pending"], ("CMD-QUEUED", b"<plist>queued</plist>"))
        self.assertEqual(found["done"].state, "acknowledged")
        self.assertEqual(found["serial"], "SERIAL1")

    def test_backup_of_an_old_database_restores_and_migrates(self) -> None:
        config_path = make_installation(Path(self.mktemp()))
        config = load_config(config_path)
        config.store.path.unlink()
        first_release_database(config.store.path)
        archive = Path(self.mktemp()).absolute()
        archive.parent.mkdir(parents=True, exist_ok=True)
        write_backup(config, archive)
        target = Path(self.mktemp()).absolute()
        result = run_cli("restore", str(archive), "--data-dir", str(target))
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn(
            f"The database has schema 2; the service upgrades it to {SCHEMA_VERSION}", result.stdout
        )
        store = Store.configured(load_config(target / "mdmappliance.toml").store)
        report = store.open()
        try:
            found = store.transaction_now(read_back)
        finally:
            store.close()
        self.assertEqual(report.to_version, SCHEMA_VERSION)
        self.assertEqual(found["pending"], ("CMD-QUEUED", b"<plist>queued</plist>"))


class Relocation(SynchronousTestCase):
    def test_absolute_paths_inside_and_files_outside_the_data_directory(self) -> None:
        """An absolute path into the old data directory becomes relative; a file that lived
        outside it is restored under external/ and the config points there."""
        outside = Path(self.mktemp()).absolute()
        outside.mkdir()
        source = make_installation(Path(self.mktemp()))
        data_dir = source.parent
        (outside / "extra-ca.pem").write_bytes((data_dir / "pki/ca.pem").read_bytes())
        text = (
            source.read_text()
            .replace("[pki]\n", f'[pki]\nca_key = "{data_dir / "pki/ca.key"}"\n', 1)
            .replace(
                "[device]\n", f'[device]\nextra_ca_files = ["{outside / "extra-ca.pem"}"]\n', 1
            )
        )
        source.write_text(text)
        archive = Path(self.mktemp()).absolute()
        archive.parent.mkdir(parents=True, exist_ok=True)
        write_backup(load_config(source), archive)
        (outside / "extra-ca.pem").unlink()

        target = Path(self.mktemp()).absolute()
        report = restore(archive, target)
        config = report.config
        self.assertEqual(config.pki.ca_key, target / "pki/ca.key")
        moved = target / "external/device.extra_ca_files:0/extra-ca.pem"
        self.assertEqual(config.device.extra_ca_files, (moved,))
        self.assertEqual([e.role for e, _ in report.outside], ["device.extra_ca_files:0"])
        settings = [line for line in config.path.read_text().splitlines() if "=" in line[:40]]
        self.assertNotIn(str(data_dir), "\n".join(s for s in settings if not s.startswith("#")))

"""``mdmappliance backup`` and ``restore``: one archive that brings an installation back.

The archive is a gzipped tar: ``manifest.json`` (format, appliance and schema versions, and
every file with its SHA-256), an online copy of the database, the config file, and every key
and certificate the config names. It holds the CA key and every secret of the installation,
so it is written 0600 from its first byte, and atomically (a temp file, then a rename).

Restore unpacks into an empty data directory. The config's relative paths are taken from
``[appliance] data_dir`` (see config/), so they stay as they are and the data directory is
rewritten to the new one; an absolute path into the old data directory becomes relative; a
file that lived outside it is restored to ``DATA_DIR/external/<config key>/<name>`` and its
key points there. The SHA-256s find a damaged archive, not a forged one: anyone who can
rewrite the archive can rewrite its manifest too.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import io
import json
import os
import re
import shutil
import tarfile
import tempfile
import time
import tomllib
import typing
import zlib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, Any

from mdmappliance._version import __version__
from mdmappliance.cli.failure import PROG
from mdmappliance.cli.installation import CONFIG_MODE, CONFIG_NAME
from mdmappliance.config import SECTIONS, Config, load_config, render_config
from mdmappliance.config.model import _extra_keys
from mdmappliance.core.errors import ApplianceError
from mdmappliance.core.files import (
    PUBLIC_MODE,
    SECRET_MODE,
    fsync_directory,
    open_atomic,
    write_atomic,
)
from mdmappliance.core.timestamps import utc_timestamp
from mdmappliance.store.backup import STEP_PAGES, check_restorable, copy_live_database

FORMAT = 1
KIND = "mdmappliance-backup"
MANIFEST = "manifest.json"
DATABASE_ROLE = "store.path"
CONFIG_ROLE = "config"
#: Where files that lived outside the old data directory go in the new one.
EXTERNAL = "external"
#: Config keys holding a path as a string (the Path-typed ones are found from the schema).
STRING_PATH_KEYS = frozenset(
    {"apns.ca_file", "dep.ca_file", "vpp.ca_file", "dep.default_profile", "device.users_file"}
)
_ROLE = re.compile(r"^(config|[a-z_]+\.[a-z_]+(:[A-Za-z0-9_.-]{1,64})?)$")
_CHUNK = 1 << 20


class BackupError(ApplianceError):
    """The backup cannot be made: nothing was written to ``--out``."""


class RestoreRefused(ApplianceError):
    """The restore will not run (or cannot): the data directory was left as it was."""


@dataclass(frozen=True)
class Wanted:
    """A file of the installation, named by a config key (its role)."""

    role: str
    path: Path
    secret: bool
    required: bool


def installation_files(config: Config) -> list[Wanted]:
    """Every key, certificate and token the config names, besides the database and config.

    ``required``: the appliance does not start without it (the config's own checks insist
    on it); the others appear later (the push certificate, DEP and VPP tokens)."""
    c = config
    wanted = [
        Wanted("pki.ca_cert", c.pki.ca_cert, False, True),
        Wanted("pki.ca_key", c.pki.ca_key, True, True),
        Wanted("pki.server_cert", c.pki.server_cert, False, True),
        Wanted("pki.server_key", c.pki.server_key, True, True),
        Wanted("admin.api_key_file", c.admin.api_key_file, True, True),
        Wanted("enrollment.signing_cert", c.enrollment.signing_cert, False, True),
        Wanted("enrollment.signing_key", c.enrollment.signing_key, True, True),
        Wanted("device.unlock_key_file", c.device.unlock_key_file, True, True),
        Wanted("webhooks.secret_file", c.webhooks.secret_file, True, bool(c.webhooks.urls)),
        Wanted("apns.cert_file", c.apns.cert_file, False, False),
        Wanted("apns.key_file", c.apns.key_file, True, c.apns.cert_file.exists()),
        Wanted("dep.token_file", c.dep.token_file, True, False),
        Wanted("dep.key_file", c.dep.key_file, True, False),
        Wanted("dep.cert_file", c.dep.cert_file, False, False),
        Wanted("vpp.token_file", c.vpp.token_file, True, False),
    ]
    for name, _, path in _extra_keys(c):
        wanted.append(Wanted(f"admin.extra_keys:{name}", path, True, True))
    for index, path in enumerate(c.device.extra_ca_files):
        wanted.append(Wanted(f"device.extra_ca_files:{index}", path, False, True))
    optional = [
        ("device.users_file", c.users_file(), True),
        ("apns.ca_file", c.apns_ca_file(), False),
        ("dep.ca_file", c.dep_ca_file(), False),
        ("vpp.ca_file", c.vpp_ca_file(), False),
        ("dep.default_profile", c.dep_default_profile(), False),
    ]
    wanted += [Wanted(role, p, secret, True) for role, p, secret in optional if p is not None]
    return wanted


@dataclass(frozen=True)
class Entry:
    """One file in the archive, as the manifest lists it."""

    role: str
    member: str
    source: str
    relative: str | None
    mode: int
    size: int
    sha256: str


@dataclass(frozen=True)
class Manifest:
    appliance_version: str
    schema_version: int
    created_at: str
    hostname: str
    data_dir: str
    files: tuple[Entry, ...]
    missing: tuple[dict[str, str], ...] = ()

    def to_json(self) -> bytes:
        document = {"format": FORMAT, "kind": KIND, **dataclasses.asdict(self)}
        return json.dumps(document, indent=2, sort_keys=True).encode() + b"\n"


@dataclass
class BackupReport:
    path: Path
    manifest: Manifest
    size: int
    database_note: str


def _relative_to(path: Path, directory: Path) -> str | None:
    """``path`` inside ``directory`` as a relative POSIX path, else None."""
    try:
        inside = Path(os.path.normpath(path)).relative_to(os.path.normpath(directory))
    except ValueError:
        return None
    return inside.as_posix() if inside.parts else None


def _read_piece(wanted: Wanted) -> bytes | None:
    """The file's bytes; None when an optional one is absent (BackupError otherwise)."""
    try:
        return wanted.path.read_bytes()
    except FileNotFoundError:
        if wanted.required:
            raise BackupError(f"{wanted.role}: {wanted.path} does not exist") from None
        return None
    except OSError as e:
        raise BackupError(f"{wanted.role}: cannot read {wanted.path}: {e.strerror}") from None


def _entry(role: str, member: str, source: Path, data_dir: Path, mode: int, data: bytes) -> Entry:
    digest = hashlib.sha256(data).hexdigest()
    relative = _relative_to(source, data_dir)
    return Entry(role, member, str(source), relative, mode, len(data), digest)


def _hash_file(path: Path) -> tuple[int, str]:
    digest, size = hashlib.sha256(), 0
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


def write_backup(config: Config, out: Path, *, step_pages: int = STEP_PAGES) -> BackupReport:
    """Copy the live database, gather the config and the files it names, and write the
    archive to ``out`` (0600, atomically)."""
    out = out.absolute()
    if out.is_dir():
        raise BackupError(f"{out} is a directory; --out names the archive file")
    if not out.parent.is_dir():
        raise BackupError(f"directory {out.parent} does not exist")
    data_dir = config.appliance.data_dir
    contents: list[tuple[Entry, bytes | Path]] = []
    missing: list[dict[str, str]] = []
    config_bytes = _read_piece(Wanted(CONFIG_ROLE, config.path, False, True))
    assert config_bytes is not None
    config_entry = _entry(
        CONFIG_ROLE, f"config/{config.path.name}", config.path, data_dir, CONFIG_MODE, config_bytes
    )
    contents.append((config_entry, config_bytes))
    for wanted in installation_files(config):
        data = _read_piece(wanted)
        if data is None:
            missing.append({"role": wanted.role, "source": str(wanted.path)})
            continue
        mode = SECRET_MODE if wanted.secret else PUBLIC_MODE
        member = f"files/{wanted.role}/{wanted.path.name}"
        contents.append((_entry(wanted.role, member, wanted.path, data_dir, mode, data), data))
    work = Path(tempfile.mkdtemp(prefix=".mdmappliance-backup-", dir=out.parent))
    try:
        db = config.store.path
        copy = copy_live_database(
            db,
            work / db.name,
            busy_timeout_ms=config.store.busy_timeout_ms,
            step_pages=step_pages,
        )
        size, digest = _hash_file(copy.path)
        relative = _relative_to(db, data_dir)
        db_entry = Entry(
            DATABASE_ROLE, f"database/{db.name}", str(db), relative, SECRET_MODE, size, digest
        )
        contents.insert(0, (db_entry, copy.path))
        manifest = Manifest(
            appliance_version=__version__,
            schema_version=copy.schema_version,
            created_at=utc_timestamp(),
            hostname=config.appliance.hostname,
            data_dir=str(data_dir),
            files=tuple(entry for entry, _ in contents),
            missing=tuple(missing),
        )
        _write_archive(out, manifest, contents)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    how = (
        f"in one step after {copy.restarts} restarts (writes between steps)"
        if copy.one_step
        else f"in steps of {step_pages} pages"
    )
    note = f"schema {copy.schema_version}, {copy.pages} pages, copied {how}, integrity_check ok"
    return BackupReport(out, manifest, out.stat().st_size, note)


def _write_archive(
    out: Path, manifest: Manifest, contents: list[tuple[Entry, bytes | Path]]
) -> None:
    """The tar, in a temp file beside ``out`` created 0600, synced, then renamed over it."""
    with open_atomic(out, SECRET_MODE) as f, tarfile.open(fileobj=f, mode="w:gz") as tar:
        manifest_bytes = manifest.to_json()
        _add(tar, MANIFEST, len(manifest_bytes), 0o600, io.BytesIO(manifest_bytes))
        for entry, data in contents:
            if isinstance(data, Path):
                with data.open("rb") as source:
                    _add(tar, entry.member, entry.size, entry.mode, source)
            else:
                _add(tar, entry.member, entry.size, entry.mode, io.BytesIO(data))


def _add(tar: tarfile.TarFile, name: str, size: int, mode: int, data: IO[bytes]) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = size, mode, int(time.time())
    tar.addfile(info, data)


# Restore.


def read_manifest(tar: tarfile.TarFile, archive: Path) -> Manifest:
    """The archive's manifest, every field checked; RestoreRefused if it is not ours."""
    try:
        member = tar.getmember(MANIFEST)
        f = tar.extractfile(member)
        if f is None:
            raise KeyError(MANIFEST)
        raw = json.loads(f.read(1 << 24))
        if raw.get("kind") != KIND:
            raise ValueError("not an mdmappliance backup")
        if raw.get("format") != FORMAT:
            raise ValueError(
                f"archive format {raw.get('format')!r}, this mdmappliance reads {FORMAT}"
            )
        files = tuple(_read_entry(e) for e in raw["files"])
        manifest = Manifest(
            appliance_version=str(raw["appliance_version"]),
            schema_version=int(raw["schema_version"]),
            created_at=str(raw["created_at"]),
            hostname=str(raw["hostname"]),
            data_dir=str(raw["data_dir"]),
            files=files,
            missing=tuple(
                {"role": str(m["role"]), "source": str(m["source"])} for m in raw["missing"]
            ),
        )
    except (KeyError, ValueError, TypeError, AttributeError, tarfile.TarError) as e:
        raise RestoreRefused(f"{archive} is not a readable mdmappliance backup ({e})") from None
    roles = [e.role for e in files]
    if roles.count(DATABASE_ROLE) != 1 or roles.count(CONFIG_ROLE) != 1:
        raise RestoreRefused(f"{archive} does not hold exactly one database and one config")
    if len(set(roles)) != len(roles):
        raise RestoreRefused(f"{archive} lists a config key twice")
    return manifest


def _read_entry(raw: dict[str, Any]) -> Entry:
    entry = Entry(
        role=str(raw["role"]),
        member=str(raw["member"]),
        source=str(raw["source"]),
        relative=None if raw["relative"] is None else str(raw["relative"]),
        mode=int(raw["mode"]),
        size=int(raw["size"]),
        sha256=str(raw["sha256"]),
    )
    if not _ROLE.match(entry.role):
        raise ValueError(f"bad role {entry.role!r}")
    if entry.relative is not None:
        relative = PurePosixPath(entry.relative)
        if relative.is_absolute() or ".." in relative.parts or not relative.parts:
            raise ValueError(f"bad path {entry.relative!r}")
    name = PurePosixPath(entry.member).name
    if name in ("", ".", "..") or not re.fullmatch(r"[0-9a-f]{64}", entry.sha256):
        raise ValueError(f"bad entry {entry.member!r}")
    return entry


@dataclass
class RestorePlan:
    """Where each file of the archive goes, and the config written for the new place."""

    data_dir: Path
    config_path: Path
    force: bool
    placed: list[tuple[Entry, Path]] = field(default_factory=list)
    moved: dict[str, Path] = field(default_factory=dict)


@dataclass
class RestoreReport:
    config: Config
    manifest: Manifest
    schema_version: int
    known_version: int
    placed: list[tuple[Entry, Path]]
    outside: list[tuple[Entry, Path]]


def _destination(entry: Entry, data_dir: Path) -> Path:
    if entry.relative is not None:
        return data_dir / entry.relative
    return data_dir / EXTERNAL / entry.role / PurePosixPath(entry.member).name


def _check_target(data_dir: Path, config_path: Path, force: bool) -> None:
    if data_dir.exists() and not data_dir.is_dir():
        raise RestoreRefused(f"{data_dir} exists and is not a directory")
    if data_dir.is_dir() and any(data_dir.iterdir()) and not force:
        raise RestoreRefused(
            f"{data_dir} is not empty: restore into an empty directory, or add --force to "
            "overwrite the files the backup holds"
        )
    if config_path.exists() and not force:
        raise RestoreRefused(f"{config_path} exists: add --force to overwrite it")


def _stage(tar: tarfile.TarFile, manifest: Manifest, staging: Path, archive: Path) -> list[Path]:
    """Every file of the manifest unpacked into ``staging`` (0600), its size and SHA-256
    checked; RestoreRefused on the first that does not match."""
    staged = []
    for index, entry in enumerate(manifest.files):
        try:
            member = tar.getmember(entry.member)
            source = tar.extractfile(member) if member.isfile() else None
        except (KeyError, tarfile.TarError):
            source = None
        if source is None:
            raise RestoreRefused(
                f"{archive} does not hold {entry.member}, which its manifest lists"
            )
        target = staging / str(index)
        digest, size = hashlib.sha256(), 0
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, SECRET_MODE)
        try:
            with os.fdopen(fd, "wb") as f, source:
                while chunk := source.read(_CHUNK):
                    digest.update(chunk)
                    size += len(chunk)
                    f.write(chunk)
                f.flush()
                os.fsync(f.fileno())
        except (tarfile.TarError, EOFError, zlib.error, OSError) as e:
            raise RestoreRefused(f"{archive}: cannot unpack {entry.member} ({e})") from None
        if size != entry.size or digest.hexdigest() != entry.sha256:
            raise RestoreRefused(
                f"{archive}: the SHA-256 of {entry.member} does not match its manifest; the "
                "archive is damaged or was altered, nothing was restored"
            )
        staged.append(target)
    return staged


def _path_keys(section: str) -> dict[str, str]:
    """The keys of ``section`` that hold one path ('one') or a list of paths ('many')."""
    cls = SECTIONS[section]
    hints = typing.get_type_hints(cls)
    kinds = {}
    for f in dataclasses.fields(cls):
        if hints[f.name] is Path or f"{section}.{f.name}" in STRING_PATH_KEYS:
            kinds[f.name] = "one"
        elif hints[f.name] == tuple[Path, ...]:
            kinds[f.name] = "many"
    return kinds


def _relocate(raw: str, old_dir: Path, new_dir: Path, moved: dict[str, Path]) -> str:
    """A config path for the new data directory: where its file was restored to (relative
    to the data directory); an absolute path into the old one made relative; else as it was
    (a file the backup did not hold, e.g. a push certificate not imported yet)."""
    if not raw:
        return raw
    value = Path(raw)
    old = value if value.is_absolute() else old_dir / value
    if str(old) in moved:
        return _relative_to(moved[str(old)], new_dir) or raw
    if value.is_absolute():
        return _relative_to(old, old_dir) or raw
    return raw


def relocate_config(
    text: str, old_dir: Path, new_dir: Path, moved: dict[str, Path], header: str
) -> str:
    """The config ``text`` rewritten for ``new_dir``, as the documented file (``init``'s)."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise RestoreRefused(f"the backup's config is not valid TOML: {e}") from None

    def move(raw: str) -> str:
        return _relocate(raw, old_dir, new_dir, moved)

    for section, values in document.items():
        if section not in SECTIONS or not isinstance(values, dict):
            continue
        kinds = _path_keys(section)
        for key, value in values.items():
            if (section, key) == ("appliance", "data_dir"):
                continue
            if (section, key) == ("admin", "extra_keys"):
                values[key] = [_relocate_extra_key(v, move) for v in value]
            elif kinds.get(key) == "many":
                values[key] = [move(v) for v in value]
            elif kinds.get(key) == "one" and isinstance(value, str):
                values[key] = move(value)
    document.setdefault("appliance", {})["data_dir"] = str(new_dir)
    return render_config(document, header)


def _relocate_extra_key(entry: str, move: Any) -> str:
    name, _, rest = entry.partition(":")
    role, _, file = rest.partition(":")
    return f"{name}:{role}:{move(file)}" if file else entry


RESTORED_HEADER = """\
mdmappliance configuration, restored by `mdmappliance restore` on {date} from a backup made
{made} of {old} (mdmappliance {version}).

Every key is listed with its help text and default; a commented key is at its default.
Relative paths are taken from [appliance] data_dir. Check the file with
`mdmappliance check-config --config {path}` after editing it."""


def _plan(manifest: Manifest, data_dir: Path, config_path: Path) -> list[tuple[Entry, Path]]:
    """Each file's destination; RestoreRefused when two would land on one path."""
    planned: list[tuple[Entry, Path]] = []
    taken: dict[Path, Entry] = {}
    for entry in manifest.files:
        dest = config_path if entry.role == CONFIG_ROLE else _destination(entry, data_dir)
        other = taken.get(dest)
        if other is not None and other.sha256 != entry.sha256:
            raise RestoreRefused(f"{other.role} and {entry.role} would both be restored to {dest}")
        taken[dest] = entry
        planned.append((entry, dest))
    return planned


def restore(
    archive: Path, data_dir: Path, config_path: Path | None = None, force: bool = False
) -> RestoreReport:
    """Unpack ``archive`` into ``data_dir``, every check first: the manifest, the target,
    every SHA-256, the database's soundness and schema. Then place the files and the
    relocated config, and load the config as the service will."""
    from mdmappliance.store.backup import known_schema_version
    from mdmappliance.store.errors import DatabaseTooNew

    archive, data_dir = archive.absolute(), data_dir.absolute()
    config_path = (config_path or data_dir / CONFIG_NAME).absolute()
    try:
        # Closed by the ``with`` below; opening it apart tells "not an archive" from the rest.
        tar = tarfile.open(archive, "r:*")  # noqa: SIM115
    except OSError as e:
        raise RestoreRefused(f"cannot read {archive}: {e.strerror}") from None
    except tarfile.TarError:
        raise RestoreRefused(
            f"{archive} is not an mdmappliance backup (not a tar archive)"
        ) from None
    with tar:
        manifest = read_manifest(tar, archive)
        known = known_schema_version()
        if manifest.schema_version > known:
            raise DatabaseTooNew(
                f"{archive} holds a database of schema version {manifest.schema_version}, but "
                f"this mdmappliance only knows up to version {known}: restore it with the newer "
                "mdmappliance that wrote it"
            )
        _check_target(data_dir, config_path, force)
        planned = _plan(manifest, data_dir, config_path)
        created = not data_dir.exists()
        data_dir.mkdir(parents=True, exist_ok=True, mode=0o750)
        staging = Path(tempfile.mkdtemp(prefix=".restore-", dir=data_dir))
        try:
            staged = _stage(tar, manifest, staging, archive)
            version = _place_all(manifest, planned, staged, data_dir, config_path, archive)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            if created:
                shutil.rmtree(data_dir, ignore_errors=True)
            raise
        shutil.rmtree(staging, ignore_errors=True)
    fsync_directory(data_dir)
    outside = [(e, d) for e, d in planned if e.relative is None and e.role != CONFIG_ROLE]
    return RestoreReport(load_config(config_path), manifest, version, known, planned, outside)


def _place_all(
    manifest: Manifest,
    planned: list[tuple[Entry, Path]],
    staged: list[Path],
    data_dir: Path,
    config_path: Path,
    archive: Path,
) -> int:
    """Check the staged database, then move every file into place; its schema version."""
    by_role = dict(zip((e.role for e, _ in planned), staged, strict=True))
    version = check_restorable(by_role[DATABASE_ROLE])
    if version != manifest.schema_version:
        raise RestoreRefused(
            f"{archive}: its database has schema {version} but its manifest says "
            f"{manifest.schema_version}; the archive was altered"
        )
    moved = {e.source: dest for e, dest in planned if e.role != CONFIG_ROLE}
    header = RESTORED_HEADER.format(
        date=time.strftime("%Y-%m-%d"),
        made=manifest.created_at,
        old=manifest.data_dir,
        version=manifest.appliance_version,
        path=config_path,
    )
    config_text = by_role[CONFIG_ROLE].read_text(encoding="utf-8")
    relocated = relocate_config(config_text, Path(manifest.data_dir), data_dir, moved, header)
    try:
        for (entry, dest), source in zip(planned, staged, strict=True):
            if entry.role == CONFIG_ROLE:
                continue
            dest.parent.mkdir(parents=True, exist_ok=True, mode=0o750)
            if entry.role == DATABASE_ROLE:
                # An old database's log would be replayed into the restored file.
                for suffix in ("-wal", "-shm", "-journal"):
                    dest.with_name(dest.name + suffix).unlink(missing_ok=True)
            os.chmod(source, entry.mode & 0o644)
            os.replace(source, dest)
        write_atomic(config_path, relocated.encode(), CONFIG_MODE)
    except OSError as e:
        raise RestoreRefused(f"cannot restore into {data_dir}: {e}") from None
    return version


# The commands.


def cmd_backup(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    report = write_backup(config, Path(args.out))
    files = len(report.manifest.files) - 1
    print(f"Backup written: {report.path} (mode 0600, {report.size} bytes)")
    print(f"  database     {report.database_note}")
    print(f"  files        {files} (the config, keys, certificates and tokens; SHA-256 of each)")
    if report.manifest.missing:
        absent = ", ".join(m["role"] for m in report.manifest.missing)
        print(f"  not present  {absent} (configured, but not made or imported yet)")
    print("It holds the CA key and every secret of this installation: keep it like the CA key.")
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    report = restore(
        Path(args.file),
        Path(args.data_dir),
        Path(args.config) if args.config else None,
        force=args.force,
    )
    m = report.manifest
    print(f"Restored {args.file} (made {m.created_at} by mdmappliance {m.appliance_version}):")
    for entry, dest in report.placed:
        print(f"  {entry.role:28} {dest} ({entry.mode & 0o644:04o})")
    for entry, dest in report.outside:
        print(
            f"moved: {entry.role} was outside the old data directory ({entry.source}); now {dest}"
        )
    if m.missing:
        absent = ", ".join(missing["role"] for missing in m.missing)
        print(f"Not in the backup (absent when it was made): {absent}")
    if report.schema_version < report.known_version:
        print(
            f"The database has schema {report.schema_version}; the service upgrades it to "
            f"{report.known_version} when it starts (after a backup to [store] backup_dir)."
        )
    for warning in report.config.warnings:
        print(f"warning: {warning}")
    print(f"Start it with: {PROG} serve --config {report.config.path}")
    return 0


def add_parsers(sub: Any, default_config: str) -> None:
    backup = sub.add_parser(
        "backup", help="write the database, config, keys and certificates to one archive"
    )
    backup.add_argument("--out", required=True, help="the archive to write (mode 0600)")
    backup.add_argument("--config", default=default_config, help=f"default {default_config}")
    backup.set_defaults(func=cmd_backup)
    restore_ = sub.add_parser("restore", help="unpack a backup into an empty data directory")
    restore_.add_argument("file", help="an archive written by `mdmappliance backup`")
    restore_.add_argument("--data-dir", required=True, help="the new data directory (empty)")
    restore_.add_argument(
        "--config", help=f"where to write the config (default DATA_DIR/{CONFIG_NAME})"
    )
    restore_.add_argument(
        "--force",
        action="store_true",
        help="restore into a non-empty directory, over the files and config already there",
    )
    restore_.set_defaults(func=cmd_restore)

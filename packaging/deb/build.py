"""Build the single-file binary (``make dist``) and the .deb (``make deb``).

``dist``: the project's wheel, built from a copy of the working tree (so no stale ``build/``
can leak into it, and another checkout's ``rm -rf build`` cannot race it), packed by shiv with
its dependencies from PyPI into one executable zipapp. The dependencies are pinned to the
versions of the development virtualenv, the ones the test suite ran against.

``deb``: that zipapp under /opt/mdmappliance, run by the system's python3, with the systemd
unit, the documented config as a conffile and the maintainer scripts of this directory,
packed by ``dpkg-deb --build --root-owner-group``. See README.md "Single-file binary and .deb"
and this directory's README.
"""

from __future__ import annotations

import argparse
import configparser
import gzip
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
import zipfile
from email.message import Message
from email.parser import HeaderParser
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
PACKAGE = "mdmappliance"
ENTRY_POINT = "mdmappliance.cli.main:main"

PREFIX = Path("opt/mdmappliance")
ARCHIVE = PREFIX / "lib" / "mdmappliance.pyz"
UNIT = Path("lib/systemd/system/mdmappliance.service")
CONFFILE = Path("etc/mdmappliance/mdmappliance.toml")
DOC = Path("usr/share/doc/mdmappliance")
DATA_DIR = "/var/lib/mdmappliance"
MAINTAINER = "mdmappliance maintainers <mdmappliance@example.com>"
# Licences of bundled packages that Debian keeps in /usr/share/common-licenses (lintian asks the
# copyright file to point there).
COMMON_LICENSES = ("Apache-2.0", "GPL-2", "GPL-3", "LGPL-2.1", "LGPL-3", "MPL-2.0")


def log(message: str) -> None:
    print(f"build: {message}", flush=True)


def run(*command: str | Path, cwd: Path | None = None) -> str:
    result = subprocess.run(
        [str(part) for part in command],
        cwd=cwd,
        check=True,
        stdout=subprocess.PIPE,
        text=True,
    )
    return result.stdout


# ---------------------------------------------------------------------------------------- dist


def dist_requirements() -> list[str]:
    """The requirements of the ``dist`` extra in setup.cfg: the tools this build needs."""
    parser = configparser.ConfigParser()
    parser.read(REPO / "setup.cfg")
    lines = parser["options.extras_require"]["dist"].splitlines()
    return [line.strip() for line in lines if line.strip()]


def copy_tree(dest: Path) -> None:
    """The working tree as git sees it (tracked and untracked files, not the ignored ones)."""
    listed = run("git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", cwd=REPO)
    for name in sorted(set(filter(None, listed.split("\0")))):
        source = REPO / name
        if source.is_file():  # a tracked file deleted in the working tree is listed too
            target = dest / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)


def build_dist(out: Path) -> None:
    started = time.monotonic()
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", *dist_requirements()], check=True
    )
    with tempfile.TemporaryDirectory(prefix="mdmappliance-dist-") as tmp:
        work = Path(tmp)
        source, wheels = work / "source", work / "wheels"
        copy_tree(source)
        log("building the wheel from a copy of the working tree")
        run(sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", wheels, source)
        (wheel,) = wheels.glob(f"{PACKAGE}-*.whl")
        constraints = work / "constraints.txt"
        frozen = run(sys.executable, "-m", "pip", "freeze", "--exclude", PACKAGE)
        constraints.write_text(frozen)
        out.parent.mkdir(parents=True, exist_ok=True)
        partial = out.with_name(out.name + ".partial")
        log(f"packing {wheel.name} and its dependencies with shiv")
        run(
            sys.executable,
            "-m",
            "shiv",
            "--quiet",
            "--reproducible",
            "--compressed",
            "--python",
            "/usr/bin/env python3",
            "--entry-point",
            ENTRY_POINT,
            "--output-file",
            partial,
            wheel,
            "--constraint",
            constraints,
        )
        partial.replace(out)
    size = out.stat().st_size / 1e6
    log(f"{out} ({size:.1f} MB) in {time.monotonic() - started:.0f} s")


# ----------------------------------------------------------------------------------------- deb


class Zipapp:
    """What the deb needs to know of the zipapp: its version and what it runs on."""

    def __init__(self, path: Path) -> None:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            self.environment = json.loads(archive.read("environment.json"))
            metadata = {
                name: HeaderParser().parsestr(archive.read(name).decode())
                for name in names
                if name.startswith("site-packages/")
                and name.count("/") == 2
                and name.endswith(".dist-info/METADATA")
            }
            self.tags = [
                line.split(":", 1)[1].strip()
                for name in names
                if name.endswith(".dist-info/WHEEL") and name.count("/") == 2
                for line in archive.read(name).decode().splitlines()
                if line.startswith("Tag:")
            ]
        self.distributions = sorted(
            (m["Name"], m["Version"], m.get("License-Expression") or _license(m))
            for m in metadata.values()
        )
        (self.version,) = [v for n, v, _ in self.distributions if n == PACKAGE]

    def depends(self) -> list[str]:
        """python3 within the versions its compiled modules load in; the glibc they need."""
        minors = sorted({int(m) for m in re.findall(r"\bcp3(\d+)-cp3\d+", " ".join(self.tags))})
        if len(minors) > 1:
            raise SystemExit(f"the zipapp mixes modules for several Pythons: {minors}")
        stable = [int(m) for m in re.findall(r"\bcp3(\d+)-abi3", " ".join(self.tags))]
        floor = max([11, *minors, *stable])
        depends = [f"python3 (>= 3.{floor})"]
        if minors:
            depends.append(f"python3 (<< 3.{minors[0] + 1})")
        glibc = [(int(a), int(b)) for a, b in re.findall(r"manylinux_(\d+)_(\d+)", str(self.tags))]
        if glibc:
            major, minor = max(glibc)
            depends.append(f"libc6 (>= {major}.{minor})")
        return [*depends, "adduser"]


def _license(metadata: Message) -> str:
    """The declared licence: the License field when it is a name, else the classifiers."""
    declared = str(metadata.get("License") or "")
    if declared and "\n" not in declared and len(declared) < 60:
        return declared
    classifiers = [
        c.rsplit(" :: ", 1)[1]
        for c in metadata.get_all("Classifier") or []
        if c.startswith("License ::") and " :: " in c
    ]
    return ", ".join(classifiers) or "see its licence file in the archive"


def check_consistency(unit: str, conffile: str) -> None:
    """The unit starts what the package ships, with the config it ships, in its data dir."""
    match = re.search(r"^ExecStart=(\S+) serve --config (\S+)", unit, re.MULTILINE)
    if not match:
        raise SystemExit("packaging/mdmappliance.service: no 'ExecStart=... serve --config ...'")
    binary, config = match.groups()
    if binary != f"/{PREFIX}/bin/mdmappliance" or config != f"/{CONFFILE}":
        raise SystemExit(f"the unit runs {binary} --config {config}: not what the .deb ships")
    data_dir = tomllib.loads(conffile)["appliance"]["data_dir"]
    if data_dir != DATA_DIR or not re.search(r"^StateDirectory=mdmappliance$", unit, re.M):
        raise SystemExit(f"conf/mdmappliance.toml: data_dir {data_dir}, not the StateDirectory")


def changelog(version: str, when: int) -> bytes:
    date = time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime(when))
    text = (
        f"{PACKAGE} ({version}) unstable; urgency=medium\n\n"
        f"  * Built from the mdmappliance source tree at version {version}; what changed\n"
        "    is in CHANGELOG.md of that tree.\n\n"
        f" -- {MAINTAINER}  {date}\n"
    )
    return gzip.compress(text.encode(), compresslevel=9, mtime=0)


def copyright_file(app: Zipapp) -> str:
    bundled = "\n".join(f"  {name} {version}: {lic}" for name, version, lic in app.distributions)
    return (HERE / "copyright").read_text() + (
        "\nBundled in /opt/mdmappliance/lib/mdmappliance.pyz, each with its licence file in\n"
        "its .dist-info directory inside the archive (name, version, licence as declared):\n\n"
        f"{bundled}\n"
        + "".join(
            f"\nThe {name} licence is in /usr/share/common-licenses/{name}.\n"
            for name in COMMON_LICENSES
            if name in bundled
        )
    )


def source_date_epoch() -> int:
    if "SOURCE_DATE_EPOCH" in os.environ:
        return int(os.environ["SOURCE_DATE_EPOCH"])
    try:
        return int(run("git", "log", "-1", "--format=%ct", cwd=REPO).strip())
    except (OSError, subprocess.CalledProcessError, ValueError):
        return int(time.time())


def put(root: Path, path: Path, content: bytes, mode: int) -> None:
    target = root / path
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(content)
    target.chmod(mode)


def stage(root: Path, binary: Path, app: Zipapp, epoch: int) -> None:
    unit = (REPO / "packaging" / "mdmappliance.service").read_text()
    conffile = (REPO / "conf" / "mdmappliance.toml").read_text()
    check_consistency(unit, conffile)
    put(root, ARCHIVE, binary.read_bytes(), 0o755)  # also runnable itself, by its #! line
    put(root, PREFIX / "bin" / "mdmappliance", (HERE / "mdmappliance.sh").read_bytes(), 0o755)
    put(root, PREFIX / "bin" / "twistd", (HERE / "twistd.sh").read_bytes(), 0o755)
    put(root, UNIT, unit.encode(), 0o644)  # as it is in the tree, byte for byte
    put(root, CONFFILE, conffile.encode(), 0o644)
    put(root, DOC / "copyright", copyright_file(app).encode(), 0o644)
    put(root, DOC / "changelog.gz", changelog(app.version, epoch), 0o644)
    put(root, DOC / "README.Debian", (HERE / "README").read_bytes(), 0o644)
    overrides = (HERE / "lintian-overrides").read_bytes()
    put(root, Path("usr/share/lintian/overrides") / PACKAGE, overrides, 0o644)


def control_files(root: Path, app: Zipapp, arch: str) -> None:
    files = sorted(p for p in root.rglob("*") if p.is_file() and "DEBIAN" not in p.parts)
    installed_kib = sum((p.stat().st_size + 1023) // 1024 for p in files) + len(
        {p.parent for p in files}
    )
    fields = {
        "@VERSION@": app.version,
        "@ARCH@": arch,
        "@MAINTAINER@": MAINTAINER,
        "@INSTALLED_SIZE@": str(installed_kib),
        "@DEPENDS@": ", ".join(app.depends()),
    }
    control = (HERE / "control").read_text()
    for placeholder, value in fields.items():
        control = control.replace(placeholder, value)
    if re.search(r"@[A-Z_]+@", control):
        raise SystemExit(f"packaging/deb/control: a placeholder is left:\n{control}")
    conffiles = (HERE / "conffiles").read_text()
    if conffiles.split() != [f"/{CONFFILE}"]:
        raise SystemExit(f"packaging/deb/conffiles must list /{CONFFILE}")
    md5sums = "".join(
        f"{hashlib.md5(p.read_bytes()).hexdigest()}  {p.relative_to(root)}\n"
        for p in files
        if f"/{p.relative_to(root)}" not in conffiles.split()
    )
    put(root, Path("DEBIAN/control"), control.encode(), 0o644)
    put(root, Path("DEBIAN/conffiles"), conffiles.encode(), 0o644)
    put(root, Path("DEBIAN/md5sums"), md5sums.encode(), 0o644)
    for script in ("postinst", "prerm", "postrm"):
        put(root, Path("DEBIAN") / script, (HERE / script).read_bytes(), 0o755)


def build_deb(binary: Path, out_dir: Path) -> Path:
    started = time.monotonic()
    app = Zipapp(binary)
    arch = run("dpkg", "--print-architecture").strip()
    epoch = source_date_epoch()
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / f"{PACKAGE}_{app.version}_{arch}.deb"
    with tempfile.TemporaryDirectory(prefix="mdmappliance-deb-") as tmp:
        root = Path(tmp) / "root"
        stage(root, binary, app, epoch)
        control_files(root, app, arch)
        for path in [root, *root.rglob("*")]:
            if path.is_dir():
                path.chmod(0o755)
            os.utime(path, (epoch, epoch), follow_symlinks=False)
        partial = out.with_name(out.name + ".partial")
        env = {**os.environ, "SOURCE_DATE_EPOCH": str(epoch)}
        subprocess.run(
            ["dpkg-deb", "--build", "--root-owner-group", "-Zxz", str(root), str(partial)],
            check=True,
            env=env,
            stdout=subprocess.DEVNULL,
        )
        partial.replace(out)
    log(f"{out} ({out.stat().st_size / 1e6:.1f} MB) in {time.monotonic() - started:.0f} s")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    dist = sub.add_parser("dist", help="the single-file binary (a shiv zipapp)")
    dist.add_argument("--out", type=Path, default=REPO / "dist" / PACKAGE)
    deb = sub.add_parser("deb", help="the .deb carrying the single-file binary")
    deb.add_argument("--binary", type=Path, default=REPO / "dist" / PACKAGE)
    deb.add_argument("--out-dir", type=Path, default=REPO / "dist")
    args = parser.parse_args(argv)
    if args.what == "dist":
        build_dist(args.out.absolute())
    else:
        build_deb(args.binary.absolute(), args.out_dir.absolute())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

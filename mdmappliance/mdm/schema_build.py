"""``make update-schema``: copy Apple's device-management schema into the package and compile
the part read at run time (commands and check-in) into one JSON file.

The YAML is Apple's (github.com/apple/device-management, MIT) and is shipped as it is, with
its licence, so the source of every rule stays readable; ``schema.json`` is derived from it
(descriptions dropped) because JSON loads some thirty times faster than YAML at start.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

REPOSITORY = "https://github.com/apple/device-management"
FOLDERS = ("mdm/commands", "mdm/checkin", "mdm/profiles")
COMPILED = {"commands": "mdm/commands", "checkin": "mdm/checkin"}
DROPPED = ("content", "description", "notes")
HERE = Path(__file__).parent / "apple"
_COMMIT = re.compile(r"commit[^`]*`([0-9a-f]{40})`")


def _trimmed(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _trimmed(v) for k, v in value.items() if k not in DROPPED}
    if isinstance(value, list):
        return [_trimmed(v) for v in value]
    return value


def compile_schema(root: Path) -> dict[str, Any]:
    """The commands and check-in messages under ``root`` (a copy of Apple's repository),
    keyed by their request type, as plain data."""
    import yaml  # only needed here: the package reads the compiled JSON

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    compiled: dict[str, Any] = {}
    for section, folder in COMPILED.items():
        entries: dict[str, Any] = {}
        for path in sorted((root / folder).glob("*.yaml")):
            document = yaml.load(path.read_text(encoding="utf-8"), Loader=loader)
            name = document["payload"]["requesttype"]
            entries[name] = {"file": f"{folder}/{path.name}", **_trimmed(document)}
        compiled[section] = entries
    return compiled


def render(compiled: dict[str, Any], commit: str) -> str:
    return json.dumps({"commit": commit, **compiled}, sort_keys=True, indent=None) + "\n"


def _commit_of(source: Path, given: str | None) -> str:
    """The commit: given, or the checkout's own (not that of a repository it sits in), or
    the one a snapshot's SOURCE.md names."""
    if given:
        return given
    top = subprocess.run(
        ["git", "-C", str(source), "rev-parse", "--show-toplevel", "HEAD"],
        capture_output=True,
        text=True,
    )
    lines = top.stdout.split()
    if top.returncode == 0 and len(lines) == 2 and Path(lines[0]) == source.resolve():
        return lines[1]
    noted = source / "SOURCE.md"
    if noted.is_file() and (found := _COMMIT.search(noted.read_text(encoding="utf-8"))):
        return found.group(1)
    sys.exit(f"{source} is not a checkout of {REPOSITORY}: name the commit with --commit")


def update(source: Path, commit: str, target: Path = HERE) -> None:
    for folder in FOLDERS:
        shutil.rmtree(target / folder, ignore_errors=True)
        shutil.copytree(source / folder, target / folder)
    shutil.copyfile(source / "LICENSE", target / "LICENSE")
    (target / "SOURCE.md").write_text(
        f"# Apple's device-management schema\n\n"
        f"Copied by `make update-schema` from {REPOSITORY} at commit `{commit}`: the folders "
        f"{', '.join(f'`{f}/`' for f in FOLDERS)}, byte for byte, and `LICENSE` (MIT, "
        "Copyright Apple Inc.). `schema.json` is compiled from `mdm/commands` and "
        "`mdm/checkin` (descriptions dropped); a test checks that it is current.\n",
        encoding="utf-8",
    )
    (target / "schema.json").write_text(render(compile_schema(target), commit), encoding="utf-8")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--source", type=Path, required=True, help="a checkout of " + REPOSITORY)
    parser.add_argument("--commit", help="the checkout's commit (default: git rev-parse HEAD)")
    args = parser.parse_args(argv)
    update(args.source, _commit_of(args.source, args.commit))


if __name__ == "__main__":
    main()

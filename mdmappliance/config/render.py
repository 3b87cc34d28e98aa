"""Writing the schema out as the documented config file, with every key's help and default."""

from __future__ import annotations

import dataclasses
import inspect
import textwrap
from collections.abc import Mapping
from typing import Any

from mdmappliance.config.model import SECTIONS


def _toml_value(value: Any) -> str:
    if isinstance(value, tuple | list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    text = str(value)
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render_config(values: Mapping[str, Mapping[str, Any]], header: str) -> str:
    """The documented config file: every key with its help and default.

    Keys given in ``values`` are written out; the others stay commented at their default,
    so an admin sees every knob without the file pinning today's defaults.
    """
    out = [f"# {line}".rstrip() for line in header.splitlines()]
    for name, cls in SECTIONS.items():
        given = values.get(name, {})
        about = inspect.cleandoc(cls.__doc__ or "").splitlines()
        out += ["", *(f"# {line}".rstrip() for line in about), f"[{name}]"]
        for f in dataclasses.fields(cls):
            doc = f.metadata["doc"]
            if f.default is dataclasses.MISSING:
                doc += " Required."
            else:
                doc += f" Default: {_toml_value(f.default)}."
            out += textwrap.wrap(doc, width=98, initial_indent="# ", subsequent_indent="# ")
            if f.name in given:
                out.append(f"{f.name} = {_toml_value(given[f.name])}")
            elif f.default is dataclasses.MISSING:
                out.append(f"{f.name} = {_toml_value(f.metadata['example'])}")
            else:
                out.append(f"#{f.name} = {_toml_value(f.default)}")
    return "\n".join(out).rstrip("\n") + "\n"


EXAMPLE_HEADER = """\
mdmappliance configuration.

This is the documented example; `mdmappliance init` writes one like it for an installation.
Every key is listed with its help text and default. A commented key is at its default.
Unknown keys are refused: check spelling when the service says so.
Regenerate this file with `make conf` after changing the schema in mdmappliance/config/."""


def render_example() -> str:
    return render_config({}, EXAMPLE_HEADER)

"""Reading the TOML file into a ``Config``: types, values, relative paths, then cross-checks."""

from __future__ import annotations

import dataclasses
import tomllib
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mdmappliance.config.checks import _cross_check
from mdmappliance.config.errors import ConfigError
from mdmappliance.config.model import SECTIONS, Config, _resolve


def _type_name(annotation: Any) -> str:
    return {
        str: "a string",
        int: "an integer",
        float: "a number",
        bool: "true or false",
        Path: "a path (string)",
        tuple[str, ...]: "an array of strings",
        tuple[Path, ...]: "an array of paths (strings)",
    }[annotation]


def _convert(annotation: Any, raw: Any) -> Any:
    """The TOML value as ``annotation``, or ValueError naming what was expected."""
    ok = {
        bool: isinstance(raw, bool),
        int: isinstance(raw, int) and not isinstance(raw, bool),
        float: isinstance(raw, int | float) and not isinstance(raw, bool),
        str: isinstance(raw, str),
        Path: isinstance(raw, str) and raw != "",
        tuple[str, ...]: isinstance(raw, list) and all(isinstance(v, str) for v in raw),
        tuple[Path, ...]: isinstance(raw, list) and all(isinstance(v, str) and v for v in raw),
    }[annotation]
    if not ok:
        raise ValueError(f"must be {_type_name(annotation)}, got {_describe(raw)}")
    if annotation is float:
        return float(raw)
    if annotation is Path:
        return Path(raw)
    if annotation == tuple[Path, ...]:
        return tuple(Path(v) for v in raw)
    if annotation == tuple[str, ...]:
        return tuple(raw)
    return raw


def _describe(raw: Any) -> str:
    kinds = {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}
    for kind, name in kinds.items():
        if isinstance(raw, kind):
            return f"{name} ({raw!r})"
    if isinstance(raw, dict):
        return "a table"
    if isinstance(raw, list):
        return "an array"
    return type(raw).__name__


def _load_section(path: Path, name: str, cls: type, raw: Any) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(path, name, f"must be a table ([{name}]), got {_describe(raw)}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in raw:
        if key not in fields:
            known = ", ".join(fields)
            raise ConfigError(path, f"{name}.{key}", f"unknown key (known keys: {known})")
    values: dict[str, Any] = {}
    for fname, f in fields.items():
        key = f"{name}.{fname}"
        if fname not in raw:
            if f.default is dataclasses.MISSING:
                raise ConfigError(path, key, "required key is missing")
            continue
        try:
            value = _convert(hints[fname], raw[fname])
            check = f.metadata["check"]
            if check is not None:
                check(value)
        except ValueError as e:
            raise ConfigError(path, key, str(e)) from None
        values[fname] = value
    return cls(**values)


def parse_config(path: Path, document: Mapping[str, Any]) -> Config:
    """Validate a parsed TOML document's shape and values (no file system checks)."""
    for name in document:
        if name not in SECTIONS:
            raise ConfigError(path, name, f"unknown section (known: {', '.join(SECTIONS)})")
    if "appliance" not in document:
        raise ConfigError(path, "appliance", "required section is missing")
    sections = {
        name: _load_section(path, name, cls, document.get(name, {}))
        for name, cls in SECTIONS.items()
    }
    return Config(path=path, **sections)


def _resolve_paths(config: Config) -> Config:
    data_dir = _resolve(config.path.parent.absolute(), config.appliance.data_dir)

    def resolved(value: Any) -> Any:
        if isinstance(value, Path):
            return _resolve(data_dir, value)
        if isinstance(value, tuple) and all(isinstance(v, Path) for v in value):
            return tuple(_resolve(data_dir, v) for v in value)
        return value

    def paths_of(section: Any) -> Any:
        updates = {f.name: resolved(getattr(section, f.name)) for f in dataclasses.fields(section)}
        return dataclasses.replace(section, **updates)

    return dataclasses.replace(
        config,
        appliance=dataclasses.replace(config.appliance, data_dir=data_dir),
        store=paths_of(config.store),
        pki=paths_of(config.pki),
        admin=paths_of(config.admin),
        device=paths_of(config.device),
        enrollment=paths_of(config.enrollment),
        apns=paths_of(config.apns),
        dep=paths_of(config.dep),
        vpp=paths_of(config.vpp),
        webhooks=paths_of(config.webhooks),
    )


def load_config(path: Path | str) -> Config:
    """Read, validate and cross-check the config file; ConfigError names the key at fault."""
    path = Path(path).absolute()
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ConfigError(path, None, f"cannot read config file: {e.strerror}") from None
    try:
        document = tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(path, None, "invalid TOML: the file is not UTF-8") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(path, None, f"invalid TOML: {e}") from None
    return _cross_check(_resolve_paths(parse_config(path, document)))

"""Dataclass configuration machinery: documented fields, YAML-safe (de)serialisation with
type coercion and range/choice checks, dotted ``key=value`` overrides.

Generic: nothing here knows the training sections (those live in
:mod:`dasp_core.train.config`). Every error is a :class:`~dasp_core.errors.ConfigError`
naming the dotted key, the value and what is allowed.
"""

from __future__ import annotations

import collections.abc
import copy
import dataclasses
import inspect
import math
import re
import typing
from dataclasses import field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import yaml

from dasp_core.errors import ConfigError, check_choice, check_range

__all__ = ["opt", "FIELD_TYPE_HOOKS", "SELF_VALIDATED_MODULES", "from_mapping", "config_to_dict",
           "parse_overrides", "apply_overrides", "load_config_dict", "doc_attributes"]


def opt(default: Any = dataclasses.MISSING, doc: str = "", *, mark: str = "ours",
        choices: Optional[Sequence[Any]] = None, lo: Optional[float] = None,
        hi: Optional[float] = None, lo_open: bool = False, factory: Any = None) -> Any:
    """A dataclass field with documentation and validation metadata.

    Args:
        default: default value (immutable); use ``factory`` for lists/dicts/dataclasses.
        doc: one-line meaning of the key, with units.
        mark: where the default comes from (paper | RNW | monodepth2 | md4all | ours).
        choices: allowed values (checked after type coercion).
        lo, hi, lo_open: allowed numeric range (``lo_open``: lower bound excluded).
    """
    meta = {"doc": doc, "mark": mark, "choices": tuple(choices) if choices else None,
            "lo": lo, "hi": hi, "lo_open": lo_open}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is typing.Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return " or ".join(_type_name(a) for a in args) + " or null"
    if origin in (list, tuple, collections.abc.Sequence) or tp in (list, tuple):
        args = typing.get_args(tp)
        inner = _type_name(args[0]) if args else "value"
        return f"a list of {inner}"
    if origin is dict or tp is dict:
        return "a mapping"
    if dataclasses.is_dataclass(tp):
        return f"a mapping ({tp.__name__})"
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string"}.get(
        tp, getattr(tp, "__name__", str(tp)))


_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


def _coerce(tp: Any, value: Any, key: str) -> Any:
    """Convert ``value`` (from YAML or an override) to type ``tp``; ConfigError if impossible."""
    if tp is Any or tp is object:
        return copy.deepcopy(value)
    origin = typing.get_origin(tp)
    if origin is typing.Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None or (isinstance(value, str) and value.strip().lower() in ("null", "none",
                                                                                   "~", "")):
            if type(None) in typing.get_args(tp):
                return None
        errors = []
        for a in args:
            try:
                return _coerce(a, value, key)
            except ConfigError as e:
                errors.append(e)
        raise ConfigError(key, value, _type_name(tp))
    if dataclasses.is_dataclass(tp):
        if dataclasses.is_dataclass(value) and isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(key, value, _type_name(tp))
        return from_mapping(tp, value, key)
    if origin in (list, tuple, collections.abc.Sequence) or tp in (list, tuple):
        if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
            raise ConfigError(key, value, _type_name(tp))
        args = typing.get_args(tp)
        inner = args[0] if args else Any
        items = [_coerce(inner, v, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if (origin is tuple or tp is tuple) else items
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(key, value, "a mapping")
        return copy.deepcopy(dict(value))
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise ConfigError(key, value, "true or false")
    if tp is int:
        if isinstance(value, bool):
            raise ConfigError(key, value, "an integer")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                pass
        raise ConfigError(key, value, "an integer")
    if tp is float:
        if isinstance(value, bool):
            raise ConfigError(key, value, "a number")
        if isinstance(value, (int, float)):
            out = float(value)
        elif isinstance(value, str):
            # PyYAML reads "1e-4" (no dot) as a string; accept it as a number.
            try:
                out = float(value.strip())
            except ValueError:
                raise ConfigError(key, value, "a number") from None
        else:
            raise ConfigError(key, value, "a number")
        if not math.isfinite(out):
            raise ConfigError(key, value, "a finite number")
        return out
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(key, value, "a string")
    return copy.deepcopy(value)


#: Per-class extra field types for fields annotated ``Any`` whose class is only importable
#: lazily (model configs: importing them at config-load time would import torch models).
FIELD_TYPE_HOOKS: Dict[type, Callable[[], Dict[str, Any]]] = {}

#: Modules whose dataclasses are validated as a whole by their owner (``TrainingConfig``'s
#: cross-section rules); any other dataclass gets its own ``validate`` called when built.
SELF_VALIDATED_MODULES = {"dasp_core.train.config"}


def _field_types(cls: type) -> Dict[str, Any]:
    hints = typing.get_type_hints(cls)
    if cls in FIELD_TYPE_HOOKS:
        hints.update(FIELD_TYPE_HOOKS[cls]())
    return hints


def _check_meta(f: dataclasses.Field, value: Any, key: str) -> None:
    meta = f.metadata or {}
    if value is None:
        return
    if meta.get("choices"):
        check_choice(key, value, meta["choices"])
    if (meta.get("lo") is not None or meta.get("hi") is not None) and isinstance(
            value, (int, float)) and not isinstance(value, bool):
        check_range(key, value, meta.get("lo"), meta.get("hi"), lo_open=meta.get("lo_open", False))


def _call_validate(obj: Any, key: str) -> Any:
    """Run a foreign config's own ``validate`` (with the key prefix when it accepts one)."""
    fn = getattr(obj, "validate", None)
    if not callable(fn):
        return obj
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        params = {}
    out = fn(key) if params else fn()
    return obj if out is None else out


def from_mapping(cls: type, data: Dict[str, Any], prefix: str) -> Any:
    """Build dataclass ``cls`` from a mapping, checking keys, types, choices and ranges."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for k in data:
        if k not in fields:
            raise ConfigError(f"{prefix}.{k}" if prefix else str(k), data[k],
                              "known keys" + (f" of {prefix}" if prefix else "") + ": " +
                              ", ".join(fields))
    types = _field_types(cls)
    kwargs = {}
    for name, value in data.items():
        key = f"{prefix}.{name}" if prefix else name
        v = _coerce(types.get(name, Any), value, key)
        _check_meta(fields[name], v, key)
        kwargs[name] = v
    try:
        obj = cls(**kwargs)
    except (TypeError, ValueError) as e:
        if isinstance(e, ConfigError):
            raise
        raise ConfigError(prefix or cls.__name__, data,
                          f"valid {cls.__name__} arguments ({e})") from None
    # defaults of foreign dataclasses may use tuples; validation hooks expect their own rules
    return _call_validate(obj, prefix) if cls.__module__ not in SELF_VALIDATED_MODULES else obj


def config_to_dict(obj: Any) -> Any:
    """Dataclass tree → plain YAML-safe structure (tuples become lists)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: config_to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [config_to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {str(k): config_to_dict(v) for k, v in obj.items()}
    return obj


_OVERRIDE = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)=(.*)$", re.S)


def parse_overrides(items: Sequence[str]) -> List[Tuple[str, Any]]:
    """``["loss.lambda_3d=0.1", "data.offsets=[0,-1,1]"]`` → ``[(key, parsed value), ...]``.

    Values are parsed as YAML (so ``null``, ``true``, lists and mappings work); a value YAML
    cannot parse is kept as the plain string.
    """
    out = []
    for item in items:
        m = _OVERRIDE.match(item.strip())
        if not m:
            raise ConfigError("<override>", item, "key.path=value, e.g. loss.lambda_3d=0.1")
        key, text = m.group(1), m.group(2)
        try:
            value = yaml.safe_load(text) if text.strip() else ""
        except yaml.YAMLError:
            value = text
        out.append((key, value))
    return out


def apply_overrides(data: Dict[str, Any], overrides: Sequence[Tuple[str, Any]]) -> Dict[str, Any]:
    """Set dotted keys in a raw config mapping (a copy is returned; validation happens later)."""
    data = copy.deepcopy(data) if data else {}
    for key, value in overrides:
        parts = key.split(".")
        node = data
        for i, p in enumerate(parts[:-1]):
            nxt = node.get(p)
            if not isinstance(nxt, dict):
                if nxt is not None:
                    raise ConfigError(".".join(parts[:i + 1]), nxt,
                                      f"a mapping (cannot set {key} inside a scalar)")
                nxt = node[p] = {}
            node = nxt
        node[parts[-1]] = value
    return data


def load_config_dict(path: str | Path) -> Dict[str, Any]:
    """Read a YAML file into a mapping (ConfigError when missing or not YAML)."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError("<config file>", str(p), "an existing YAML file")
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as e:
        raise ConfigError("<config file>", str(p), f"valid YAML ({e})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError("<config file>", str(p), "a YAML mapping of sections")
    return data


def doc_attributes(cls: type) -> Dict[str, str]:
    """Parse an ``Attributes:`` docstring section (foreign config classes) → {name: text}."""
    doc = inspect.getdoc(cls) or ""
    out: Dict[str, str] = {}
    lines = doc.splitlines()
    try:
        start = next(i for i, l in enumerate(lines) if l.strip() == "Attributes:")
    except StopIteration:
        return out
    current: List[str] = []
    text: List[str] = []
    for line in lines[start + 1:]:
        if line and not line.startswith(" "):
            break
        m = re.match(r"^\s{4}([A-Za-z_][\w, ]*):\s*(.*)$", line)
        if m and not line.startswith(" " * 8):
            for n in current:
                out[n] = " ".join(text).strip()
            current = [n.strip() for n in m.group(1).split(",")]
            text = [m.group(2)]
        elif current:
            text.append(line.strip())
    for n in current:
        out[n] = " ".join(text).strip()
    return out


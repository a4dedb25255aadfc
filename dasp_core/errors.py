"""Error types shared by the library: every message names what was wrong and what is allowed."""

from __future__ import annotations

from typing import Any, Iterable


class DaspError(Exception):
    """Base class of all errors raised on purpose by dasp."""


class ConfigError(DaspError, ValueError):
    """A configuration value is invalid.

    The message always names the key (dotted path), the value given and what is allowed,
    e.g. ``model.depth.num_layers = 42 is not allowed; allowed: 18, 34, 50``.
    """

    def __init__(self, key: str, value: Any, allowed: Iterable[Any] | str):
        if isinstance(allowed, str):
            allowed_text = allowed
        else:
            allowed_text = ", ".join(repr(a) if isinstance(a, str) else str(a) for a in allowed)
        self.key = key
        self.value = value
        self.allowed = allowed_text
        super().__init__(f"{key} = {value!r} is not allowed; allowed: {allowed_text}")


class ModelFileError(DaspError, RuntimeError):
    """A model file (checkpoint, ONNX, engine) is missing, corrupt or does not match."""

    def __init__(self, path: str, problem: str, expected: str | None = None):
        self.path = path
        msg = f"model file {path!r}: {problem}"
        if expected:
            msg += f" (expected {expected})"
        super().__init__(msg)


class DatasetError(DaspError, RuntimeError):
    """A dataset root or recording is not what it claims to be."""


def check_choice(key: str, value: Any, allowed: Iterable[Any]) -> Any:
    """Return ``value`` if it is one of ``allowed``, else raise :class:`ConfigError`."""
    allowed = list(allowed)
    if value not in allowed:
        raise ConfigError(key, value, allowed)
    return value


def check_range(key: str, value: float, lo: float | None = None, hi: float | None = None,
                lo_open: bool = False, hi_open: bool = False) -> float:
    """Return ``value`` if it lies in the interval, else raise :class:`ConfigError`."""
    ok = True
    if lo is not None:
        ok &= value > lo if lo_open else value >= lo
    if hi is not None:
        ok &= value < hi if hi_open else value <= hi
    if not ok:
        lb = ("(" if lo_open else "[") + ("-inf" if lo is None else str(lo))
        ub = ("inf" if hi is None else str(hi)) + (")" if hi_open else "]")
        raise ConfigError(key, value, f"a number in {lb}, {ub}")
    return value

"""Configuration: `ConfigError`, validation helpers, and hyperparameter construction.

Static configuration (shapes, counts, switches) lives in frozen dataclasses validated at
construction. Scalar hyperparameters live in `flax.struct` pytrees so they can be traced
and swept with `vmap`; their allowed ranges are declared with `hparam(...)` and checked by
`make_hparams` on the host, before anything is traced.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct


class ConfigError(ValueError):
    """A user-facing configuration error; the message names the field and what is allowed."""


def check_int(name: str, value: Any, *, zero: bool = False, none: bool = False) -> None:
    """Raise `ConfigError` unless `value` is an int > 0 (>= 0 with `zero`; bools refused).

    With `none`, None is accepted too (an unset option).
    """
    if type(value) is not int or value < (0 if zero else 1):
        if not (none and value is None):
            kind = "non-negative" if zero else "positive"
            raise ConfigError(f"{name} must be a {kind} integer, got {value!r}")


def check_positive_int(obj: Any, names: Iterable[str]) -> None:
    """`check_int` on each named attribute of `obj`."""
    for name in names:
        check_int(name, getattr(obj, name))


def check_real(name: str, value: Any) -> float:
    """`value` as a float; raise `ConfigError` unless it is a finite real (bools refused)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{name} must be a finite real number, got {value!r}")
    return float(value)


def check_choice(name: str, value: Any, allowed: Iterable[Any]) -> None:
    """Raise `ConfigError` unless `value` is one of `allowed`."""
    allowed = tuple(allowed)
    if value not in allowed:
        raise ConfigError(f"{name} must be one of {', '.join(map(str, allowed))}; got {value!r}")


def check_bool(obj: Any, names: Iterable[str]) -> None:
    """Raise `ConfigError` unless each named attribute of `obj` is a bool."""
    for name in names:
        value = getattr(obj, name)
        if type(value) is not bool:
            raise ConfigError(f"{name} must be true or false, got {value!r}")


def check_sizes(name: str, value: Any) -> None:
    """Raise `ConfigError` unless `value` is a non-empty tuple of positive ints (layer widths)."""
    if (not isinstance(value, tuple) or not value
            or any(type(v) is not int or v <= 0 for v in value)):
        raise ConfigError(f"{name} must be a non-empty tuple of positive integers, got {value!r}")


def hparam(default: float, *, low: float | None = None, high: float | None = None,
           low_open: bool = False, high_open: bool = False):
    """Declare a traced scalar hyperparameter field with its allowed range.

    Args:
      default: value used when the caller gives none.
      low, high: bounds (None for unbounded).
      low_open, high_open: exclude the bound itself.
    """
    return struct.field(default=default, metadata={
        "range": (low, high, low_open, high_open)})


def describe_range(low, high, low_open, high_open) -> str:
    """Human text for an interval, e.g. `in (0, 1]`."""
    left = "(" if low_open or low is None else "["
    right = ")" if high_open or high is None else "]"
    lo = "-inf" if low is None else f"{low:g}"
    hi = "inf" if high is None else f"{high:g}"
    return f"in {left}{lo}, {hi}{right}"


def _check_hparam_value(name: str, value: Any, bounds) -> float:
    low, high, low_open, high_open = bounds
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{name} must be a real number {describe_range(*bounds)}, got {value!r}")
    value = float(value)
    bad = (not math.isfinite(value)
           or (low is not None and (value < low or (low_open and value == low)))
           or (high is not None and (value > high or (high_open and value == high))))
    if bad:
        raise ConfigError(f"{name} must be {describe_range(*bounds)}, got {value!r}")
    return value


def make_hparams(cls, **values):
    """Build an `HParams` struct from Python numbers, checking each against its declared range.

    Python scalars are validated and stored as float32 arrays. Arrays (for a sweep over a
    leading axis) are checked elementwise on the host the same way.

    Raises:
      ConfigError: an unknown field, or a value outside its range.
    """
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ConfigError(f"unknown hyperparameter {unknown[0]!r}; allowed: {', '.join(fields)}")
    out = {}
    for name, field in fields.items():
        value = values.get(name, field.default)
        bounds = field.metadata.get("range", (None, None, False, False))
        if isinstance(value, (jax.Array, np.ndarray)):
            for v in np.asarray(value).reshape(-1).tolist():
                _check_hparam_value(name, v, bounds)
            out[name] = jnp.asarray(value, jnp.float32)
        else:
            out[name] = jnp.asarray(_check_hparam_value(name, value, bounds), jnp.float32)
    return cls(**out)


class HParamsBase:
    """Mixin for `flax.struct` hyperparameter classes: validated construction by `create`."""

    @classmethod
    def create(cls, **values: float):
        """Validated hyperparameters from Python numbers; unset fields take the defaults."""
        return make_hparams(cls, **values)


def stack_hparams(hparams_list):
    """Stack several `HParams` along a new leading axis, for a `vmap` sweep."""
    return jax.tree.map(lambda *xs: jnp.stack(xs), *hparams_list)


def to_dict(obj: Any) -> dict[str, Any]:
    """A JSON-friendly dict of a config dataclass or an (unbatched or batched) HParams."""
    out = {}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if hasattr(value, "tolist"):
            value = value.tolist()
        elif isinstance(value, tuple):
            value = list(value)
        elif not isinstance(value, (bool, int, float, str, type(None))):
            value = repr(value)  # e.g. a user's flax module as the torso: recorded, not rebuilt
        out[f.name] = value
    return out

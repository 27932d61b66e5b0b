"""Validation of hyper-parameters: every bad value is a ``ValueError`` naming its field.

The learners' config dataclasses (:class:`~reciprocity.agents.rg.RGConfig`,
:class:`~reciprocity.baselines.PPOConfig`, :class:`~reciprocity.baselines.ReinforceConfig`) and
the training configuration call these in ``__post_init__``. NumPy scalars are accepted and
returned as plain Python numbers (they end up in JSON files); booleans are not numbers here, and
strings are never parsed (``lr="0.1"`` is an error, not 0.1).
"""

from __future__ import annotations

import math
from numbers import Integral, Real
from typing import Any

__all__ = ["check_bool", "check_choice", "check_int", "check_real"]


def check_int(name: str, value: Any, minimum: int | None = None,
              maximum: int | None = None) -> int:
    """An integer (NumPy integers included) in [minimum, maximum]; returns a Python int."""
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    value = int(value)
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be at most {maximum}, got {value}")
    return value


def check_real(name: str, value: Any, low: float = -math.inf, high: float = math.inf, *,
               low_open: bool = False, high_open: bool = False) -> float:
    """A finite number in the interval from ``low`` to ``high`` (ends closed unless ``*_open``);
    returns a Python float."""
    if isinstance(value, bool) or not isinstance(value, Real):
        raise ValueError(f"{name} must be a number, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    too_low = value <= low if low_open else value < low
    too_high = value >= high if high_open else value > high
    if too_low or too_high:
        if math.isinf(high):
            bound = f"greater than {low:g}" if low_open else f"at least {low:g}"
            raise ValueError(f"{name} must be {bound}, got {value!r}")
        lo, hi = ("(" if low_open else "["), (")" if high_open else "]")
        raise ValueError(f"{name} must lie in {lo}{low:g}, {high:g}{hi}, got {value!r}")
    return value


def check_bool(name: str, value: Any) -> bool:
    """``True`` or ``False`` (NumPy booleans included; 0/1 and strings are not booleans)."""
    if type(value).__name__ not in ("bool", "bool_"):
        raise ValueError(f"{name} must be true or false, got {value!r}")
    return bool(value)


def check_choice(name: str, value: Any, choices: tuple[str, ...]) -> str:
    """One of ``choices``."""
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")
    return value

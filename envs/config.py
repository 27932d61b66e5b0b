"""Validated environment configuration: population + institution + episode length.

The constructor keywords shared by ``env``, ``parallel_env``, ``make`` and ``make_parallel``
(spec §4) are parsed here, once, into an :class:`EnvConfig`. Every bad field raises a
``ValueError`` that names it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from numbers import Real
from typing import Any

import numpy as np

from .core import GameParams
from .norms import (
    NUM_ACTION_CONTEXTS,
    NUM_SIGNAL_CONTEXTS,
    Strategy,
    parse_strategy,
    to_display_order,
)

FOCAL = "focal"

#: Constructor keywords and their defaults (the stern-judging catalogue scenario).
DEFAULTS: dict[str, Any] = {
    "population": (FOCAL,) + ("L6",) * 9,
    "benefit": 5.0,
    "cost": 1.0,
    "execution_error": 0.02,
    "assessment_error": 0.02,
    "update_probability": 1.0,
    "max_rounds": 100,
    "initial_reputation": "good",
    "signal_audit": 0.0,
    "audit_norm": None,  # None: the background's assessment rule
    "observers_per_interaction": 1,
}


def expand_population(population: Any, field: str = "population") -> list[Any]:
    """Expand ``{"count": k, "slot": spec}`` entries (the compact form used in files)."""
    if isinstance(population, str | bytes | Mapping) or not isinstance(population, Sequence):
        raise ValueError(f"{field} must be a list of slots ('focal' or a strategy spec), "
                         f"got {population!r}")
    slots: list[Any] = []
    for i, entry in enumerate(population):
        if isinstance(entry, Mapping) and "count" in entry:
            extra = set(entry) - {"count", "slot"}
            count = entry["count"]
            if extra or "slot" not in entry:
                raise ValueError(f"{field}[{i}]: a repeated slot needs exactly the keys "
                                 f"'count' and 'slot', got {sorted(entry)}")
            if isinstance(count, bool) or not isinstance(count, int) or count < 1:
                raise ValueError(f"{field}[{i}].count must be a positive integer, got {count!r}")
            slots.extend([entry["slot"]] * count)
        else:
            slots.append(entry)
    return slots


def parse_population(population: Any, field: str = "population") -> list[Strategy | None]:
    """Parse a population: one entry per slot, ``None`` for focal slots."""
    slots = expand_population(population, field)
    if len(slots) < 2:
        raise ValueError(f"{field} needs at least 2 slots, got {len(slots)}")
    parsed: list[Strategy | None] = []
    for i, spec in enumerate(slots):
        if isinstance(spec, str) and spec.strip().lower() == FOCAL:
            parsed.append(None)
        else:
            parsed.append(parse_strategy(spec, field=f"{field}[{i}]"))
    return parsed


def strategy_tables(strategies: Sequence[Strategy | None]) -> tuple[np.ndarray, np.ndarray]:
    """Action (N, 4) and assessment (N, 8) tables; focal rows are 0 (they are overridden)."""
    n = len(strategies)
    action = np.zeros((n, NUM_ACTION_CONTEXTS))
    assess = np.zeros((n, NUM_SIGNAL_CONTEXTS))
    for i, s in enumerate(strategies):
        if s is not None:
            action[i], assess[i] = s.action, s.assess
    return action, assess


def background_audit_norm(strategies: Sequence[Strategy | None]) -> list[int]:
    """The default audit norm: the assessment rule all background agents follow, as 8 verdicts in
    display order. Raises a ValueError naming ``audit_norm`` when there is no single such rule."""
    tables = {tuple(s.assess.tolist()) for s in strategies if s is not None}
    names = sorted({s.name for s in strategies if s is not None})
    if not tables:
        raise ValueError("audit_norm: signal_audit needs a norm to audit by, and the population "
                         "has no background agents to take it from; name one, e.g. "
                         "audit_norm='L6'")
    if len(tables) > 1:
        raise ValueError(f"audit_norm: the background agents ({', '.join(names)}) assess by "
                         f"different rules; name the one to audit by, e.g. audit_norm='L6'")
    table = np.array(tables.pop())
    if not np.isin(table, (0.0, 1.0)).all():
        raise ValueError(f"audit_norm: the background's assessment rule ({', '.join(names)}) is "
                         f"stochastic; name a deterministic norm to audit by")
    return to_display_order(table).astype(int).tolist()


@dataclass(frozen=True)
class EnvConfig:
    """A validated configuration.

    Attributes:
        strategies: one entry per slot, ``None`` for focal slots.
        params: the institution.
        max_rounds: rounds per episode (truncation).
        focal_slots: indices of focal slots, ascending.
    """

    strategies: tuple[Strategy | None, ...]
    params: GameParams
    max_rounds: int

    @property
    def focal_slots(self) -> np.ndarray:
        return np.array([i for i, s in enumerate(self.strategies) if s is None], dtype=np.int64)

    @property
    def num_agents(self) -> int:
        return len(self.strategies)

    @classmethod
    def from_kwargs(cls, **kwargs) -> EnvConfig:
        unknown = set(kwargs) - set(DEFAULTS)
        if unknown:
            raise ValueError(f"unknown configuration field(s) {sorted(unknown)}; "
                             f"known: {sorted(DEFAULTS)}")
        cfg = {**DEFAULTS, **kwargs}
        strategies = tuple(parse_population(cfg["population"]))
        max_rounds = cfg["max_rounds"]
        if isinstance(max_rounds, bool) or not isinstance(max_rounds, int | np.integer) \
                or max_rounds < 1:
            raise ValueError(f"max_rounds must be a positive integer, got {max_rounds!r}")
        audit, audit_norm = cfg["signal_audit"], cfg["audit_norm"]
        if audit_norm is None and isinstance(audit, Real) and not isinstance(audit, bool) \
                and audit > 0:
            audit_norm = background_audit_norm(strategies)
        params = GameParams(
            num_agents=len(strategies),
            benefit=cfg["benefit"],
            cost=cfg["cost"],
            execution_error=cfg["execution_error"],
            assessment_error=cfg["assessment_error"],
            update_probability=cfg["update_probability"],
            initial_reputation=cfg["initial_reputation"],
            signal_audit=audit,
            audit_norm=audit_norm,
            observers_per_interaction=cfg["observers_per_interaction"],
        )
        return cls(strategies=strategies, params=params, max_rounds=int(max_rounds))

"""Validated environment configuration: population + institution + episode length.

The constructor keywords shared by ``env``, ``parallel_env``, ``make`` and ``make_parallel``
(spec §4) are parsed here, once, into an :class:`EnvConfig`. Every bad field raises a
``ValueError`` that names it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .core import GameParams
from .norms import NUM_ACTION_CONTEXTS, NUM_SIGNAL_CONTEXTS, Strategy, parse_strategy

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
}


def expand_population(population: Any, field: str = "population") -> list[Any]:
    """Expand ``{"count": k, "slot": spec}`` entries (the compact form used in files)."""
    if isinstance(population, str | bytes | Mapping) or not isinstance(population, Sequence):
        raise ValueError(f"{field} must be a list of slots ('focal' or a strategy spec), "
                         f"got {population!r}")
    counts: list[int | None] = []  # None: a single slot
    for i, entry in enumerate(population):
        if isinstance(entry, Mapping) and "count" in entry:
            extra = set(entry) - {"count", "slot"}
            count = entry["count"]
            if extra or "slot" not in entry:
                raise ValueError(f"{field}[{i}]: a repeated slot needs exactly the keys "
                                 f"'count' and 'slot', got {sorted(entry)}")
            if isinstance(count, bool) or not isinstance(count, int | np.integer) or count < 1:
                raise ValueError(f"{field}[{i}].count must be a positive integer, got {count!r}")
            counts.append(int(count))
        else:
            counts.append(None)
    num_slots = sum(1 if c is None else c for c in counts)
    check_memory(field, f"{num_slots} slots", num_slots * BYTES_PER_SLOT)
    slots: list[Any] = []
    for entry, count in zip(population, counts, strict=True):
        if count is None:
            slots.append(entry)
        else:
            slots.extend([entry["slot"]] * count)
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
        check_payoff_scale(cfg["benefit"], cfg["cost"])
        params = GameParams(
            num_agents=len(strategies),
            benefit=cfg["benefit"],
            cost=cfg["cost"],
            execution_error=cfg["execution_error"],
            assessment_error=cfg["assessment_error"],
            update_probability=cfg["update_probability"],
            initial_reputation=cfg["initial_reputation"],
        )
        return cls(strategies=strategies, params=params, max_rounds=int(max_rounds))


# -- size limits -------------------------------------------------------------------------------
#: Largest benefit and cost accepted. Payoffs are summed over rounds and games, and learners
#: turn them into float32 returns of up to ``b / (1 - gamma)``; beyond this scale sums overflow
#: to inf long before any learning signal is lost by rescaling (payoffs are relative to c).
MAX_PAYOFF = 1e6

#: Memory of one slot of a configuration (its parsed strategy and table rows), and of one
#: (game, slot) pair of the batched core during a round (reputations, the matchings and uniforms
#: of :class:`~reciprocity.envs.core.RoundNoise`, contexts, derangement candidates); measured
#: with ``tracemalloc`` (about 170 and 200 bytes) and rounded up.
BYTES_PER_SLOT = 256
BYTES_PER_GAME_SLOT = 256


def check_payoff_scale(benefit: Any, cost: Any) -> None:
    """Refuse a benefit or cost above :data:`MAX_PAYOFF` (other checks are the core's)."""
    for name, value in (("benefit", benefit), ("cost", cost)):
        if isinstance(value, int | float | np.number) and not isinstance(value, bool) \
                and abs(value) > MAX_PAYOFF:
            raise ValueError(f"{name} must be at most {MAX_PAYOFF:g} (payoffs are relative to "
                             f"the cost: rescale b and c), got {value!r}")


def available_memory() -> int | None:
    """Bytes of memory available to a new allocation (Linux ``MemAvailable``, else the physical
    memory), or None when unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, AttributeError):
        return None


def format_bytes(nbytes: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if nbytes < 1024 or unit == "GiB":
            return f"{nbytes:.0f} {unit}" if unit == "bytes" else f"{nbytes:.1f} {unit}"
        nbytes /= 1024
    raise AssertionError("unreachable")


def check_memory(field: str, what: str, nbytes: int) -> None:
    """Refuse a configuration whose estimated memory exceeds what is available, naming the field
    responsible and the bytes (before anything that large is allocated)."""
    available = available_memory()
    if available is not None and nbytes > available:
        raise ValueError(f"{field}: {what} would need about {format_bytes(nbytes)} of memory, "
                         f"more than the {format_bytes(available)} available")


def check_env_memory(config: EnvConfig, observation_size: int) -> None:
    """Refuse an environment whose per-step observations or core do not fit in memory.

    Args:
        config: the validated configuration.
        observation_size: length of one agent's observation vector (float32).
    """
    n, f = config.num_agents, int(config.focal_slots.size)
    # the observations of all focal agents, built once per step and kept by the caller
    observations = 2 * 4 * f * observation_size
    if observations > n * (BYTES_PER_SLOT + BYTES_PER_GAME_SLOT):
        check_memory("observation", f"observations of length {observation_size} for {f} "
                     "focal agents", observations + n * (BYTES_PER_SLOT + BYTES_PER_GAME_SLOT))
    else:
        check_memory("population", f"{n} slots",
                     observations + n * (BYTES_PER_SLOT + BYTES_PER_GAME_SLOT))

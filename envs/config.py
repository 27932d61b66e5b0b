"""Validated environment configuration: population + institution + episode length.

The constructor keywords shared by ``env``, ``parallel_env``, ``make`` and ``make_parallel``
(spec §4) are parsed here, once, into an :class:`EnvConfig`. Every bad field raises a
``ValueError`` that names it.

The episode length has two names: ``max_rounds`` (rounds) and PettingZoo's ``max_cycles``
(parallel steps, :attr:`EnvConfig.phases_per_round` per round). Either may be given; both only
if they agree.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
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


def merge_overrides(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """A scenario's constructor keywords ``base`` with a user's ``overrides``.

    ``max_cycles`` given without ``max_rounds`` sets the episode length, so the scenario's
    ``max_rounds`` is dropped instead of contradicting it.
    """
    merged = {**base, **overrides}
    if "max_cycles" in overrides and "max_rounds" not in overrides:
        merged.pop("max_rounds", None)
    return merged


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
        phases_per_round: parallel steps per round: act, then one assess step per observer of
            an interaction (``1 + observers_per_interaction``).
        max_cycles: parallel steps per episode, ``phases_per_round * max_rounds``.
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

    @property
    def phases_per_round(self) -> int:
        return 1 + self.params.observers_per_interaction

    @property
    def max_cycles(self) -> int:
        return self.phases_per_round * self.max_rounds

    @classmethod
    def from_kwargs(cls, max_cycles=None, **kwargs) -> EnvConfig:
        """Validate constructor keywords (:data:`DEFAULTS` fills the missing ones).

        ``max_cycles`` (parallel steps per episode) replaces ``max_rounds`` when that is not
        given; given together they must agree.
        """
        unknown = set(kwargs) - set(DEFAULTS)
        if unknown:
            raise ValueError(f"unknown configuration field(s) {sorted(unknown)}; "
                             f"known: {sorted([*DEFAULTS, 'max_cycles'])}")
        cfg = {**DEFAULTS, **kwargs}
        strategies = tuple(parse_population(cfg["population"]))
        max_rounds = cfg["max_rounds"]
        if not _positive_int(max_rounds):
            raise ValueError(f"max_rounds must be a positive integer, got {max_rounds!r}")
        check_payoff_scale(cfg["benefit"], cfg["cost"])
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
        config = cls(strategies=strategies, params=params, max_rounds=int(max_rounds))
        if max_cycles is None:
            return config
        rounds = _rounds_of_cycles(max_cycles, kwargs.get("max_rounds"), config.phases_per_round)
        return replace(config, max_rounds=rounds)


def _positive_int(value) -> bool:
    return not isinstance(value, bool) and isinstance(value, int | np.integer) and value >= 1


def _rounds_of_cycles(max_cycles, max_rounds, phases: int) -> int:
    """Rounds per episode for ``max_cycles`` parallel steps; ``max_rounds`` if given must agree."""
    if not _positive_int(max_cycles):
        raise ValueError(f"max_cycles must be a positive integer (parallel steps per episode), "
                         f"got {max_cycles!r}")
    rounds, rest = divmod(int(max_cycles), phases)
    if rest:
        raise ValueError(f"max_cycles must be a multiple of {phases} (the parallel steps of a "
                         f"round: act, then assess), got {max_cycles}")
    if max_rounds is not None and max_rounds != rounds:
        raise ValueError(f"max_cycles={max_cycles} ({rounds} rounds of {phases} "
                         f"parallel steps) disagrees with max_rounds={max_rounds}; give one")
    return rounds


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


#: Work beyond which a run is refused before it starts, in agent-rounds (games x rounds x agents
#: of the batched core): the core plays about 5e6 - 3e7 agent-rounds per second on one core, so
#: this is over a month of computing (a default benchmark cell plays about 1e9).
MAX_AGENT_ROUNDS = 10**14


def check_work(field: str, what: str, agent_rounds: int) -> None:
    """Refuse a run that would play more than :data:`MAX_AGENT_ROUNDS` (it would not finish),
    naming the field responsible, before anything is played."""
    if agent_rounds > MAX_AGENT_ROUNDS:
        raise ValueError(f"{field}: {what} would play about {agent_rounds:.1e} agent-rounds "
                         f"(games x rounds x agents), more than the {MAX_AGENT_ROUNDS:.0e} this "
                         "package plays in about a month; choose a smaller value")


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

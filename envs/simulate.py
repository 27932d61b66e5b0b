"""Run an all-scripted population on the batched core (spec §4)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .config import EnvConfig, strategy_tables
from .core import BatchedGame


@dataclass
class SimulationResult:
    """Statistics of a simulation.

    Attributes:
        good_fraction: (rounds,), fraction of Good reputations at the end of each round,
            averaged over agents and games.
        cooperation_rate: (rounds,), fraction of donors whose executed action was C in each
            round, averaged over agents and games.
        payoffs: (N,), mean payoff per round of each agent (averaged over rounds and games).
        final_reputation: (num_envs, N), reputations after the last round.
    """

    good_fraction: np.ndarray
    cooperation_rate: np.ndarray
    payoffs: np.ndarray
    final_reputation: np.ndarray


def simulate(population, rounds: int, *, benefit: float, cost: float, execution_error: float,
             assessment_error: float, update_probability: float = 1.0, num_envs: int = 1,
             seed: int | np.random.Generator | None = None,
             initial_reputation: str | float = "good", signal_audit: float = 0.0,
             audit_norm=None, observers_per_interaction: int = 1,
             **unknown) -> SimulationResult:
    """Simulate ``num_envs`` independent games of a population of N scripted strategy specs.

    Args:
        population: list of N strategy specs (no ``"focal"`` slots).
        rounds: number of rounds to play.
        benefit, cost, execution_error, assessment_error, update_probability: the institution,
            as for the environments.
        initial_reputation, signal_audit, audit_norm, observers_per_interaction: likewise.
        num_envs: games played in parallel (B).
        seed: seed for the generator.
    """
    if unknown:
        raise ValueError(f"simulate: unknown configuration field(s) {sorted(unknown)}")
    if isinstance(rounds, bool) or not isinstance(rounds, int | np.integer) or rounds < 1:
        raise ValueError(f"rounds must be a positive integer, got {rounds!r}")
    config = EnvConfig.from_kwargs(
        population=population, benefit=benefit, cost=cost, execution_error=execution_error,
        assessment_error=assessment_error, update_probability=update_probability,
        initial_reputation=initial_reputation, signal_audit=signal_audit, audit_norm=audit_norm,
        observers_per_interaction=observers_per_interaction)
    if config.focal_slots.size:
        raise ValueError(f"population: simulate needs scripted strategies only; slots "
                         f"{config.focal_slots.tolist()} are 'focal'")
    action, assess = strategy_tables(config.strategies)
    game = BatchedGame(config.params, action, assess, batch=num_envs, seed=seed)
    good = np.empty(rounds)
    coop = np.empty(rounds)
    total = np.zeros(config.num_agents)
    for t in range(rounds):
        record = game.play_round()
        good[t] = record.reputation_after.mean()
        coop[t] = record.actions.mean()
        total += record.payoffs.mean(axis=0)
    return SimulationResult(good_fraction=good, cooperation_rate=coop, payoffs=total / rounds,
                            final_reputation=game.reputation.copy())

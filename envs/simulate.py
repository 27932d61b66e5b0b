"""Run an all-scripted population on the batched core (spec §4): :func:`simulate` for a list of
strategies, :func:`play_scenario` for a scenario whose focal slots all follow one strategy."""

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
        records: the public record of game 0 in every round (``RoundRecord.public(0)``), when
            asked for; else None.
    """

    good_fraction: np.ndarray
    cooperation_rate: np.ndarray
    payoffs: np.ndarray
    final_reputation: np.ndarray
    records: list[dict] | None = None


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
    return _play(config, config.strategies, rounds, num_envs, seed, keep_records=False)


def play_scenario(scenario, focal, rounds: int, *, num_envs: int = 1,
                  seed: int | np.random.Generator | None = None,
                  keep_records: bool = False) -> SimulationResult:
    """Play a scenario on the core with every focal slot following the strategy spec ``focal``
    (e.g. ``"disc+L6"``), its background as the scenario says.

    Args:
        scenario: a scenario id, file or :class:`~reciprocity.envs.scenarios.Scenario`.
        focal: the strategy spec every focal slot plays.
        rounds, num_envs, seed: as :func:`simulate`.
        keep_records: also return the public record of game 0 in every round (``records``).
    """
    from .norms import parse_strategy
    from .scenarios import get_scenario

    if isinstance(rounds, bool) or not isinstance(rounds, int | np.integer) or rounds < 1:
        raise ValueError(f"rounds must be a positive integer, got {rounds!r}")
    config = get_scenario(scenario).env_config
    strategy = parse_strategy(focal, field="focal")
    strategies = [strategy if s is None else s for s in config.strategies]
    return _play(config, strategies, rounds, num_envs, seed, keep_records=keep_records)


def _play(config: EnvConfig, strategies, rounds: int, num_envs: int, seed,
          keep_records: bool) -> SimulationResult:
    action, assess = strategy_tables(strategies)
    game = BatchedGame(config.params, action, assess, batch=num_envs, seed=seed)
    good = np.empty(rounds)
    coop = np.empty(rounds)
    total = np.zeros(config.num_agents)
    records = [] if keep_records else None
    for t in range(rounds):
        record = game.play_round()
        good[t] = record.reputation_after.mean()
        coop[t] = record.actions.mean()
        total += record.payoffs.mean(axis=0)
        if keep_records:
            records.append(record.public(0))
    return SimulationResult(good_fraction=good, cooperation_rate=coop, payoffs=total / rounds,
                            final_reputation=game.reputation.copy(), records=records)

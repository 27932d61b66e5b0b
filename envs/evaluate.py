"""Evaluate focal policies on the batched core with common random numbers.

Used for the learners' evaluation episodes and for the exhaustive reference search: P candidate
sets of focal tables are each played on the same E games — same matchings, observers, error
draws and initial reputations (common random numbers), so differences between candidates are
not drowned in game-to-game noise.
"""

from __future__ import annotations

import numpy as np

from .config import EnvConfig, strategy_tables
from .core import BatchedGame, sample_round_noise


def evaluate_focal_tables(env_config: EnvConfig, action_tables, signal_tables, *,
                          num_envs: int = 32, rounds: int | None = None, seed: int = 0,
                          max_games_per_chunk: int = 1 << 17) -> np.ndarray:
    """Mean payoff per round of every focal slot under P candidate sets of focal tables.

    Args:
        env_config: the scenario's configuration (background strategies are taken from it).
        action_tables: (P, F, 4) P(intend C | 2x + y) of each focal slot (index order).
        signal_tables: (P, F, 8) P(signal Good | 4x + 2y + a) of each focal slot.
        num_envs: E, games per candidate (shared by all candidates).
        rounds: rounds per game (default: the scenario's ``max_rounds``, i.e. one episode from
            the initial reputations).
        seed: seed of the common random numbers.
        max_games_per_chunk: candidates are played in chunks of at most this many games; every
            chunk replays the same random numbers.
    Returns:
        (P, E, F): per game, each focal slot's mean payoff per round.
    """
    action_tables = np.asarray(action_tables, dtype=np.float64)
    signal_tables = np.asarray(signal_tables, dtype=np.float64)
    focal = env_config.focal_slots
    n, f = env_config.num_agents, focal.size
    num_candidates = action_tables.shape[0]
    if action_tables.shape != (num_candidates, f, 4) or \
            signal_tables.shape != (num_candidates, f, 8):
        raise ValueError(f"tables must have shapes (P, {f}, 4) and (P, {f}, 8), got "
                         f"{action_tables.shape} and {signal_tables.shape}")
    rounds = env_config.max_rounds if rounds is None else rounds
    background_action, background_assess = strategy_tables(env_config.strategies)
    chunk = max(1, max_games_per_chunk // num_envs)
    out = np.empty((num_candidates, num_envs, f))
    for start in range(0, num_candidates, chunk):
        stop = min(start + chunk, num_candidates)
        p = stop - start
        action = np.broadcast_to(background_action, (p, n, 4)).copy()
        assess = np.broadcast_to(background_assess, (p, n, 8)).copy()
        action[:, focal] = action_tables[start:stop]
        assess[:, focal] = signal_tables[start:stop]
        groups = np.repeat(np.arange(p), num_envs)
        rng = np.random.default_rng(seed)
        game = BatchedGame(env_config.params, action, assess, batch=p * num_envs,
                           table_groups=groups)
        # initial reputations drawn once for the E games and shared by all candidates
        init = BatchedGame(env_config.params, background_action, background_assess,
                           batch=num_envs, seed=rng).reputation
        game.reputation = np.tile(init, (p, 1))
        total = np.zeros((p * num_envs, f))
        for _ in range(rounds):
            noise = sample_round_noise(rng, num_envs, n, **env_config.params.noise_options())
            record = game.play_round(noise.tile(p))
            total += record.payoffs[:, focal]
        out[start:stop] = (total / rounds).reshape(p, num_envs, f)
    return out

"""Paired games: candidate focal tables played on the same games (common random numbers).

The mechanics under the evaluation protocol (:mod:`reciprocity.evaluation`): the learners'
evaluation games and the exhaustive reference search. P candidate sets of focal tables are each
played on the same E games — same matchings, observers, error draws and initial reputations
(common random numbers), so differences between candidates are not drowned in game-to-game
noise. Payoffs can be averaged over several windows of rounds of the same games (an episode from
the initial reputations, and a long-run window after a burn-in).

A focal slot's signals may depend on its own reputation (a policy over PettingZoo observations,
whose assess observation carries the observer's reputation): its signal table then has two rows,
own Bad and own Good, and in every round it assesses with the row of the reputation it has at
the start of the round (reputations change only at its end).
"""

from __future__ import annotations

import numpy as np

from .config import EnvConfig, strategy_tables
from .core import BatchedGame, sample_round_noise


def play_focal_tables(env_config: EnvConfig, action_tables, signal_tables, windows, *,
                      num_envs: int = 32, seed: int = 0,
                      max_games_per_chunk: int = 1 << 17, on_round=None) -> np.ndarray:
    """Mean payoff per round of every focal slot in several windows of rounds of the same games.

    Every game starts from the scenario's initial reputations and is played for
    ``max(stop)`` rounds; window ``(start, stop)`` averages rounds ``start .. stop - 1``
    (0-based). One pass serves e.g. an episode from the initial reputations, ``(0, max_rounds)``,
    and a long-run window after a burn-in, ``(burn_in, burn_in + rounds)``.

    Args:
        env_config: the scenario's configuration (background strategies are taken from it).
        action_tables: (P, F, 4) P(intend C | 2x + y) of each focal slot (index order).
        signal_tables: (P, F, 8) P(signal Good | 4x + 2y + a) of each focal slot, or
            (P, F, 2, 8) with a row per own reputation of the observer (own Bad, own Good):
            the same random numbers are drawn, so equal rows give exactly the (P, F, 8)
            payoffs.
        windows: sequence of W ``(start, stop)`` pairs, ``0 <= start < stop``.
        num_envs: E, games per candidate (shared by all candidates).
        seed: seed of the common random numbers.
        max_games_per_chunk: candidates are played in chunks of at most this many games; every
            chunk replays the same random numbers.
        on_round: called after every round of every chunk (e.g. a progress bar's update); the
            rounds to play are ``max(stop) x ceil(P / chunk)``, chunk = max_games_per_chunk // E.
    Returns:
        (W, P, E, F): per window and game, each focal slot's mean payoff per round.
    """
    action_tables = np.asarray(action_tables, dtype=np.float64)
    signal_tables = np.asarray(signal_tables, dtype=np.float64)
    focal = env_config.focal_slots
    n, f = env_config.num_agents, focal.size
    num_candidates = action_tables.shape[0]
    by_own_reputation = signal_tables.ndim == 4
    if action_tables.shape != (num_candidates, f, 4) or signal_tables.shape != \
            ((num_candidates, f, 2, 8) if by_own_reputation else (num_candidates, f, 8)):
        raise ValueError(f"tables must have shapes (P, {f}, 4) and (P, {f}, 8) or "
                         f"(P, {f}, 2, 8), got {action_tables.shape} and {signal_tables.shape}")
    windows = [(int(a), int(b)) for a, b in windows]
    if not windows or any(not 0 <= a < b for a, b in windows):
        raise ValueError(f"windows must be (start, stop) pairs with 0 <= start < stop, "
                         f"got {windows}")
    rounds = max(b for _, b in windows)
    background_action, background_assess = strategy_tables(env_config.strategies)
    chunk = max(1, max_games_per_chunk // num_envs)
    out = np.empty((len(windows), num_candidates, num_envs, f))
    for start in range(0, num_candidates, chunk):
        stop = min(start + chunk, num_candidates)
        p = stop - start
        action = np.broadcast_to(background_action, (p, n, 4)).copy()
        assess = np.broadcast_to(background_assess, (p, n, 8)).copy()
        action[:, focal] = action_tables[start:stop]
        # with a row per own reputation, the focal rows here (own Good) are overridden each round
        assess[:, focal] = signal_tables[start:stop, :, 1] if by_own_reputation \
            else signal_tables[start:stop]
        groups = np.repeat(np.arange(p), num_envs)
        rng = np.random.default_rng(seed)
        game = BatchedGame(env_config.params, action, assess, batch=p * num_envs,
                           table_groups=groups)
        # initial reputations drawn once for the E games and shared by all candidates
        init = BatchedGame(env_config.params, background_action, background_assess,
                           batch=num_envs, seed=rng).reputation
        game.reputation = np.tile(init, (p, 1))
        # cumulative[t] = focal payoffs summed over rounds 0 .. t - 1, at the window bounds only
        bounds = sorted({t for w in windows for t in w})
        cumulative = {0: np.zeros((p * num_envs, f))}
        total = np.zeros((p * num_envs, f))
        for t in range(rounds):
            noise = sample_round_noise(rng, num_envs, n, **env_config.params.noise_options())
            if by_own_reputation:
                record = _round_by_own_reputation(game, noise.tile(p), focal,
                                                  signal_tables[start:stop], groups)
            else:
                record = game.play_round(noise.tile(p))
            total += record.payoffs[:, focal]
            if t + 1 in bounds:
                cumulative[t + 1] = total.copy()
            if on_round is not None:
                on_round()
        for k, (a, b) in enumerate(windows):
            out[k, start:stop] = ((cumulative[b] - cumulative[a]) / (b - a)).reshape(
                p, num_envs, f)
    return out


def _round_by_own_reputation(game: BatchedGame, noise, focal: np.ndarray,
                             signal_tables: np.ndarray, groups: np.ndarray):
    """``game.play_round(noise)`` with each focal observer signalling by the row of its
    (P, F, 2, 8) signal table for its own reputation, from the same uniforms the core uses."""
    game.begin_round(noise)
    game.act()
    donors = game.observed_donors()[..., focal]      # (B, F), or (B, k, F) with k observers
    lead = (slice(None),) + (None,) * (donors.ndim - 2)  # (B, ...) -> broadcast over phases
    contexts = np.take_along_axis(game.signal_contexts()[lead], donors, axis=-1)
    uniforms = np.take_along_axis(noise.signal_u, donors, axis=-1)
    own = game.reputation[:, focal][lead]           # at the start of the round, still
    prob = signal_tables[groups[(slice(None), *(None,) * (donors.ndim - 1))],
                         np.arange(focal.size), own, contexts]
    return game.assess(focal, (uniforms < prob).view(np.int8))


def evaluate_focal_tables(env_config: EnvConfig, action_tables, signal_tables, *,
                          num_envs: int = 32, rounds: int | None = None, burn_in: int = 0,
                          seed: int = 0, max_games_per_chunk: int = 1 << 17,
                          on_round=None) -> np.ndarray:
    """Mean payoff per round of every focal slot under P candidate sets of focal tables.

    Args:
        env_config, action_tables, signal_tables, num_envs, seed, max_games_per_chunk: as in
            :func:`play_focal_tables`.
        rounds: rounds averaged per game (default: the scenario's ``max_rounds``).
        burn_in: rounds played first and not counted (0: one episode from the initial
            reputations; see :func:`reciprocity.evaluation.burn_in_rounds` for the long run).
    Returns:
        (P, E, F): per game, each focal slot's mean payoff per round.
    """
    rounds = env_config.max_rounds if rounds is None else rounds
    return play_focal_tables(env_config, action_tables, signal_tables,
                             [(burn_in, burn_in + rounds)], num_envs=num_envs, seed=seed,
                             max_games_per_chunk=max_games_per_chunk, on_round=on_round)[0]

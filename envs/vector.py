"""A learner-facing batched shell over the core: G games, focal decisions as arrays.

PettingZoo steps one game with dicts; learners that train many games (and many seeds) at once
use :class:`VectorGame` instead. It is the same core (:class:`~reciprocity.envs.core.BatchedGame`)
and the same phases per round (act, then k = ``assess_phases`` assess phases, k = 1 unless the
scenario has several observers per interaction), with focal observations, decisions and rewards
as arrays of shape (G, F) — G games, F focal slots — and every round's public record.

    game = VectorGame(config, num_games=64, seed=0)
    game.reset()
    while ...:
        ctx = game.action_contexts()          # (G, F) in 0..3: 2 * own_rep + recipient_rep
        rewards = game.act(intents)           # (G, F) payoffs of this round
        ctx = game.signal_contexts(phase)     # (G, F) in 0..7: 4 x + 2 y + a of the interaction
                                              # observed in assess phase 0 <= phase < k
        record = game.assess(signals)         # (G, F), or (G, k, F): one per phase; ends the
                                              # round (RoundRecord); the next round has begun
        if game.done: game.reset()
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import fields

import numpy as np

from .config import EnvConfig, strategy_tables
from .core import BatchedGame, RoundNoise, RoundRecord, sample_round_noise


class VectorGame:
    """G lock-stepped games of one configuration with its focal slots driven from outside.

    Args:
        config: a validated :class:`~reciprocity.envs.config.EnvConfig` (e.g.
            ``get_scenario(id).env_config``) with at least one focal slot.
        num_games: G.
        seed: seed or generator; or a list of S seeds or generators (independent streams):
            then the G games are S equal blocks of consecutive games, and block s draws its
            initial reputations and every round's matchings and noise from stream s alone, so
            its games do not depend on the other blocks (one block per training seed).
    """

    def __init__(self, config: EnvConfig, num_games: int, seed=None):
        self.config = config
        self.focal_slots = config.focal_slots
        if self.focal_slots.size == 0:
            raise ValueError("population: VectorGame needs at least one 'focal' slot")
        self.streams = None
        if isinstance(seed, Sequence):
            self.streams = self._streams(seed, num_games)
            seed = 0  # the core's own generator is then never used for the games' randomness
        action, assess = strategy_tables(config.strategies)
        self.core = BatchedGame(config.params, action, assess, batch=num_games, seed=seed)
        self.num_games = num_games
        self.max_rounds = config.max_rounds
        self.assess_phases = config.params.observers_per_interaction  # k

    @staticmethod
    def _streams(seeds: Sequence, num_games: int) -> list[np.random.Generator]:
        if not seeds or num_games % len(seeds):
            raise ValueError(f"seed: {len(seeds)} streams cannot split {num_games} games into "
                             "equal blocks")
        return [s if isinstance(s, np.random.Generator) else np.random.default_rng(s)
                for s in seeds]

    @property
    def num_focal(self) -> int:
        return int(self.focal_slots.size)

    @property
    def done(self) -> bool:
        """True when the episode (``max_rounds`` rounds) is over; call :meth:`reset`."""
        return self.core.round >= self.max_rounds

    @property
    def reputation(self) -> np.ndarray:
        """Public reputations now, (G, N) int8."""
        return self.core.reputation

    def reset(self, seed=None) -> None:
        """Start new episodes in all games and begin their first round."""
        if self.streams is None:
            self.core.reset(seed)
        else:
            if seed is not None:
                self.streams = self._streams(seed, self.num_games)
            self.core.reset()
            p0 = self.config.params.initial_reputation
            if not isinstance(p0, str):  # Bernoulli(p0), drawn as the core does, per stream
                shape = (self.num_games // len(self.streams), self.config.num_agents)
                self.core.reputation = np.concatenate(
                    [(rng.random(shape) < p0).astype(np.int8) for rng in self.streams])
        self._begin_round()

    def _begin_round(self) -> None:
        if self.streams is None:
            self.core.begin_round()
            return
        block, n = self.num_games // len(self.streams), self.config.num_agents
        self.core.begin_round(concatenate_noise(
            [sample_round_noise(rng, block, n, **self.config.params.noise_options())
             for rng in self.streams]))

    def action_contexts(self) -> np.ndarray:
        """Each focal agent's action context ``2 * own_rep + recipient_rep``, (G, F)."""
        return self.core.action_contexts()[:, self.focal_slots]

    def act(self, intents: np.ndarray) -> np.ndarray:
        """Focal intended actions (G, F) in {0, 1}; returns the focal payoffs (G, F)."""
        intents = self._check(intents, "intents")
        self._actions, payoffs = self.core.act(self.focal_slots, intents)
        return payoffs[:, self.focal_slots]

    def observed_donors(self, phase: int = 0) -> np.ndarray:
        """The donor each focal agent observes in assess phase ``phase`` this round, (G, F)."""
        return self.core.observed_donors(phase)[:, self.focal_slots]

    def signal_contexts(self, phase: int = 0) -> np.ndarray:
        """Context ``4 x + 2 y + a`` of the interaction each focal agent observes in assess phase
        ``phase`` (0 <= phase < k), (G, F)."""
        return np.take_along_axis(self.core.signal_contexts(), self.observed_donors(phase),
                                  axis=1)

    def assess(self, signals: np.ndarray) -> RoundRecord:
        """Focal signals in {0, 1}, (G, F), or (G, k, F) with one per assess phase; ends the
        round, begins the next unless done."""
        k = self.assess_phases
        signals = self._check(signals, "signals", k if k > 1 or np.ndim(signals) == 3 else None)
        record = self.core.assess(self.focal_slots, signals)
        if not self.done:
            self._begin_round()
        return record

    # -- checkpointing ---------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """Everything the following rounds depend on, as plain data (NumPy arrays, ints, dicts):
        reputations, the completed rounds, the draws of the round that has begun and the state
        of every random stream. Taken between rounds (after :meth:`reset` or :meth:`assess`)."""
        noise = self.core.noise
        if noise is None:
            raise RuntimeError("state_dict: no round has begun (call reset first)")
        return {"reputation": self.core.reputation.copy(), "round": int(self.core.round),
                "noise": {f.name: getattr(noise, f.name) for f in fields(noise)},
                "core_rng": self.core.rng.bit_generator.state,
                "streams": None if self.streams is None else
                [rng.bit_generator.state for rng in self.streams]}

    def load_state_dict(self, state: dict) -> None:
        """Continue exactly where :meth:`state_dict` was taken."""
        if (state["streams"] is None) != (self.streams is None) or (
                self.streams is not None and len(state["streams"]) != len(self.streams)):
            raise ValueError("game state: its random streams do not match this game's")
        self.core.reset()
        self.core.reputation = np.array(state["reputation"], dtype=np.int8)
        self.core.round = int(state["round"])
        self.core.rng.bit_generator.state = state["core_rng"]
        for rng, rng_state in zip(self.streams or [], state["streams"] or [], strict=True):
            rng.bit_generator.state = rng_state
        self.core.begin_round(RoundNoise(**state["noise"]))

    def _check(self, values, name: str, phases: int | None = None) -> np.ndarray:
        """Decisions (G, F), or (G, phases, F), as int8 0/1; a ValueError names the agent."""
        arr = np.asarray(values)
        shape = (self.num_games, self.num_focal) if phases is None else \
            (self.num_games, phases, self.num_focal)
        if arr.shape != shape:
            raise ValueError(f"{name} must have shape {shape}, got {arr.shape}")
        if not np.isin(arr, (0, 1)).all():
            bad = np.argwhere(~np.isin(arr, (0, 1)))[0]
            raise ValueError(f"{name}: agent_{self.focal_slots[bad[-1]]} in game {bad[0]} gave "
                             f"{arr[tuple(bad)]!r}; decisions must be 0 or 1")
        return arr.astype(np.int8)


def concatenate_noise(parts: Sequence[RoundNoise]) -> RoundNoise:
    """The round noise of consecutive blocks of games as one batch (fields joined along the game
    axis; a field left ``None`` by every block stays ``None``)."""
    if len(parts) == 1:
        return parts[0]
    joined = {}
    for f in fields(RoundNoise):
        values = [getattr(p, f.name) for p in parts]
        joined[f.name] = None if all(v is None for v in values) else np.concatenate(values)
    return RoundNoise(**joined)


def observations(contexts: np.ndarray, phase: int, own_rep: np.ndarray) -> np.ndarray:
    """PettingZoo-layout observations ``[phase, donor_rep, action, recipient_rep, own_rep]``
    from context indices (any shape), as float32 with a trailing axis of 5."""
    contexts = np.asarray(contexts)
    obs = np.zeros((*contexts.shape, 5), dtype=np.float32)
    obs[..., 0] = phase
    if phase == 0:
        obs[..., 1] = contexts >> 1
        obs[..., 3] = contexts & 1
    else:
        obs[..., 1] = contexts >> 2
        obs[..., 2] = contexts & 1
        obs[..., 3] = (contexts >> 1) & 1
    obs[..., 4] = own_rep
    return obs

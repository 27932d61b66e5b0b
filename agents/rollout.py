"""Collect experience for batched learners on a :class:`~reciprocity.envs.vector.VectorGame`.

Layout: S seeds x B games per seed = G games (game ``g = s * B + b``), F focal slots per game,
one learner per (seed, focal slot), so policies have ``batch_shape == (S, F)``. Per-learner
tensors in a :class:`Rollout` have shape (T, S, F, B): T rounds, and for each learner its B
games; decisions of the assess phases have shape (T k, S, F, B) with k assess phases per round
(k observers per interaction; 1 in the plain game). Each learner only ever sees its own games.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..envs.core import RoundRecord
from ..envs.vector import VectorGame
from .policy import ReputationPolicy

PUBLIC_FIELDS = RoundRecord.PUBLIC_FIELDS


@dataclass
class Rollout:
    """T rounds of experience.

    Learner-indexed tensors, shape (T, S, F, B):
        action_contexts (long, 0..3), actions (intended, 0/1), rewards (payoff of the round),
        own_rep (own reputation during the round, 0/1; the same at act and assess, since
        reputations update only at round end);
    and, shape (T k, S, F, B), one entry per assess phase (round t, phase j at ``t k + j``):
        signal_contexts (long, 0..7), signals (emitted before the assessment error, 0/1).
    ``last_round`` (T,) bool: the round ended an episode.
    ``public``: the public record, numpy arrays (T, G, N), one per ``RoundRecord.PUBLIC_FIELDS``.
    """

    action_contexts: torch.Tensor
    actions: torch.Tensor
    signal_contexts: torch.Tensor
    signals: torch.Tensor
    rewards: torch.Tensor
    own_rep: torch.Tensor
    last_round: torch.Tensor
    public: dict[str, np.ndarray]

    @property
    def num_rounds(self) -> int:
        return self.actions.shape[0]

    @property
    def assess_phases(self) -> int:
        """k, assess decisions per round."""
        return self.signals.shape[0] // self.actions.shape[0]


def to_learner_layout(values: np.ndarray, num_seeds: int) -> np.ndarray:
    """(G, F) -> (S, F, B)."""
    g, f = values.shape
    return values.reshape(num_seeds, g // num_seeds, f).transpose(0, 2, 1)


def to_game_layout(values: np.ndarray) -> np.ndarray:
    """(S, F, B) -> (G, F)."""
    s, f, b = values.shape
    return values.transpose(0, 2, 1).reshape(s * b, f)


def sample(probs: torch.Tensor, contexts: np.ndarray,
           rng: np.random.Generator | Sequence[np.random.Generator]) -> np.ndarray:
    """Draw 0/1 decisions: probs (S, F, K) tables, contexts (S, F, B) -> (S, F, B) int8.

    ``rng``: one generator, or one per seed (S): then seed s's draws come from its own.
    """
    p = torch.gather(probs, -1, torch.as_tensor(contexts, dtype=torch.long,
                                                device=probs.device)).cpu().numpy()
    if isinstance(rng, np.random.Generator):
        u = rng.random(p.shape)
    else:
        u = np.stack([r.random(p.shape[1:]) for r in rng])
    return (u < p).astype(np.int8)


@torch.no_grad()
def collect(game: VectorGame, policy: ReputationPolicy, rounds: int,
            rng: np.random.Generator | Sequence[np.random.Generator], num_seeds: int) -> Rollout:
    """Play ``rounds`` rounds in every game with the policy's current (stochastic) heads.

    ``rng`` draws the decisions: one generator, or one per seed (see :func:`sample`).

    Starts a new episode whenever one ends (the game must have been reset once).
    """
    act_probs, sig_probs = policy.tables()
    keys = ("action_contexts", "actions", "rewards", "own_rep")
    out = {k: [] for k in (*keys, "signal_contexts", "signals")}
    public = {k: [] for k in PUBLIC_FIELDS}
    last = []
    for _ in range(rounds):
        a_ctx = to_learner_layout(game.action_contexts(), num_seeds)
        own = a_ctx >> 1
        actions = sample(act_probs, a_ctx, rng)
        rewards = to_learner_layout(game.act(to_game_layout(actions)), num_seeds)
        for k, v in zip(keys, (a_ctx, actions, rewards, own), strict=True):
            out[k].append(v)
        phase_signals = []
        for phase in range(game.assess_phases):
            s_ctx = to_learner_layout(game.signal_contexts(phase), num_seeds)
            signals = sample(sig_probs, s_ctx, rng)
            out["signal_contexts"].append(s_ctx)
            out["signals"].append(signals)
            phase_signals.append(to_game_layout(signals))
        record = game.assess(np.stack(phase_signals, axis=1))
        for k in PUBLIC_FIELDS:
            public[k].append(getattr(record, k))
        last.append(game.done)
        if game.done:
            game.reset()
    device = act_probs.device
    tensors = {k: torch.as_tensor(np.stack(v), device=device) for k, v in out.items()}
    for k in ("action_contexts", "signal_contexts"):
        tensors[k] = tensors[k].long()
    tensors["rewards"] = tensors["rewards"].float()
    return Rollout(**tensors, last_round=torch.as_tensor(last, device=device),
                   public={k: np.stack(v) for k, v in public.items()})

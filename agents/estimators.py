"""Private estimators of the other agents' policies, fitted to the public record only.

For every agent j (by slot index) a learner keeps

* an action model  pi_j(C | x, y): probability that j's *executed* action is C when j's
  reputation is x and its recipient's is y (so it already contains the execution error);
* a signal model sigma_j(Good | x, y, a): probability that the *published* signal of j, as an
  observer of a donor with reputation x who played a against a recipient of reputation y, is
  Good (so it already contains the assessment error).

The data are the public record only: matchings, observers, reputations before the round,
executed actions and published signals (never intended actions, unflipped signals or rules).
With k observers per interaction each of the k published signals is attributed to its own
observer.
The fit is the maximum-likelihood estimate of each Bernoulli cell (successes / trials) regularised
towards the pooled estimate over all agents by ``prior`` pseudo-counts — the posterior mean under
a Beta prior centred on the pooled rate. Pooling lets a rarely-seen agent-context borrow strength
from the population while agents stay distinguishable. Counts decay by ``decay`` per update so
that non-stationary agents (other learners) are tracked.

Statistics are kept per seed: shape (S, N, K). All learners of one seed see the same public
record, so they share one estimator (nothing private is pooled).
"""

from __future__ import annotations

import numpy as np
import torch

from ..envs.norms import NUM_ACTION_CONTEXTS, NUM_SIGNAL_CONTEXTS


class PublicEstimators:
    """Count-based estimators of every agent's action and signal behaviour.

    Args:
        num_seeds: S, independent worlds (one per training seed).
        num_agents: N.
        prior: pseudo-counts towards the pooled estimate (> 0).
        decay: multiplicative forgetting of counts per :meth:`update` call, in (0, 1].
    """

    def __init__(self, num_seeds: int, num_agents: int, prior: float = 2.0, decay: float = 1.0):
        if not prior > 0:
            raise ValueError(f"estimator_prior must be > 0, got {prior!r}")
        if not 0 < decay <= 1:
            raise ValueError(f"estimator_decay must lie in (0, 1], got {decay!r}")
        self.num_seeds, self.num_agents = num_seeds, num_agents
        self.prior, self.decay = prior, decay
        self.action_trials = np.zeros((num_seeds, num_agents, NUM_ACTION_CONTEXTS))
        self.action_successes = np.zeros_like(self.action_trials)
        self.signal_trials = np.zeros((num_seeds, num_agents, NUM_SIGNAL_CONTEXTS))
        self.signal_successes = np.zeros_like(self.signal_trials)

    def update(self, public: dict[str, np.ndarray]) -> None:
        """Add T rounds of public record (arrays (T, G, N), G = S * B games, seed-major;
        ``observers`` and ``signals`` (T, G, k, N) with k observers per interaction)."""
        for arr in (self.action_trials, self.action_successes, self.signal_trials,
                    self.signal_successes):
            arr *= self.decay
        rep = public["reputation_before"].astype(np.int64)
        recipients = public["recipients"]
        actions = public["actions"].astype(np.int64)
        _, g, n = rep.shape
        s = self.num_seeds
        rec_rep = np.take_along_axis(rep, recipients, axis=2)
        seed = np.broadcast_to((np.arange(g) // (g // s))[None, :, None], rep.shape)
        donor = np.broadcast_to(np.arange(n)[None, None, :], rep.shape)
        # donors: executed action in action context (x, y)
        ctx = 2 * rep + rec_rep
        self._add(self.action_trials, self.action_successes, seed, donor, ctx, actions)
        # observers: published signal about the donor in signal context (x, y, a), for every one
        # of the k observers of the interaction (axis 2)
        observers = public["observers"].reshape(rep.shape[0], g, -1, n)   # (T, G, k, N)
        signals = public["signals"].reshape(observers.shape)
        ctx = (4 * rep + 2 * rec_rep + actions)[:, :, None]
        self._add(self.signal_trials, self.signal_successes, seed[:, :, None], observers,
                  np.broadcast_to(ctx, observers.shape), signals)

    @staticmethod
    def _add(trials, successes, seed, agent, ctx, outcome):
        _, n, k = trials.shape
        flat = ((seed * n + agent) * k + ctx).ravel()
        size = trials.size
        trials += np.bincount(flat, minlength=size).reshape(trials.shape)
        successes += np.bincount(flat, weights=outcome.ravel().astype(np.float64),
                                 minlength=size).reshape(trials.shape)

    def _estimate(self, trials, successes) -> np.ndarray:
        pooled = (successes.sum(axis=1, keepdims=True) + 0.5) / (trials.sum(axis=1, keepdims=True)
                                                                 + 1.0)
        return (successes + self.prior * pooled) / (trials + self.prior)

    def action_probs(self) -> np.ndarray:
        """pi_j(C | 2x + y): (S, N, 4), executed-action probabilities."""
        return self._estimate(self.action_trials, self.action_successes)

    def signal_probs(self) -> np.ndarray:
        """sigma_j(Good | 4x + 2y + a): (S, N, 8), published-signal probabilities."""
        return self._estimate(self.signal_trials, self.signal_successes)

    def tensors(self, dtype=torch.float32, device="cpu") -> tuple[torch.Tensor, torch.Tensor]:
        """(action (S, N, 4), signal (S, N, 8)) as torch tensors (constants)."""
        return (torch.as_tensor(self.action_probs(), dtype=dtype, device=device),
                torch.as_tensor(self.signal_probs(), dtype=dtype, device=device))

    def state_dict(self) -> dict:
        return {k: getattr(self, k).copy() for k in
                ("action_trials", "action_successes", "signal_trials", "signal_successes")}

    def load_state_dict(self, state: dict) -> None:
        for k, v in state.items():
            getattr(self, k)[...] = v

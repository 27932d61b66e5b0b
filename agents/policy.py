"""The policy shared by all learners: an action head and a signal head.

* action head: P(C | x, y) over the 4 action contexts ``2 x + y`` (x = own reputation,
  y = recipient's reputation);
* signal head: P(Good | x, y, a) over the 8 signal contexts ``4 x + 2 y + a`` (x = donor's
  reputation, y = recipient's, a = the donor's executed action).

One :class:`ReputationPolicy` holds many *independent* learners at once, with parameters of
shape ``(*batch_shape, ...)`` — e.g. ``(seeds, focal_slots)`` — so that seeds and agents train in
one process with batched tensor operations. Parameterisation: ``"tabular"`` logits (default:
4 + 8 free logits per learner) or ``"mlp"``: one small tanh MLP per learner, shared by both heads,
reading the PettingZoo observation ``[phase, donor_rep, action, recipient_rep, own_rep]`` (the
input a generic MARL policy network gets; the phase entry tells the heads apart, so what one head
learns moves the other through the shared hidden layer). The signal head is P(Good | x, y, a)
by definition (spec §5), so in the assess phase the observer's own reputation is not an input:
that entry is held at 0. Because the context space is tiny, both kinds are always evaluated on
every context (4 act observations, 8 assess observations), so the heads are full probability
tables.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from ..envs.vector import observations

NUM_ACTION_CONTEXTS = 4
NUM_SIGNAL_CONTEXTS = 8
POLICY_KINDS = ("tabular", "mlp")


def context_observations() -> torch.Tensor:
    """(12, 5) PettingZoo observations of the 4 action contexts, then the 8 signal contexts.

    Act phase, context ``2 x + y``: ``[0, x, 0, y, x]`` (the donor is the agent itself). Assess
    phase, context ``4 x + 2 y + a``: ``[1, x, a, y, 0]`` (own reputation withheld, see the
    module docstring).
    """
    act = observations(np.arange(NUM_ACTION_CONTEXTS), 0, np.arange(NUM_ACTION_CONTEXTS) >> 1)
    assess = observations(np.arange(NUM_SIGNAL_CONTEXTS), 1, 0)
    return torch.as_tensor(np.concatenate([act, assess]))


class BatchedMLP(nn.Module):
    """Independent one-hidden-layer tanh MLPs, one per batch element.

    ``forward`` maps features (K, d) shared by all elements, or (*batch, K, d) per element, to
    outputs (*batch, K). Used by the MLP policy heads and by the baselines' critics.
    """

    def __init__(self, batch_shape, in_dim: int, hidden: int, generator: torch.Generator):
        super().__init__()
        def init(*shape, fan_in):
            bound = 1.0 / math.sqrt(fan_in)
            return nn.Parameter((torch.rand(*batch_shape, *shape, generator=generator) * 2 - 1)
                                * bound)
        self.w1 = init(in_dim, hidden, fan_in=in_dim)
        self.b1 = init(hidden, fan_in=in_dim)
        self.w2 = init(hidden, fan_in=hidden)
        self.b2 = nn.Parameter(torch.zeros(*batch_shape))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        # Element-wise products and sums rather than a batched matrix product: a matmul's
        # blocking depends on how many learners the batch holds, which would round a learner's
        # outputs differently when other seeds train beside it (see agents/seeding.py).
        pre = features[..., 0, None] * self.w1[..., 0, None, :]
        for i in range(1, features.shape[-1]):
            pre = pre + features[..., i, None] * self.w1[..., i, None, :]
        h = torch.tanh(pre + self.b1[..., None, :])
        return (h * self.w2[..., None, :]).sum(-1) + self.b2[..., None]


class ReputationPolicy(nn.Module):
    """Action and signal heads for ``batch_shape`` independent learners.

    Args:
        batch_shape: leading shape of the learners, e.g. ``(num_seeds, num_focal)``.
        kind: ``"tabular"`` or ``"mlp"`` (one network for both heads, reading observations).
        hidden: MLP width.
        init_logit: initial value of every tabular logit (0 = P 0.5 everywhere).
        seed: seeds the MLP initialisation.
        device: torch device.
        shared: one policy for all learners of the last batch axis (parameter sharing, the
            shortcut MAPPO-style pipelines take): the parameters have batch shape
            ``(*batch_shape[:-1], 1)`` and every head is broadcast to ``batch_shape``, so that
            a loss summing every learner's own objective gives the shared parameters the sum of
            the learners' gradients.
    """

    def __init__(self, batch_shape=(1,), kind: str = "tabular", hidden: int = 32,
                 init_logit: float = 0.0, seed: int = 0, device: str | torch.device = "cpu",
                 shared: bool = False):
        super().__init__()
        if kind not in POLICY_KINDS:
            raise ValueError(f"policy: kind must be one of {POLICY_KINDS}, got {kind!r}")
        self.batch_shape = tuple(batch_shape)
        self.kind = kind
        self.shared = bool(shared)
        params = (*self.batch_shape[:-1], 1) if self.shared else self.batch_shape
        if kind == "tabular":
            self.action_table = nn.Parameter(
                torch.full((*params, NUM_ACTION_CONTEXTS), float(init_logit)))
            self.signal_table = nn.Parameter(
                torch.full((*params, NUM_SIGNAL_CONTEXTS), float(init_logit)))
        else:
            gen = torch.Generator().manual_seed(seed)
            self.mlp = BatchedMLP(params, 5, hidden, gen)
            self.register_buffer("observations", context_observations())
        self.to(device)

    def action_logits(self) -> torch.Tensor:
        """Logits of P(C | context), shape (*batch_shape, 4), context index ``2 x + y``."""
        if self.kind == "tabular":
            return self._broadcast(self.action_table)
        return self._broadcast(self.mlp(self.observations)[..., :NUM_ACTION_CONTEXTS])

    def signal_logits(self) -> torch.Tensor:
        """Logits of P(Good | context), shape (*batch_shape, 8), context ``4 x + 2 y + a``."""
        if self.kind == "tabular":
            return self._broadcast(self.signal_table)
        return self._broadcast(self.mlp(self.observations)[..., NUM_ACTION_CONTEXTS:])

    def _broadcast(self, logits: torch.Tensor) -> torch.Tensor:
        """A shared policy's heads for every learner (no copy: a view)."""
        if not self.shared:
            return logits
        return logits.expand(*self.batch_shape, logits.shape[-1])

    def action_probs(self) -> torch.Tensor:
        return torch.sigmoid(self.action_logits())

    def signal_probs(self) -> torch.Tensor:
        return torch.sigmoid(self.signal_logits())

    @torch.no_grad()
    def set_tables(self, action, signal, confidence: float = 0.95) -> None:
        """Start from given tables (tabular policies only), e.g. a scripted strategy's.

        Args:
            action: (4,) or (*batch_shape, 4) P(C), index order; signal: likewise (8,).
            confidence: probabilities are clipped to [1 - confidence, confidence] so that the
                logits stay finite and learning can move them.
        """
        if self.kind != "tabular":
            raise ValueError("policy: set_tables needs the tabular parameterisation")
        if not 0.5 < confidence < 1.0:
            raise ValueError(f"confidence must lie in (0.5, 1), got {confidence!r}")
        for param, probs in ((self.action_table, action), (self.signal_table, signal)):
            p = torch.tensor(np.array(probs), dtype=param.dtype, device=param.device)
            p = p.clamp(1 - confidence, confidence)
            param.copy_(torch.logit(p).expand_as(param))

    @torch.no_grad()
    def tables(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Detached (action (*batch, 4), signal (*batch, 8)) probability tables."""
        return self.action_probs().detach(), self.signal_probs().detach()


def log_prob(logits: torch.Tensor, contexts: torch.Tensor, decisions: torch.Tensor):
    """log P(decision | context) of Bernoulli heads.

    Args:
        logits: (*batch, K) per-context logits.
        contexts: (*batch, M) context indices (long).
        decisions: (*batch, M) 0/1.
    Returns:
        (log-probabilities (*batch, M), entropies (*batch, M)).
    """
    z = torch.gather(logits, -1, contexts)
    d = decisions.to(z.dtype)
    logp = d * nn.functional.logsigmoid(z) + (1 - d) * nn.functional.logsigmoid(-z)
    p = torch.sigmoid(z)
    entropy = -(p * nn.functional.logsigmoid(z) + (1 - p) * nn.functional.logsigmoid(-z))
    return logp, entropy

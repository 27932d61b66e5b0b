"""A differentiable model of the game over reputation probabilities.

State: p in [0, 1]^N, the probability that each agent is Good (agents treated as independent —
the mean-field model). One round maps p to every agent's expected payoff and the next p using
the public rules of the institution (b, c, e, mu, u, uniformly random derangement matching and
observers) and, for each agent j, an executed-action table A_j[x, y] = P(a_j = C | x, y) and a
published-signal table S_j[x, y, a] = P(published Good | x, y, a):

* donor d meets a uniformly random recipient r != d, so the recipient's reputation is
  distributed as m_d = mean_{r != d} (1 - p_r, p_r);
* the interaction is watched by an independent uniformly random observer o != d, so its
  published signal is Good with probability  S_bar_d = mean_{o != d} S_o;
* expected payoff of agent i: -c sum_{x,y} w_i(x) m_i(y) A_i[x, y]
  + b / (N - 1) sum_{d != i} sum_{x,y} w_d(x) w_i(y) A_d[x, y], with w_j = (1 - p_j, p_j);
* next reputation: p'_d = (1 - u) p_d + u sum_{x,y,a} w_d(x) m_d(y) P(a | d, x, y) S_bar_d[x, y, a].

Every term is a sum over N agents of small tables, so a round costs O(N) per model and an
unroll of H rounds O(H N): no enumeration of paths, yet every indirect path of length <= H
(my action -> my reputation -> what others give me; my signal -> a third party's reputation ->
how others' actions towards it are judged -> their reputations -> what they give me) is in the
computation graph, and ``backward()`` follows all of them.

Tensors carry an arbitrary batch shape ``(...)`` in front of the agent axis.
"""

from __future__ import annotations

import torch


def prepare(action: torch.Tensor, signal: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Round-independent parts of the model, computed once per unroll.

    Args:
        action: (..., N, 4) executed-C probability per agent, context index ``2 x + y``.
        signal: (..., N, 8) published-Good probability per agent as observer,
            context index ``4 x + 2 y + a``.
    Returns:
        (action as (..., N, 2, 2) [x, y],
         judged (..., N, 2, 2): P(the published signal about donor d is Good | x, y), averaged
         over d's action and over the observers o != d.)
    """
    n = action.shape[-2]
    a = action.unflatten(-1, (2, 2))
    s = signal.unflatten(-1, (2, 2, 2))
    s_bar = (s.sum(dim=-4, keepdim=True) - s) / (n - 1)   # observer o != d, uniformly
    judged = s_bar[..., 0] + a * (s_bar[..., 1] - s_bar[..., 0])
    return a, judged


def advance(p: torch.Tensor, a: torch.Tensor, judged: torch.Tensor, *, benefit: float,
            cost: float, update_probability: float) -> tuple[torch.Tensor, torch.Tensor]:
    """One round from reputations p (..., N), with tables from :func:`prepare`.

    Returns (next p (..., N), expected payoff of every agent this round (..., N)).
    """
    n = p.shape[-1]
    w = torch.stack((1 - p, p), dim=-1)                    # (..., N, 2): P(Bad), P(Good)
    q = (p.sum(dim=-1, keepdim=True) - p) / (n - 1)        # recipient r != d is Good
    m = torch.stack((1 - q, q), dim=-1)
    joint = w[..., :, None] * m[..., None, :]              # (..., N, 2, 2) over (x, y)
    give = (joint * a).sum(dim=(-1, -2))                   # donor pays c per executed C
    t = (w[..., :, None] * a).sum(dim=-2)                  # (..., N, 2): d's C given y
    from_others = (t.sum(dim=-2, keepdim=True) - t) / (n - 1)
    receive = (w * from_others).sum(dim=-1)                # r receives from each d != r
    payoff = benefit * receive - cost * give
    good = (joint * judged).sum(dim=(-1, -2))
    p_next = p + update_probability * (good - p)
    return p_next, payoff


def round_step(p: torch.Tensor, action: torch.Tensor, signal: torch.Tensor, *, benefit: float,
               cost: float, update_probability: float) -> tuple[torch.Tensor, torch.Tensor]:
    """One round of the mean-field model.

    Args:
        p: (..., N) probabilities of Good.
        action: (..., N, 4) executed-C probability per agent, context index ``2 x + y``.
        signal: (..., N, 8) published-Good probability per agent as observer,
            context index ``4 x + 2 y + a``.
    Returns:
        (next p (..., N), expected payoff of every agent this round (..., N)).
    """
    return advance(p, *prepare(action, signal), benefit=benefit, cost=cost,
                   update_probability=update_probability)


def unroll(p0: torch.Tensor, action: torch.Tensor, signal: torch.Tensor, *, horizon: int,
           gamma: float, benefit: float, cost: float, update_probability: float) -> torch.Tensor:
    """Discounted mean payoff per round over ``horizon`` rounds from ``p0``.

    Returns (..., N): sum_t gamma^t payoff_t / sum_t gamma^t for every agent (the learner reads
    off its own entry). Cost is linear in the horizon: one :func:`advance` per round.
    """
    a, judged = prepare(action, signal)
    p = p0
    total = torch.zeros_like(p0)
    weight, norm = 1.0, 0.0
    for _ in range(horizon):
        p, payoff = advance(p, a, judged, benefit=benefit, cost=cost,
                            update_probability=update_probability)
        total = total + weight * payoff
        norm += weight
        weight *= gamma
    return total / norm


def learner_tables(own_action: torch.Tensor, own_signal: torch.Tensor, est_action: torch.Tensor,
                   est_signal: torch.Tensor, slot_mask: torch.Tensor, *, execution_error: float,
                   assessment_error: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Tables of the world as one learner models it.

    The learner's own row is its policy passed through the public error rates (intended C is
    executed w.p. 1 - e; a signal is flipped w.p. mu); every other row is its estimator, which
    already describes observed (noisy) behaviour and is used as is.

    Args:
        own_action: (..., 4) the learner's P(intend C).  own_signal: (..., 8) its P(Good).
        est_action: (..., N, 4), est_signal: (..., N, 8) estimators (constants).
        slot_mask: (..., N) one-hot of the learner's slot.
    """
    mask = slot_mask[..., None]
    executed = own_action * (1 - execution_error)
    published = assessment_error + (1 - 2 * assessment_error) * own_signal
    action = est_action * (1 - mask) + executed[..., None, :] * mask
    signal = est_signal * (1 - mask) + published[..., None, :] * mask
    return action, signal

"""A differentiable model of the game over reputation probabilities.

State: p in [0, 1]^N, the probability that each agent is Good (agents treated as independent —
the mean-field model). One round maps p to every agent's expected payoff and the next p using
the public rules of the institution (b, c, e, mu, u, uniformly random derangement matching and
observers, and the institutions of spec §7: k observers per interaction with majority, signal
audit v by the audit norm D) and, for each agent j, an executed-action table
A_j[x, y] = P(a_j = C | x, y) and a published-signal table
S_j[x, y, a] = P(published Good | x, y, a):

* donor d meets a uniformly random recipient r != d, so the recipient's reputation is
  distributed as m_d = mean_{r != d} (1 - p_r, p_r); the interaction's context (x, y, a) has
  probability pi_d[x, y, a] = w_d(x) m_d(y) P(a | d, x, y), with w_j = (1 - p_j, p_j);
* the interaction is watched by a uniformly random set of k distinct observers o != d whose
  published signals are independent given the context, so the published verdict (their
  majority) is Good with probability
  V_d = sum_{i=h}^{k} beta_i e_i({S_o}_{o != d}),  h = (k + 1) / 2,
  beta_i = (-1)^(i-h) C(i-1, h-1) C(N-1-i, k-i) / C(N-1, k),
  with e_i the elementary symmetric polynomials (inclusion-exclusion for "at least h of k
  independent signals are Good", averaged over the C(N-1, k) panels); k = 1 gives
  V_d = mean_{o != d} S_o;
* expected payoff of agent i: -c sum_{x,y} w_i(x) m_i(y) A_i[x, y]
  + b / (N - 1) sum_{d != i} sum_{x,y} w_d(x) w_i(y) A_d[x, y];
* signal audit: observer o's published signal contradicts the audit norm with probability
  K_o = S_o (1 - D) + (1 - S_o) D. Each interaction o observes has a donor uniformly random among
  the others, so it is audited and contradicted with probability
  phi_o = v sum_{x,y,a} pibar_o[x, y, a] K_o[x, y, a],  pibar_o = mean_{d != o} pi_d,
  and o, observing k interactions per round, is flagged with probability F_o = 1 - (1 - phi_o)^k;
* next reputation: p'_d = (1 - F_d) [(1 - u) p_d + u sum_{x,y,a} pi_d[x, y, a] V_d[x, y, a]]
  (the flag sets d Bad whatever u).

For one round from known (0/1) reputations the payoffs, the verdicts and, with k = 1, the flag
probabilities are exact; the model treats an agent's flag and its own update (and, for k > 1,
the k interactions it observes) as independent, whereas in the game they share the matching (a
dependence of order 1/N).

Every term is a sum over N agents of small tables, so a round costs O(N k^2) per model and an
unroll of H rounds O(H N k^2): no enumeration of paths, yet every indirect path of length <= H
(my action -> my reputation -> what others give me; my signal -> a third party's reputation ->
how others' actions towards it are judged -> their reputations -> what they give me; my signal ->
an audit -> my own reputation) is in the computation graph, and ``backward()`` follows all of
them.

Sites. An agent's tables enter a round at several places, its *sites* (:data:`ACTION_SITES`,
:data:`SIGNAL_SITES`): its action table in its own donation (the cost it pays,
``"donation"``), in what its recipients receive (``"receipt"``), in the verdict about itself
(``"assessment"``) and in the contexts on which its observers are audited
(``"audited_context"``); its signal table in the (majority) verdicts about the donors it observes
(``"verdict"``) and in its own audit (``"audit"``). :func:`prepare` can give each site its own
tensor: the same values in separate leaves compute the same round, and the gradient with respect
to each leaf is that use's share of the total (:mod:`reciprocity.agents.attribution`).

Tensors carry an arbitrary batch shape ``(...)`` in front of the agent axis.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping
from itertools import repeat
from typing import NamedTuple

import torch

#: Where an agent's action table A_d enters a round: its own donation (the cost it pays), what
#: its recipients receive, the verdict about itself, the contexts its observers are audited on.
ACTION_SITES = ("donation", "receipt", "assessment", "audited_context")
#: Where an agent's signal table S_o enters a round: the (majority) verdicts about the donors it
#: observes, its own audit.
SIGNAL_SITES = ("verdict", "audit")


class RoundTables(NamedTuple):
    """Round-independent parts of the model (from :func:`prepare`)."""

    action: torch.Tensor
    """(..., N, 2, 2) A_d[x, y], executed-C probability, in the donor's cost"""
    receipt: torch.Tensor
    """(..., N, 2, 2) A_d[x, y] in what d's recipient receives (the same tensor as ``action``
    unless the sites have their own copies)"""
    judged: torch.Tensor
    """(..., N, 2, 2) P(the published verdict about donor d is Good | x, y), averaged over d's
    action: sum_a P(a | d, x, y) V_d[x, y, a]"""
    audited: torch.Tensor | None
    """(..., N, 2, 2) A_d[x, y] in the contexts pi_d on which d's observers are audited; None
    without an audit"""
    contradiction: torch.Tensor | None
    """(..., N, 2, 2, 2) K_o[x, y, a], P(observer o's published signal contradicts the audit
    norm); None without an audit"""
    observers_per_interaction: int
    """k"""


def majority_verdict(signal: torch.Tensor, observers_per_interaction: int) -> torch.Tensor:
    """V_d: P(the majority of the published signals of k distinct observers o != d, a uniformly
    random set, is Good), from published-Good tables S_o (..., N, *context) -> (..., N, *context).
    The context axes (any number) follow the agent axis -4."""
    k = observers_per_interaction
    n = signal.shape[-4]
    if k == 1:
        return (signal.sum(dim=-4, keepdim=True) - signal) / (n - 1)  # observer o != d
    # power sums of the others' probabilities, then their elementary symmetric polynomials by
    # Newton's identities: e_i = (1/i) sum_{j=1}^{i} (-1)^(j-1) e_{i-j} P_j
    power = [None] + [(signal**i).sum(dim=-4, keepdim=True) - signal**i for i in range(1, k + 1)]
    e = [torch.ones_like(signal)]
    for i in range(1, k + 1):
        e.append(sum((-1) ** (j - 1) * e[i - j] * power[j] for j in range(1, i + 1)) / i)
    h = (k + 1) // 2
    panels = math.comb(n - 1, k)
    return sum((-1) ** (i - h) * math.comb(i - 1, h - 1) * math.comb(n - 1 - i, k - i) / panels
               * e[i] for i in range(h, k + 1))


def prepare(action: torch.Tensor, signal: torch.Tensor, *, observers_per_interaction: int = 1,
            audit_norm: torch.Tensor | None = None,
            sites: Mapping[str, torch.Tensor] | None = None) -> RoundTables:
    """Round-independent parts of the model, computed once per unroll.

    Args:
        action: (..., N, 4) executed-C probability per agent, context index ``2 x + y``.
        signal: (..., N, 8) published-Good probability per agent as observer,
            context index ``4 x + 2 y + a``.
        observers_per_interaction: k.
        audit_norm: (8,) the audit norm's verdicts D (0/1, index order), or None (no audit).
        sites: optional tables read at the named sites instead of ``action`` (a site of
            :data:`ACTION_SITES`, shape of ``action``) or ``signal`` (:data:`SIGNAL_SITES`).
    """
    sites = {} if sites is None else sites
    unknown = set(sites) - set(ACTION_SITES) - set(SIGNAL_SITES)
    if unknown:
        raise ValueError(f"sites: unknown site(s) {sorted(unknown)}; "
                         f"known: {ACTION_SITES + SIGNAL_SITES}")
    a = action.unflatten(-1, (2, 2))
    s = signal.unflatten(-1, (2, 2, 2))

    def at(site: str, table: torch.Tensor) -> torch.Tensor:
        """The table read at ``site``: its own copy if given, else the shared one."""
        copy = sites.get(site)
        if copy is None:
            return table
        return copy.unflatten(-1, (2, 2) if site in ACTION_SITES else (2, 2, 2))

    verdict = majority_verdict(at("verdict", s), observers_per_interaction)  # V_d[x, y, a]
    assessed = at("assessment", a)
    judged = verdict[..., 0] + assessed * (verdict[..., 1] - verdict[..., 0])
    audited = contradiction = None
    if audit_norm is not None:
        d = audit_norm.to(s).view(2, 2, 2)
        audit = at("audit", s)
        contradiction = audit + d * (1 - 2 * audit)   # K_o = S_o (1 - D) + (1 - S_o) D
        audited = at("audited_context", a)
    return RoundTables(at("donation", a), at("receipt", a), judged, audited, contradiction,
                       observers_per_interaction)


def advance(p: torch.Tensor, tables: RoundTables, *, benefit: float, cost: float,
            update_probability: float,
            signal_audit: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """One round from reputations p (..., N), with tables from :func:`prepare`. The numbers of
    the game (b, c, u, v) are floats, or tensors broadcasting against p (..., 1): one game per
    batch element (a learned world model's estimates, :mod:`reciprocity.agents.world`).

    Returns (next p (..., N), expected payoff of every agent this round (..., N)).
    """
    n = p.shape[-1]
    a = tables.action
    w = torch.stack((1 - p, p), dim=-1)                    # (..., N, 2): P(Bad), P(Good)
    q = (p.sum(dim=-1, keepdim=True) - p) / (n - 1)        # recipient r != d is Good
    m = torch.stack((1 - q, q), dim=-1)
    joint = w[..., :, None] * m[..., None, :]              # (..., N, 2, 2) over (x, y)
    give = (joint * a).sum(dim=(-1, -2))                   # donor pays c per executed C
    t = (w[..., :, None] * tables.receipt).sum(dim=-2)     # (..., N, 2): d's C given y
    from_others = (t.sum(dim=-2, keepdim=True) - t) / (n - 1)
    receive = (w * from_others).sum(dim=-1)                # r receives from each d != r
    payoff = benefit * receive - cost * give
    good = (joint * tables.judged).sum(dim=(-1, -2))       # the verdict about d is Good
    p_next = p + update_probability * (good - p)
    if not _is(signal_audit, 0):
        audited = tables.audited
        context = joint[..., None] * torch.stack((1 - audited, audited), dim=-1)  # pi_d[x, y, a]
        observed = (context.sum(dim=-4, keepdim=True) - context) / (n - 1)  # donor d != o
        contradicted = signal_audit * (observed * tables.contradiction).sum(dim=(-1, -2, -3))
        flagged = 1 - (1 - contradicted) ** tables.observers_per_interaction
        p_next = (1 - flagged) * p_next
    return p_next, payoff


def round_step(p: torch.Tensor, action: torch.Tensor, signal: torch.Tensor, *, benefit: float,
               cost: float, update_probability: float, observers_per_interaction: int = 1,
               signal_audit: float = 0.0,
               audit_norm: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """One round of the mean-field model.

    Args:
        p: (..., N) probabilities of Good.
        action: (..., N, 4) executed-C probability per agent, context index ``2 x + y``.
        signal: (..., N, 8) published-Good probability per agent as observer,
            context index ``4 x + 2 y + a``.
        observers_per_interaction, signal_audit, audit_norm: the institution (k, v and D as
            (8,) verdicts in index order; D is needed when v > 0).
    Returns:
        (next p (..., N), expected payoff of every agent this round (..., N)).
    """
    tables = prepare(action, signal, observers_per_interaction=observers_per_interaction,
                     audit_norm=None if _is(signal_audit, 0) else audit_norm)
    return advance(p, tables, benefit=benefit, cost=cost, update_probability=update_probability,
                   signal_audit=signal_audit)


def _is(value, number: float) -> bool:
    """Whether a number of the game is the float ``number`` (a tensor of per-element numbers
    never is: the general formula serves it)."""
    return not isinstance(value, torch.Tensor) and value == number


def discount_weights(horizon: int, gamma: float, tail: int = 0) -> tuple[list[float], float]:
    """(the weight of each model round, their sum): round t's payoff counts weight_t / sum.

    Without a tail, weight_t = gamma^t for t < horizon: the objective is the discounted mean
    payoff of the first ``horizon`` rounds, and its last rounds pay the cost of cooperating
    without the reputation it earns, which comes after the horizon (near b ~ c that end alone
    can make defection the model's optimum). With ``tail`` = K > 0 rounds the rounds after the
    horizon are valued too, as K more model rounds whose mean payoff stands for every later round:
    weight gamma^H / ((1 - gamma) K) each, so that the sum of weights is 1 / (1 - gamma), that of
    the infinite discounted series, and the objective estimates the discounted payoff of the
    whole game (exactly, once the reputations have settled into a fixed point or, for K even, a
    cycle of period 2 by round H). Needs gamma < 1.
    """
    if tail and not gamma < 1:
        raise ValueError(f"tail: the rounds after the horizon are valued as the rest of a "
                         f"discounted series, which needs gamma < 1, got gamma={gamma!r}")
    weights, weight = [], 1.0
    for _ in range(horizon):
        weights.append(weight)
        weight *= gamma
    if tail:
        weights.extend([weight / ((1 - gamma) * tail)] * tail)
    return weights, sum(weights)


def payoffs_by_round(p0: torch.Tensor, tables: Iterable[RoundTables], *, benefit: float,
                     cost: float, update_probability: float,
                     signal_audit: float = 0.0) -> Iterator[torch.Tensor]:
    """Every agent's expected payoff (..., N) in each round from ``p0``, one round per element of
    ``tables`` (the same :class:`RoundTables` repeated, or one per round with its own copies).
    A generator: a caller that only sums the payoffs holds one round at a time."""
    p = p0
    for round_tables in tables:
        p, payoff = advance(p, round_tables, benefit=benefit, cost=cost,
                            update_probability=update_probability, signal_audit=signal_audit)
        yield payoff


# -- the fused unroll ---------------------------------------------------------------------------
# Without an audit every quantity of a round is a bilinear form in p_d and Q_d = sum_{r != d} p_r
# (the recipient of d is Good w.p. q_d = Q_d / (N - 1)), with coefficients fixed for the unroll:
#   give_d = u_d + Q_d v_d,  good_d = ju_d + Q_d jv_d,
#   receive_r = [sum_{d != r} u_d + (N - 1) p_r sum_{d != r} v_d] / (N - 1),
#   u_d = A_d[0, 0] + p_d (A_d[1, 0] - A_d[0, 0]),
#   (N - 1) v_d = A_d[0, 1] - A_d[0, 0] + p_d (A_d[1, 1] - A_d[1, 0] - A_d[0, 1] + A_d[0, 0])
# (u_d: what d gives a Bad recipient; (N - 1) v_d: how much more a Good one gets), and ju_d, jv_d
# likewise from the judged table. This is :func:`advance` with its sums over (x, y) done once per
# unroll. A model round works on tensors of a few hundred numbers, so its cost is the fixed cost
# of each tensor operation: the fused round takes ten operations instead of thirty, and its
# reverse pass is written out (:func:`fused_round_backward`) so that autograd records one node per
# unroll instead of several per operation. :func:`advance` stays the reference (tests compare the
# two) and serves the audit and the per-site copies.


def bilinear_coefficients(tables: RoundTables) -> tuple[torch.Tensor, torch.Tensor]:
    """(c0, c1), each (..., N, 4): the columns (u, ju, v, jv) of a round are c0 + p c1 (see the
    comment above). For tables without an audit whose donation and receipt tables are one."""
    n = tables.action.shape[-3]
    both = torch.stack((tables.action, tables.judged), dim=-1)    # (..., N, x, y, 2)
    t00, t01, t10, t11 = (both[..., x, y, :] for x, y in ((0, 0), (0, 1), (1, 0), (1, 1)))
    return (torch.cat((t00, (t01 - t00) / (n - 1)), dim=-1),
            torch.cat((t10 - t00, (t11 - t10 - t01 + t00) / (n - 1)), dim=-1))


def fused_round(p: torch.Tensor, c0: torch.Tensor, c1: torch.Tensor, *, cost_per_benefit: float,
                update_probability: float):
    """One model round (no audit) from the bilinear coefficients c0, c1 (..., N, 4).

    Returns (next p (..., N), payoff / b' (..., N) with b' = b / (N - 1), and what the reverse
    pass needs); ``cost_per_benefit`` is c / b'.
    """
    n = p.shape[-1]
    columns = torch.addcmul(c0, c1, p.unsqueeze(-1))                      # u, ju, v, jv
    others_good = p.sum(dim=-1, keepdim=True) - p                         # Q_d
    give_good = torch.addcmul(columns[..., :2], columns[..., 2:], others_good.unsqueeze(-1))
    others = columns.sum(dim=-2, keepdim=True) - columns                  # sums over d != r
    payoff = torch.addcmul(others[..., 0], p, others[..., 2], value=n - 1)  # receipts x (N - 1)
    if isinstance(cost_per_benefit, torch.Tensor):  # a learned world's per-learner numbers
        payoff.addcmul_(give_good[..., 0], cost_per_benefit, value=-1)
    else:
        payoff.add_(give_good[..., 0], alpha=-cost_per_benefit)
    good = give_good[..., 1]
    p_next = good if _is(update_probability, 1) else torch.lerp(p, good, update_probability)
    return p_next, payoff, (others_good, columns, others)


def fused_round_backward(good_bar: torch.Tensor, p: torch.Tensor, c1: torch.Tensor, saved,
                         receipts_bar: torch.Tensor, give_bar: torch.Tensor,
                         u_bar: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Reverse pass of :func:`fused_round` for a round whose payoff has cotangent ``w g``.

    Everything is per unit of the round's weight w: ``good_bar`` is the cotangent of the round's
    verdicts (of ``good``) / w; ``receipts_bar`` = (N - 1) b' g, ``give_bar`` = -c g and
    ``u_bar`` = (the cotangent of u) / w, which does not depend on the round. Returns the
    cotangents / w of p (..., N) and of the columns (..., N, 4) (c0's; c1's is that times p).
    """
    others_good, columns, others = saved
    weighted = receipts_bar * p
    v_bar = torch.addcmul(weighted.sum(dim=-1, keepdim=True) - weighted, give_bar, others_good)
    columns_bar = torch.stack((u_bar, good_bar, v_bar, good_bar * others_good), dim=-1)
    others_good_bar = torch.addcmul(give_bar * columns[..., 2], good_bar, columns[..., 3])
    p_bar = torch.addcmul(others_good_bar.sum(dim=-1, keepdim=True) - others_good_bar,
                          receipts_bar, others[..., 2])
    return p_bar.add_((columns_bar * c1).sum(dim=-1)), columns_bar


def fused_rounds(p0, c0, c1, *, horizon, gamma, benefit, cost, update_probability,
                 keep: bool, tail: int = 0):
    """The forward pass of the fused unroll: (sum_t w_t payoff_t (..., N), w_t the weights of
    :func:`discount_weights` over their sum, and the trace :func:`fused_rounds_reverse` needs
    (empty unless ``keep``))."""
    per_benefit = benefit / (p0.shape[-1] - 1)
    weights, norm = discount_weights(horizon, gamma, tail)
    p, total, trace = p0, torch.zeros_like(p0), []
    cost_per_benefit = cost / per_benefit
    scale = per_benefit / norm if isinstance(per_benefit, torch.Tensor) else None
    for weight in weights:
        p_next, payoff, saved = fused_round(p, c0, c1, cost_per_benefit=cost_per_benefit,
                                            update_probability=update_probability)
        if scale is not None:
            total.addcmul_(payoff, scale, value=weight)
        else:
            total.add_(payoff, alpha=weight / norm * per_benefit)
        if keep:
            trace.append((p, saved))
        p = p_next
    return total, trace


def fused_rounds_reverse(trace, c1, grad, *, horizon, gamma, benefit, cost,
                         update_probability, tail: int = 0):
    """The reverse pass of the fused unroll for the cotangent ``grad`` (..., N) of its value:
    the cotangents of (p0, c0, c1). Plain tensor operations: run where autograd records (the
    trace of a recorded :func:`fused_rounds`), the result is differentiable again."""
    # the recursion runs on cotangents per unit of the round's weight: the payoff's is then
    # the same in every round, and the next round's reaches this one times the ratio of their
    # weights (gamma within the horizon)
    weights, norm = discount_weights(horizon, gamma, tail)
    ratios = [gamma] * (horizon - 1) + [
        later / earlier if earlier else 0.0
        for earlier, later in zip(weights[horizon - 1:-1], weights[horizon:], strict=True)] + [0.0]
    rho = update_probability
    n = grad.shape[-1]
    receipts_bar = grad * (benefit / (n - 1))   # of (N - 1) x what each agent receives
    give_bar = grad * -cost
    u_bar = receipts_bar.sum(dim=-1, keepdim=True) - receipts_bar + give_bar
    receipts_bar = receipts_bar * (n - 1)
    p_bar = torch.zeros_like(grad)
    columns_bar, reputations = [], []
    stay = 1 - rho if isinstance(rho, torch.Tensor) else None
    for (p, saved), ratio in zip(reversed(trace), reversed(ratios), strict=True):
        next_bar = p_bar * ratio           # the next round's p cotangent, per unit weight here
        good_bar = next_bar if _is(rho, 1) else next_bar * rho
        p_bar, bar = fused_round_backward(good_bar, p, c1, saved, receipts_bar, give_bar,
                                          u_bar)
        if stay is not None:
            p_bar.addcmul_(next_bar, stay)
        elif rho != 1:
            p_bar.add_(next_bar, alpha=1 - rho)
        columns_bar.append(bar)
        reputations.append(p)
    scale = torch.tensor(weights[::-1], dtype=grad.dtype, device=grad.device) / norm
    columns_bar = torch.stack(columns_bar) * scale.view(-1, *[1] * (grad.dim() + 1))
    c1_bar = (columns_bar * torch.stack(reputations).unsqueeze(-1)).sum(dim=0)
    return p_bar / norm, columns_bar.sum(dim=0), c1_bar


class _FusedUnroll(torch.autograd.Function):
    """sum_t w_t payoff_t over the rounds of :func:`fused_round` (weights of
    :func:`discount_weights`)."""

    @staticmethod
    def forward(ctx, p0, c0, c1, horizon, gamma, benefit, cost, update_probability, keep, tail):
        rules = dict(horizon=horizon, gamma=gamma, benefit=benefit, cost=cost,
                     update_probability=update_probability, tail=tail)
        total, ctx.trace = fused_rounds(p0, c0, c1, keep=keep, **rules)
        ctx.rules = rules
        ctx.save_for_backward(c1)
        return total

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        (c1,) = ctx.saved_tensors
        bars = fused_rounds_reverse(ctx.trace, c1, grad, **ctx.rules)
        ctx.trace = None
        return (*bars, None, None, None, None, None, None, None)


def fused_unroll(p0: torch.Tensor, tables: RoundTables, *, horizon: int, gamma: float,
                 benefit: float, cost: float, update_probability: float,
                 tail: int = 0) -> torch.Tensor:
    """:func:`unroll`'s value, sum_t w_t payoff_t / sum_t w_t (..., N) (the weights of
    :func:`discount_weights`), for tables without an audit (:func:`bilinear_coefficients`): the
    same as summing :func:`payoffs_by_round`, at a fraction of the cost of the forward and
    backward passes."""
    c0, c1 = bilinear_coefficients(tables)
    shape = torch.broadcast_shapes(p0.shape, c0.shape[:-1])
    # the rounds are kept for the reverse pass only if there will be one
    keep = torch.is_grad_enabled() and any(t.requires_grad for t in (p0, c0, c1))
    return _FusedUnroll.apply(p0.expand(shape), c0.expand(*shape, 4), c1.expand(*shape, 4),
                              horizon, gamma, benefit, cost, update_probability, keep, tail)


def _recorded_fused_unroll(p0: torch.Tensor, tables: RoundTables, *, horizon: int, gamma: float,
                           benefit: float, cost: float, update_probability: float,
                           tail: int = 0) -> torch.Tensor:
    """:func:`fused_unroll` without its written-out reverse pass: autograd records every
    :func:`fused_round`, so the value can be differentiated twice."""
    c0, c1 = bilinear_coefficients(tables)
    per_benefit = benefit / (p0.shape[-1] - 1)
    weights, norm = discount_weights(horizon, gamma, tail)
    p, total = p0, 0
    for weight in weights:
        p_next, payoff, _ = fused_round(p, c0, c1, cost_per_benefit=cost / per_benefit,
                                        update_probability=update_probability)
        total = total + payoff * (weight / norm)
        p = p_next
    return total * per_benefit


def unroll_gradient(p0: torch.Tensor, action: torch.Tensor, signal: torch.Tensor,
                    grad: torch.Tensor, inputs, *, horizon: int, gamma: float, benefit: float,
                    cost: float, update_probability: float, observers_per_interaction: int = 1,
                    signal_audit: float = 0.0, audit_norm: torch.Tensor | None = None,
                    tail: int = 0):
    """The gradient of sum(grad * :func:`unroll` (...)) with respect to ``inputs`` (tensors the
    tables were computed from), itself differentiable (``create_graph``): for objectives of
    higher order, such as a learner's payoff after another learner's anticipated gradient step.

    Without an audit the fused rounds are run and reversed by their written-out reverse pass
    (:func:`fused_rounds_reverse`) with autograd recording both: a fraction of the operations of
    autograd's own double backward, which serves the audit."""
    rules = dict(horizon=horizon, gamma=gamma, benefit=benefit, cost=cost,
                 update_probability=update_probability, tail=tail)
    if not _is(signal_audit, 0):
        value = unroll(p0, action, signal, **rules,
                       observers_per_interaction=observers_per_interaction,
                       signal_audit=signal_audit, audit_norm=audit_norm, higher_order=True)
        return torch.autograd.grad(value, inputs, grad_outputs=grad.expand_as(value),
                                   create_graph=True)
    tables = prepare(action, signal, observers_per_interaction=observers_per_interaction)
    c0, c1 = bilinear_coefficients(tables)
    shape = torch.broadcast_shapes(p0.shape, c0.shape[:-1], grad.shape)
    c0, c1 = c0.expand(*shape, 4), c1.expand(*shape, 4)
    _, trace = fused_rounds(p0.expand(shape), c0, c1, keep=True, **rules)
    _, c0_bar, c1_bar = fused_rounds_reverse(trace, c1, grad.expand(shape), **rules)
    return torch.autograd.grad((c0, c1), inputs, grad_outputs=(c0_bar, c1_bar),
                               create_graph=True)


def unroll(p0: torch.Tensor, action: torch.Tensor, signal: torch.Tensor, *, horizon: int,
           gamma: float, benefit: float, cost: float, update_probability: float,
           observers_per_interaction: int = 1, signal_audit: float = 0.0,
           audit_norm: torch.Tensor | None = None, higher_order: bool = False,
           tail: int = 0) -> torch.Tensor:
    """Discounted mean payoff per round over ``horizon`` rounds from ``p0`` (and, with
    ``tail`` > 0, over every later round as well: see :func:`discount_weights`).

    Returns (..., N): sum_t w_t payoff_t / sum_t w_t for every agent (the learner reads off its
    own entry), w_t = gamma^t without a tail. Cost is linear in the horizon: one model round per
    round (``horizon + tail`` of them), the fused
    round (:func:`fused_unroll`) without an audit, :func:`advance` with one. The institution
    keywords are those of :func:`round_step`. ``higher_order=True`` lets autograd record every
    operation of the rounds (fused or not), so that the value can be differentiated twice
    (``create_graph=True``; the fused reverse pass is not differentiable again).
    """
    tables = prepare(action, signal, observers_per_interaction=observers_per_interaction,
                     audit_norm=None if _is(signal_audit, 0) else audit_norm)
    if _is(signal_audit, 0):
        if higher_order:  # the fused rounds, recorded op by op
            return _recorded_fused_unroll(p0, tables, horizon=horizon, gamma=gamma,
                                          benefit=benefit, cost=cost,
                                          update_probability=update_probability, tail=tail)
        return fused_unroll(p0, tables, horizon=horizon, gamma=gamma, benefit=benefit, cost=cost,
                            update_probability=update_probability, tail=tail)
    weights, norm = discount_weights(horizon, gamma, tail)
    payoffs = payoffs_by_round(p0, repeat(tables, len(weights)), benefit=benefit, cost=cost,
                               update_probability=update_probability, signal_audit=signal_audit)
    total = torch.zeros_like(p0)
    for weight, payoff in zip(weights, payoffs, strict=True):
        total = total + weight * payoff
    return total / norm


def with_own_action(own_action: torch.Tensor, est_action: torch.Tensor,
                    slot_mask: torch.Tensor, *, execution_error: float) -> torch.Tensor:
    """(..., N, 4) executed-C table: the estimators, with the learner's row its policy's P(intend
    C) (..., 4) executed with probability 1 - e. ``slot_mask`` (..., N): one-hot of its slot."""
    mask = slot_mask[..., None]
    executed = own_action * (1 - execution_error)
    return est_action * (1 - mask) + executed[..., None, :] * mask


def with_own_signal(own_signal: torch.Tensor, est_signal: torch.Tensor, slot_mask: torch.Tensor,
                    *, assessment_error: float) -> torch.Tensor:
    """(..., N, 8) published-Good table: the estimators, with the learner's row its P(Good)
    (..., 8) flipped with probability mu."""
    mask = slot_mask[..., None]
    published = assessment_error + (1 - 2 * assessment_error) * own_signal
    return est_signal * (1 - mask) + published[..., None, :] * mask


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
    return (with_own_action(own_action, est_action, slot_mask, execution_error=execution_error),
            with_own_signal(own_signal, est_signal, slot_mask,
                            assessment_error=assessment_error))

"""Influence attribution: where a learner's reciprocity gradient comes from, by channel and delay.

A learner's action and its signals reach its own payoff along many branching paths (an action
moves its own reputation, which moves what others give it; a signal moves a third party's
reputation, which moves how others' actions towards that party are judged, ...). The reciprocity
gradient follows all of them at once; this module shows where it comes from.

In the unrolled model (:mod:`~reciprocity.agents.model`) the learner's policy tables P are read at
several *sites* in every round s. Give every (site, round) its own copy of P — the same values in
separate leaf tensors — and the model computes the same value J, while its gradient splits
exactly:

    dJ/dP = sum_site sum_{s < H} sum_{s <= t < H} d(w_t payoff_t) / d(copy of P at site, round s)

with payoff_t the learner's expected payoff in model round t and w_t = gamma^t / sum_t' gamma^t'.
A site is a **channel**; t - s is the **delay**, the number of rounds between the use of the table
and the payoff it moves. The channels of learner i in round s (:func:`channels`):

* ``own_donation`` (action head): its executed action in its own donation — the cost it pays,
  so its own payoff in the same round (delay 0 only);
* ``self_assessment`` (action head): its action in the assessment of itself — its own next
  reputation (delay >= 1);
* ``recipient_receipt`` (action head): its action in what its recipient receives — the others'
  payoffs, which are not in its objective: this channel is exactly zero (a check that the model
  gives the learner nothing for its generosity itself);
* ``observers_audit`` (action head, with a signal audit): its action in the interaction its
  observers are audited on — their flags, i.e. third parties' reputations (delay >= 1);
* ``donors_assessment`` (signal head; ``majority_verdict`` with k > 1 observers, where its signal
  counts inside the majority of k): its signal in the verdicts about the donors it observes —
  third parties' reputations (delay >= 1: a signal never pays in the round it is given);
* ``own_audit`` (signal head, with a signal audit): its signal in its own audit — a flag sets its
  own reputation Bad (delay >= 1).

Two normalisations summarise the parts G[c, d, k] (channel c, delay d, context k):

* **share of the gradient** (per head): sum_k G[c, d, k] T_k / sum_k T_k^2, with T = dJ/dP of the
  head — the part's projection on the head's total gradient. Summed over channels and delays it
  is 1; summed over delays <= d it is the share reached by delay d (how long the paths are).
* **share of the value change** (both heads): a gradient step moves the policy parameters theta by
  eta g, g = dJ/dtheta = (dP/dtheta)^T dJ/dP, hence the tables by eta dP with
  dP = (dP/dtheta) g, and the value by eta sum_k dJ/dP_k dP_k = eta |g|^2 to first order. A part's
  share is sum_k G[c, d, k] dP_k / |g|^2; the shares sum to 1 and depend on the parameterisation
  (for tabular logits dP_k = P_k (1 - P_k) g_k, so saturated contexts get no share).

Cost: one unroll with a copy of both tables per site and round, then one backward pass per payoff
round t through rounds 0..t — O(H^2 N k^2), quadratic in H where the learner's own gradient is
linear; the learner never pays it.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch

from .model import (
    discount_weights,
    payoffs_by_round,
    prepare,
    with_own_action,
    with_own_signal,
)
from .policy import NUM_ACTION_CONTEXTS, NUM_SIGNAL_CONTEXTS
from .rg import ReciprocityGradient, _numbers

HEADS = ("action", "signal")
NUM_CONTEXTS = {"action": NUM_ACTION_CONTEXTS, "signal": NUM_SIGNAL_CONTEXTS}


@dataclass(frozen=True)
class Channel:
    """One use of the learner's tables in a model round."""

    name: str
    head: str
    """"action" or "signal": the table used"""
    site: str
    """the model's site (:data:`~reciprocity.agents.model.ACTION_SITES`, ``SIGNAL_SITES``)"""
    use: str
    """where the table is used, in the game's words"""
    reaches: str
    """whose quantity it moves first"""


def channels(params) -> tuple[Channel, ...]:
    """The channels of a learner under the game parameters ``params`` (a
    :class:`~reciprocity.envs.core.GameParams`): the audit channels exist only with a signal
    audit, and with k > 1 observers the signal reaches third parties inside a majority."""
    audit = params.signal_audit > 0
    k = params.observers_per_interaction
    out = [
        Channel("own_donation", "action", "donation", "its executed action in its own donation",
                "its own payoff (the cost it pays)"),
        Channel("self_assessment", "action", "assessment",
                "its action in the assessment of itself", "its own next reputation"),
        Channel("recipient_receipt", "action", "receipt",
                "its action in what its recipient receives",
                "others' payoffs (zero for its own objective)"),
    ]
    if audit:
        out.append(Channel("observers_audit", "action", "audited_context",
                           "its action in the interaction its observers are audited on",
                           "third parties' reputations (their flags)"))
    if k == 1:
        out.append(Channel("donors_assessment", "signal", "verdict",
                           "its signal in the assessment of the donors it observes",
                           "third parties' reputations"))
    else:
        out.append(Channel("majority_verdict", "signal", "verdict",
                           f"its signal inside the majority of {k} observers' signals about "
                           "the donors it observes", "third parties' reputations"))
    if audit:
        out.append(Channel("own_audit", "signal", "audit", "its signal in its own audit",
                           "its own reputation (a flag sets it Bad)"))
    return tuple(out)


@dataclass
class Attribution:
    """The decomposition of learners' reciprocity gradients, batch shape ``(S, F)``.

    Arrays are numpy, contexts in index order (``2 x + y`` for the action head,
    ``4 x + 2 y + a`` for the signal head); ``H`` is the number of model rounds (the horizon and,
    with ``tail_rounds``, the tail that stands for the rounds after it), delay d = t - s in
    0..H-1.
    """

    channels: tuple[Channel, ...]
    horizon: int
    gamma: float
    tail_rounds: int
    """model rounds after the horizon (RGConfig.tail_rounds): the delays run to H + tail - 1"""
    value: np.ndarray
    """(S, F) J, each learner's discounted expected payoff per round in the model"""
    gradient: dict[str, np.ndarray]
    """channel -> (S, F, H, K) the part of dJ/dP from that channel at each delay (K contexts of
    its head)"""
    model_gradient: dict[str, np.ndarray]
    """head -> (S, F, K) dJ/dP by backward through the learner's objective (the reference the
    parts sum to)"""
    parameter_gradient: dict[str, list[torch.Tensor]]
    """channel -> that channel's part of dJ/dtheta, one tensor per policy parameter"""
    model_parameter_gradient: list[torch.Tensor]
    """dJ/dtheta by backward through the learner's objective"""
    table_step: dict[str, np.ndarray]
    """head -> (S, F, K) dP = (dP/dtheta) g: the tables' first-order change per unit step along
    the parameter gradient g"""
    step_length: float
    """length of the measured step in parameter space"""
    measured_value_change: np.ndarray
    """(S, F) J(theta + step_length g / |g|) - J(theta), NaN where g = 0"""

    def head_channels(self, head: str) -> tuple[Channel, ...]:
        return tuple(c for c in self.channels if c.head == head)

    def total(self, head: str) -> np.ndarray:
        """(S, F, K) the sum of the head's parts over channels and delays."""
        return sum(self.gradient[c.name].sum(axis=-2) for c in self.head_channels(head))

    def gradient_share(self, head: str) -> np.ndarray:
        """(S, F, C, H) each part's share of the head's gradient (its projection on the head's
        total dJ/dP); NaN where the head's gradient is zero."""
        total = self.total(head)
        norm = (total**2).sum(axis=-1)[..., None, None]
        parts = np.stack([self.gradient[c.name] for c in self.head_channels(head)], axis=-3)
        with np.errstate(invalid="ignore", divide="ignore"):
            return (parts * total[..., None, None, :]).sum(axis=-1) / norm

    def cumulative_share(self, head: str) -> np.ndarray:
        """(S, F, H) the share of the head's gradient reached by delay d (all channels)."""
        return np.cumsum(self.gradient_share(head).sum(axis=-2), axis=-1)

    def value_change(self) -> dict[str, np.ndarray]:
        """channel -> (S, F, H) first-order value change per unit step along the parameter
        gradient, from that channel at each delay; the sum over everything is |g|^2."""
        return {c.name: (self.gradient[c.name] * self.table_step[c.head][..., None, :]).sum(-1)
                for c in self.channels}

    def value_change_share(self) -> dict[str, np.ndarray]:
        """channel -> (S, F, H) its share of the value change for a small step along the
        gradient (sums to 1 over channels and delays); NaN where the gradient is zero."""
        change = self.value_change()
        total = sum(v.sum(axis=-1) for v in change.values())[..., None]
        with np.errstate(invalid="ignore", divide="ignore"):
            return {name: v / total for name, v in change.items()}

    def sum_error(self) -> float:
        """Largest |sum of the parts - dJ/dP of the objective| over heads, contexts, learners."""
        return float(max(np.abs(self.total(h) - self.model_gradient[h]).max() for h in HEADS))


def _check_inputs(learner: ReciprocityGradient, start, est_action, est_signal) -> None:
    s = learner.policy.batch_shape[0]
    n = learner.slot_mask.shape[-1]
    for name, value, shape in (("start", start, (s, None, n)),
                               ("est_action", est_action, (s, n, NUM_ACTION_CONTEXTS)),
                               ("est_signal", est_signal, (s, n, NUM_SIGNAL_CONTEXTS))):
        if value.dim() != 3 or any(want is not None and got != want
                                   for got, want in zip(value.shape, shape, strict=True)):
            want = "(S, B, N)" if name == "start" else f"(S, N, {shape[-1]})"
            raise ValueError(f"{name}: expected shape {want} = "
                             f"{tuple('B' if w is None else w for w in shape)}, "
                             f"got {tuple(value.shape)}")
        if not bool(((value >= 0) & (value <= 1)).all()):
            raise ValueError(f"{name}: probabilities must lie in [0, 1]")
    if not isinstance(learner.config.horizon, int) or learner.config.horizon < 1:
        raise ValueError(f"horizon must be a positive integer, got {learner.config.horizon!r}")
    if not 0 < learner.config.gamma <= 1:
        raise ValueError(f"gamma must lie in (0, 1], got {learner.config.gamma!r}")


def decompose(learner: ReciprocityGradient, start: torch.Tensor, est_action: torch.Tensor,
              est_signal: torch.Tensor, own_action: torch.Tensor, own_signal: torch.Tensor
              ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The parts of dJ/dP of the learners' objective, by channel and delay.

    Args and layout as :meth:`ReciprocityGradient.objective` (start (S, B, N), estimators
    (S, N, 4) / (S, N, 8), own tables (S, F, 4) / (S, F, 8)).
    Returns:
        (J (S, F), {channel: (S, F, H, K) parts}).
    """
    params, config = learner.params, learner.config
    # the model's rounds: the horizon and the tail that stands for the rounds after it
    rounds = config.horizon + config.tail_rounds
    # the numbers of the game as the learner's model has them (a learned world's estimates, per
    # learner), as its objective uses them
    world = learner.world.numbers(own_action.device)

    def number(value, trailing: int):
        return _numbers(value, trailing, own_action.dtype)
    chans = channels(params)
    tables = {"action": own_action.detach(), "signal": own_signal.detach()}
    est_a, est_s = est_action[:, None], est_signal[:, None]           # (S, 1, N, K)

    def full_table(head: str, own: torch.Tensor) -> torch.Tensor:
        if head == "action":
            table = with_own_action(own, est_a, learner.slot_mask,
                                    execution_error=number(world.execution_error, 1))
        else:
            table = with_own_signal(own, est_s, learner.slot_mask,
                                    assessment_error=number(world.assessment_error, 1))
        return table[:, :, None]                                       # (S, F, 1, N, K)

    shared = {h: full_table(h, t) for h, t in tables.items()}
    audit_norm = learner.audit_norm if params.signal_audit > 0 else None
    copies: list[dict[str, torch.Tensor]] = []

    def round_tables():
        for _ in range(rounds):
            leaves = {c.name: tables[c.head].clone().requires_grad_(True) for c in chans}
            copies.append(leaves)
            yield prepare(shared["action"], shared["signal"],
                          observers_per_interaction=world.observers_per_interaction,
                          audit_norm=audit_norm,
                          sites={c.site: full_table(c.head, leaves[c.name]) for c in chans})

    p0 = start[:, None].to(own_action.dtype)                           # (S, 1, B, N)
    with torch.enable_grad():
        payoffs = list(payoffs_by_round(
            p0, round_tables(), benefit=number(world.benefit, 2), cost=number(world.cost, 2),
            update_probability=number(world.update_probability, 2),
            signal_audit=number(world.signal_audit, 2)))
        weights, norm = discount_weights(config.horizon, config.gamma, config.tail_rounds)
        own = [w / norm * learner.own_entry(x).mean(dim=-1) for w, x in zip(weights, payoffs,
                                                                        strict=True)]
        s, f = own_action.shape[:2]
        parts = {c.name: torch.zeros(s, f, rounds, NUM_CONTEXTS[c.head],
                                     dtype=own_action.dtype, device=own_action.device)
                 for c in chans}
        for t, payoff in enumerate(own):
            # a table used in round s moves the payoffs of rounds t >= s only
            inputs = [copies[r][c.name] for r in range(t + 1) for c in chans]
            grads = torch.autograd.grad(payoff.sum(), inputs, retain_graph=t + 1 < rounds,
                                        allow_unused=True)
            for i, grad in enumerate(grads):
                r, c = divmod(i, len(chans))
                if grad is not None:
                    parts[chans[c].name][:, :, t - r] += grad
    value = sum(x.detach() for x in own)
    return value, parts


def attribute(learner: ReciprocityGradient, start: torch.Tensor,
              est_action: torch.Tensor | None = None, est_signal: torch.Tensor | None = None, *,
              step_length: float = 1e-3) -> Attribution:
    """Decompose a reciprocity-gradient learner's gradient by channel and delay.

    Args:
        learner: the learner: its policy (any parameterisation), its horizon and discount
            (``learner.config``), its scenario's rules and focal slots. To attribute another
            learner's policy (PPO, REINFORCE, a strategy), load it into ``learner.policy``.
        start: (S, B, N) public reputations the unroll starts from (0/1 or probabilities); J is
            the mean over the B starts, as in :meth:`ReciprocityGradient.objective`.
        est_action, est_signal: (S, N, 4) / (S, N, 8) estimator tables (default: the
            learner's own estimators).
        step_length: length of the step along the parameter gradient whose value change is
            measured (the shares are first-order and do not depend on it).
    The computation runs in the policy's dtype: use a float64 policy for sums exact to ~1e-12.
    """
    policy = learner.policy
    param = next(policy.parameters())
    if est_action is None or est_signal is None:
        est_action, est_signal = learner.estimators.tensors(device=param.device)
    dtype = param.dtype
    start, est_action, est_signal = (torch.as_tensor(x).to(device=param.device, dtype=dtype)
                                     for x in (start, est_action, est_signal))
    _check_inputs(learner, start, est_action, est_signal)
    if not step_length > 0:
        raise ValueError(f"step_length must be > 0, got {step_length!r}")
    chans = channels(learner.params)
    params = [p for p in policy.parameters() if p.requires_grad]

    with torch.enable_grad():
        probs = {"action": policy.action_probs(), "signal": policy.signal_probs()}
        value, parts = decompose(learner, start, est_action, est_signal, probs["action"],
                                 probs["signal"])
        # the reference: the learner's own objective, backward through the shared tables
        leaves = {h: p.detach().clone().requires_grad_(True) for h, p in probs.items()}
        objective = learner.objective(start, est_action, est_signal, leaves["action"],
                                      leaves["signal"])
        grads = torch.autograd.grad(objective.sum(), list(leaves.values()), allow_unused=True)
        model_grad = {h: torch.zeros_like(leaves[h]) if g is None else g   # unused with H = 1
                      for h, g in zip(HEADS, grads, strict=True)}
        outputs = [probs[h] for h in HEADS]

        def to_parameters(cotangents, **kwargs):
            grads = torch.autograd.grad(outputs, params, grad_outputs=cotangents,
                                        allow_unused=True, **kwargs)
            return [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads,
                                                                             strict=True)]

        parameter_grad = {}
        for c in chans:
            per_head = {h: torch.zeros_like(probs[h]) for h in HEADS}
            per_head[c.head] = parts[c.name].sum(dim=-2)
            parameter_grad[c.name] = to_parameters([per_head[h] for h in HEADS],
                                                   retain_graph=True)
        model_parameter_grad = to_parameters([model_grad[h] for h in HEADS], retain_graph=True)
        # dP = (dP/dtheta) g by the double-backward trick: d/du of (dP/dtheta)^T u, along g
        dummies = [torch.zeros_like(o, requires_grad=True) for o in outputs]
        transposed = to_parameters(dummies, create_graph=True)
        linked = [(t, g) for t, g in zip(transposed, model_parameter_grad, strict=True)
                  if t.requires_grad]
        step = torch.autograd.grad([t for t, _ in linked], dummies,
                                   grad_outputs=[g for _, g in linked], allow_unused=True)
        step = {h: torch.zeros_like(probs[h]) if d is None else d
                for h, d in zip(HEADS, step, strict=True)}

    measured = _measured_change(learner, start, est_action, est_signal, model_parameter_grad,
                                step_length, objective.detach())
    numpy = {name: x.detach().cpu().numpy() for name, x in parts.items()}
    return Attribution(
        channels=chans, horizon=learner.config.horizon, gamma=learner.config.gamma,
        tail_rounds=learner.config.tail_rounds,
        value=value.cpu().numpy(), gradient=numpy,
        model_gradient={h: g.cpu().numpy() for h, g in model_grad.items()},
        parameter_gradient=parameter_grad, model_parameter_gradient=model_parameter_grad,
        table_step={h: d.detach().cpu().numpy() for h, d in step.items()},
        step_length=step_length, measured_value_change=measured)


def _measured_change(learner: ReciprocityGradient, start, est_action, est_signal, grads,
                     step_length: float, before: torch.Tensor) -> np.ndarray:
    """J after a step of ``step_length`` along each learner's parameter gradient, minus J."""
    policy = learner.policy
    batch = len(policy.batch_shape)
    norm = torch.sqrt(sum((g**2).reshape(*g.shape[:batch], -1).sum(-1) for g in grads))  # (S, F)
    scale = torch.where(norm > 0, step_length / norm, torch.zeros_like(norm))
    moved = copy.deepcopy(policy)
    with torch.no_grad():
        for p, g in zip([p for p in moved.parameters() if p.requires_grad], grads, strict=True):
            p += scale.view(*scale.shape, *[1] * (p.dim() - batch)) * g
        after = learner.objective(start, est_action, est_signal, moved.action_probs(),
                                  moved.signal_probs())
    change = (after - before).cpu().numpy()
    return np.where(norm.cpu().numpy() > 0, change, np.nan)

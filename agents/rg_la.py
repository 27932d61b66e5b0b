"""The learning-aware reciprocity gradient (``rg-la``): RG that anticipates the other learners.

Plain RG (:mod:`reciprocity.agents.rg`) treats every other agent as its estimator says it
behaves *now*. Where the other agents learn too, each learner i's update is then blind to the
fact that its policy changes what the others will learn. ``rg-la`` (spec §8; opponent shaping
in the manner of LOLA, Foerster et al. 2018, with the exact lookahead) ascends i's model payoff
*after* the other learners' anticipated update, and differentiates through that update.

**The others' anticipated update.** Which slots are learners is public (the focal slots); their
parameters are not. Learner i describes each other learner j by the logits of its estimator
rows, z_j = logit(A_j, S_j) (A_j its executed-action table, S_j its published-signal table,
fitted to the public record), and models j's learning as RG ascent on j's own objective under
i's model of the game:

    z_j^(0) = z_j,    z_j^(l+1) = z_j^(l) + eta grad_{z_j} V_j(theta_i, z^(l)),   l < L,

all other learners stepping simultaneously from the same point, where V_j is j's discounted model
payoff with i's row its policy theta_i, the learners' rows sigmoid(z^(l)) and the scripted rows
their estimators. i's objective is V_i(theta_i, z^(L)(theta_i)); its gradient

    d V_i / d theta_i = dV_i/dtheta_i + sum_j dV_i/dz_j^(L) dz_j^(L)/dtheta_i

carries, for one step, the second-order term eta sum_j dV_i/dz_j d^2 V_j / (dz_j dtheta_i): how
i's policy changes what j learns, and what that is worth to i. ``eta`` is ``lookahead_lr``,
L is ``lookahead_steps``; both are tuned like the other hyper-parameters.

**Computing the diagonal gradients.** grad_{z_j} V_j is the j-th diagonal block of the Jacobian
of (V_1..V_N) with respect to (z_1..z_N); a backward pass of one sum gives sums over j instead.
The model is therefore copied once per other learner: in copy c the learner of focal slot c
reads its row from its own tensor X_c (equal to z_c^(l)), the others from z^(l), and one backward
pass of sum_c V_c(copy c) with respect to X gives every diagonal block at once
(``create_graph=True``, so that the result stays a function of theta_i). The copies ride on the
model's batch axes; the lookahead starts from the mean public reputations of the learner's games
(one model game per copy instead of one per game: the anticipated step is an average gradient
anyway), and :func:`~reciprocity.agents.model.unroll_gradient` computes it with the fused
rounds' written-out reverse pass, recorded for the second derivative. One update with one
lookahead step costs about 4-5x RG's on many-learners-v0 (``python
benchmarks/learner_speed.py lookahead``; docs/performance.md).

With no other learner (a single-learner scenario: every other agent scripted) there is nothing
to anticipate and ``rg-la`` is ``rg``, step for step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from ..envs.config import EnvConfig
from ..learners import LEARNING_RATES, ROUNDS_PER_UPDATE
from .checks import check_int, check_real
from .model import unroll_gradient
from .rg import _UNROLL_BYTES, ReciprocityGradient, RGConfig

# logits of the estimators are clipped to this magnitude (the estimators never give exactly
# 0 or 1, but a lookahead step should not start from a logit of +-30 either)
_LOGIT_BOUND = 12.0


@dataclass
class RGLAConfig(RGConfig):
    """Hyper-parameters of the learning-aware RG learner: RG's and the lookahead's."""

    # eta: the other learners' anticipated step, in logits per unit of the gradient of their
    # model payoff per round with respect to their logits
    lookahead_lr: float = 4.0
    lookahead_steps: int = 1  # L: anticipated steps of the other learners

    def __post_init__(self):
        super().__post_init__()
        self.lookahead_lr = check_real("lookahead_lr", self.lookahead_lr, 0.0)
        self.lookahead_steps = check_int("lookahead_steps", self.lookahead_steps, minimum=1)


class LearningAwareRG(ReciprocityGradient):
    """Batched learning-aware RG learners (see the module docstring); the interface and
    arguments are those of :class:`~reciprocity.agents.rg.ReciprocityGradient`."""

    name = "rg-la"
    config_class = RGLAConfig
    colour = "tab:cyan"
    # where a study has no tuning of its own for rg-la, it takes RG's selection for the
    # hyper-parameters they share (the tuning's single-learner scenarios cannot tune the
    # lookahead: there rg-la is rg); the lookahead keeps its defaults
    tuned_like = "rg"
    tuning_space: ClassVar[dict] = {
        # 720 points for either policy class, as every built-in learner's space: RG's without
        # the estimators' decay, times the lookahead's four
        "lr": LEARNING_RATES, "rounds_per_update": ROUNDS_PER_UPDATE,
        "horizon": (10, 25, 50), "steps_per_update": (1, 2, 5),
        "lookahead_lr": (1.0, 4.0), "lookahead_steps": (1, 2)}

    @staticmethod
    def relative_cost(config: RGLAConfig, num_agents: int) -> float:
        """RG's, times the lookahead: per step one unroll of F - 1 copies forward, a backward
        pass that keeps its graph, and the final unroll's backward through all of it (about
        three unrolls per copy and step, for the F - 1 <= N - 1 other learners, counted as
        N / 2)."""
        return ReciprocityGradient.relative_cost(config, num_agents) * \
            (1 + 3 * config.lookahead_steps * max(1, num_agents // 2))

    @staticmethod
    def memory_parts(config: RGLAConfig, num_seeds: int, num_envs: int,
                     env_config: EnvConfig) -> dict:
        """The model unroll and its copies (one per other learner and lookahead step), kept
        for the backward pass with their graph."""
        h, f = config.horizon + config.tail_rounds, int(env_config.focal_slots.size)
        copies = 1 + 2 * config.lookahead_steps * max(0, f - 1)
        return {"horizon": (f"rg-la's model unrolls of {h} rounds over {num_seeds * num_envs} "
                            f"games, {copies} copies",
                            copies * h * num_seeds * f * num_envs * env_config.num_agents
                            * _UNROLL_BYTES)}

    def __init__(self, config: RGLAConfig, env_config: EnvConfig, batch_shape, seed: int = 0,
                 device: str | torch.device = "cpu"):
        super().__init__(config, env_config, batch_shape, seed=seed, device=device)
        f = self.slot_mask.shape[0]
        # others[f, c]: focal slot c is another learner for learner f
        self.others = 1 - torch.eye(f, device=self.device)
        # columns of the agent axis the other learners' rows occupy, per learner: (F, N)
        self.coverage = self.others @ self.slot_mask

    def objective(self, start: torch.Tensor, est_action: torch.Tensor,
                  est_signal: torch.Tensor, own_action: torch.Tensor | None = None,
                  own_signal: torch.Tensor | None = None) -> torch.Tensor:
        """Each learner's discounted model payoff after the other learners' anticipated update,
        (S, F), a function of its own tables through that update (arguments as
        :meth:`ReciprocityGradient.objective`)."""
        if self.slot_mask.shape[0] == 1:  # no other learner: plain RG
            return super().objective(start, est_action, est_signal, own_action, own_signal)
        if own_action is None:
            own_action = self.policy.action_probs()
        if own_signal is None:
            own_signal = self.policy.signal_probs()
        logits = self.anticipated_logits(start, est_action, est_signal, own_action, own_signal)
        others = [self._place(table, torch.sigmoid(z))
                  for table, z in zip((est_action, est_signal), logits, strict=True)]
        value = self.model_values(start, *others, own_action, own_signal)   # (S, F, B, N)
        return self.own_entry(value).mean(dim=-1)

    def anticipated_logits(self, start, est_action, est_signal, own_action, own_signal):
        """The other learners' logits after their anticipated update, as each learner models
        it: (action (S, F, F, 4), signal (S, F, F, 8)); entry [s, f, c] is focal slot c's row
        in learner f's model (c = f unused). A function of the learners' own tables."""
        slots = self.focal_slots
        f = slots.numel()
        # the lookahead starts from the mean public reputations of the learner's games
        start = start.mean(dim=1, keepdim=True)
        z = [torch.logit(table[:, slots], eps=0).clamp(-_LOGIT_BOUND, _LOGIT_BOUND)
             .unsqueeze(1).expand(-1, f, -1, -1) for table in (est_action, est_signal)]
        eye = torch.eye(f, device=self.device)
        with torch.enable_grad():  # the lookahead needs gradients, also inside no_grad
            return self._lookahead(start, z, eye, est_action, est_signal, own_action,
                                   own_signal)

    def _lookahead(self, start, z, eye, est_action, est_signal, own_action, own_signal):
        for _ in range(self.config.lookahead_steps):
            # X: each copy's own learner row, a separate node of the graph
            x = [zz.clone() if zz.requires_grad else zz.clone().requires_grad_() for zz in z]
            copies = []
            for table, zz, xx in zip((est_action, est_signal), z, x, strict=True):
                # rows[s, f, c, c'] = sigmoid(X[s, f, c]) if c' == c else sigmoid(z[s, f, c'])
                rows = eye[:, :, None] * torch.sigmoid(xx)[:, :, :, None] + \
                    (1 - eye)[:, :, None] * torch.sigmoid(zz)[:, :, None]
                copies.append(self._place(table, rows))
            # d/dX of sum_c (learner c's payoff in copy c): the cotangent of the values
            # (S, F, C, B, N) is 1 / B at [f, c, :, slot of c] for every other learner c
            p0, action, signal, rules = self.model_inputs(start, *copies, own_action,
                                                          own_signal)
            cotangent = (self.others[:, :, None, None] * self.slot_mask[:, None, :]
                         / start.shape[1]).to(action.dtype)
            grads = unroll_gradient(p0, action, signal, cotangent, x, **rules)
            z = [zz + self.config.lookahead_lr * g for zz, g in zip(z, grads, strict=True)]
        return z

    def _place(self, table: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """Estimator tables (S, N, K) with the other learners' rows replaced: ``rows``
        (S, F, *X, C, K) -> (S, F, *X, N, K), ``*X`` none or the axis of the model's copies."""
        extra = rows.dim() - 4
        placed = torch.einsum("fd,dn,sf...dk->sf...nk", self.others.to(rows),
                              self.slot_mask.to(rows), rows)
        keep = (1 - self.coverage).view(-1, *(1,) * extra, self.coverage.shape[-1], 1)
        return table.view(table.shape[0], 1, *(1,) * extra, *table.shape[1:]) * keep + placed

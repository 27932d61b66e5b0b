"""REINFORCE: Monte-Carlo policy gradient on sampled returns (a baseline learner of spec §5).

One :class:`Reinforce` object trains ``batch_shape = (S, F)`` independent learners (seeds x focal
slots) that share nothing but the process: every loss is a sum of per-learner losses over
disjoint parameters, and Adam is element-wise, so learner (s, f) follows exactly the gradient of
its own objective.

Decision sequence. In a round a focal agent decides 1 + k times: it acts (as donor), then it
assesses (as observer) in each of the k assess phases (k = 1 unless the scenario has several
observers per interaction). For every trajectory (s, f, b) of a
:class:`~reciprocity.agents.rollout.Rollout` the T rounds become T (1 + k) decisions
``act_0, assess_0, act_1, assess_1, ...`` (each ``assess_t`` being k decisions); the round's
payoff is the reward of the act decision and the assess decisions earn 0. The discount ``gamma``
is per round (not per decision), so ``G(act_t) = r_t + G(assess_t)`` and
``G(assess_t) = gamma * G(act_{t+1})`` for every assess phase: a signal is credited with
everything from the next round on, which is all it can influence. Returns stop at episode ends
(``rollout.last_round``) and at the end of the rollout: this is Monte-Carlo REINFORCE, nothing is
bootstrapped. With the default ``rounds_per_update = 100`` (= ``max_rounds`` of the catalogue)
every update sees whole episodes, as in episodic REINFORCE, when the games start fresh.

Both heads' log-probabilities are weighted by ``G - baseline``. Truncated returns shrink towards
the end of a trajectory, so the baseline is a payoff per round times ``h_k``, the discounted number
of rounds left after decision k (the return of a payoff of 1 per round). The payoff per round is
either a running mean (exponential moving average over updates of the batch's sum G / sum h, per
learner and phase act / assess) or a learned :class:`ValueFunction` of the PettingZoo observation
fitted to G by least squares; both start at the first batch's value. The baseline depends on the
observation and the position only, never on the decision, so the gradient stays unbiased.

    learner = Reinforce(ReinforceConfig(), env_config, batch_shape=(S, F), seed=0)
    game = VectorGame(env_config, S * B, seed=0); game.reset()
    for _ in range(num_updates):
        metrics = learner.update(collect(game, learner.policy, cfg.rounds_per_update, rng, S))
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import ClassVar

import numpy as np
import torch

from ..agents.checks import check_bool, check_choice, check_int, check_real
from ..agents.policy import POLICY_KINDS, BatchedMLP, ReputationPolicy, log_prob
from ..agents.rollout import Rollout
from ..agents.seeding import per_row, row_seeds
from ..envs.config import EnvConfig
from ..envs.vector import observations
from ..learners import LEARNING_RATES, POLICY_CLASSES, ROUNDS_PER_UPDATE

__all__ = [
    "Reinforce",
    "ReinforceConfig",
    "ValueFunction",
    "clip_grad_norm_per_learner_",
    "discounted_returns",
    "interleave",
    "round_discounts",
    "round_ends",
]


@dataclass
class ReinforceConfig:
    """Hyper-parameters of :class:`Reinforce` (defaults: catalogue scenarios, N = 10, 100 rounds).

    gamma: the evaluation criterion is the long-run mean payoff per round. Cooperating costs c now
    and pays back through one's reputation from the next round on (later still when
    u = update_probability < 1), so the discount must satisfy roughly gamma * b_eff > c; in the
    ``low-benefit`` scenario (b = 1.1, c = 1) this needs gamma > ~0.93. 0.97 (an effective horizon
    of ~33 rounds) leaves margin; the horizon must stay well inside a 100-round episode, because
    Monte-Carlo returns are cut at the episode end (PPO bootstraps there and uses 0.99).
    """

    rounds_per_update: int = 100
    """rounds collected per update (100 = one whole episode of the catalogue scenarios)"""
    gamma: float = 0.97
    """discount per round (act and assess of one round are not discounted against each other)"""
    lr: float = 0.1
    """Adam learning rate of the policy (tabular logits move up to ~lr per update; ~0.01 for mlp)"""
    baseline: str = "learned"
    """"running_mean" (per learner and phase) or "learned" (value function of the observation)"""
    baseline_decay: float = 0.9
    """running_mean: weight of the old mean in the exponential moving average of returns"""
    value_lr: float = 0.01
    """learned baseline: Adam learning rate of the value function"""
    value_hidden: int = 32
    """learned baseline: hidden width of the value MLP"""
    normalize_advantages: bool = True
    """divide (return - baseline) by its per-learner standard deviation in each update"""
    entropy_coef: float = 0.0
    """weight of the mean entropy of both heads at the visited contexts (bonus)"""
    policy: str = "tabular"
    """policy parameterisation: "tabular" (4 + 8 logits) or "mlp" (ReputationPolicy kind)"""
    hidden: int = 32
    """hidden width of the policy MLPs (policy="mlp")"""
    share_policy: bool = False
    """one policy for all learners of a game (parameter sharing), each learner's loss its own"""

    def __post_init__(self):
        for name in ("rounds_per_update", "value_hidden", "hidden"):
            setattr(self, name, check_int(name, getattr(self, name), minimum=1))
        self.gamma = check_real("gamma", self.gamma, 0.0, 1.0, high_open=True)
        self.baseline_decay = check_real("baseline_decay", self.baseline_decay, 0.0, 1.0)
        for name in ("lr", "value_lr", "entropy_coef"):
            setattr(self, name, check_real(name, getattr(self, name), 0.0))
        self.baseline = check_choice("baseline", self.baseline, ("running_mean", "learned"))
        self.normalize_advantages = check_bool("normalize_advantages", self.normalize_advantages)
        self.policy = check_choice("policy", self.policy, POLICY_KINDS)
        self.share_policy = check_bool("share_policy", self.share_policy)


# -- helpers shared with PPO -------------------------------------------------------------------
def interleave(act: torch.Tensor, assess: torch.Tensor) -> torch.Tensor:
    """Act-phase values (T, ...) and assess-phase values (T k, ...) (k assess phases per round,
    round-major) -> the decision sequence (T (1 + k), ...) ``act_0, assess_0, act_1, ...``."""
    rounds = act.shape[0]
    return torch.cat((act[:, None], assess.unflatten(0, (rounds, -1))), dim=1).flatten(0, 1)


def round_discounts(num_rounds: int, gamma: float, device=None,
                    assess_phases: int = 1) -> torch.Tensor:
    """Per-decision discounts (T (1 + k),) ``1, .., 1, gamma, ...``: gamma is applied per round,
    from the last assess decision of a round to the next act decision."""
    return torch.tensor([1.0] * assess_phases + [gamma], device=device).repeat(num_rounds)


def round_ends(last_round: torch.Tensor, assess_phases: int = 1) -> torch.Tensor:
    """Rounds that ended a trajectory (T,) bool -> decisions after which it ended (T (1 + k),):
    the last assess decision of those rounds."""
    ends = torch.zeros(last_round.shape[0], 1 + assess_phases, dtype=torch.bool,
                       device=last_round.device)
    ends[:, -1] = last_round
    return ends.flatten()


def sum_over_phases(values: torch.Tensor, num_rounds: int, num_games: int) -> torch.Tensor:
    """Per-learner samples of the assess decisions (..., T k B) (see :func:`learner_major`) ->
    summed over the k assess phases of each round, (..., T B): aligned with the act samples."""
    return values.unflatten(-1, (num_rounds, -1, num_games)).sum(-2).flatten(-2)


def discounted_returns(rewards: torch.Tensor, discounts: torch.Tensor,
                       ends: torch.Tensor) -> torch.Tensor:
    """Returns-to-go along dim 0: ``G_k = r_k + discounts_k * (1 - ends_k) * G_{k+1}``, G_K = 0.

    Args:
        rewards: (K, ...) rewards per decision.
        discounts: (K,) discount from decision k to decision k + 1.
        ends: (K,) bool, a trajectory ends after decision k (nothing flows back across it).
    """
    carry = discounts * (~ends).to(rewards.dtype)
    returns = torch.zeros_like(rewards)
    future = torch.zeros_like(rewards[0])
    for k in reversed(range(rewards.shape[0])):
        future = rewards[k] + carry[k] * future
        returns[k] = future
    return returns


def learner_major(x: torch.Tensor) -> torch.Tensor:
    """Rollout layout (T, S, F, B, *rest) -> per-learner samples (S, F, T * B, *rest)."""
    return x.movedim(0, 2).flatten(2, 3)


def clip_grad_norm_per_learner_(params, batch_ndim: int, max_norm: float) -> torch.Tensor:
    """Clip each learner's gradient norm separately (parameters have leading batch dims).

    ``torch.nn.utils.clip_grad_norm_`` would take one norm over all learners and so couple them.
    Returns the per-learner norms before clipping, shape ``batch_shape``.
    """
    grads = [p.grad for p in params if p.grad is not None]
    batch_shape = grads[0].shape[:batch_ndim]
    sq = sum(g.reshape(*batch_shape, -1).pow(2).sum(-1) for g in grads)
    norms = sq.sqrt()
    scale = (max_norm / (norms + 1e-6)).clamp(max=1.0)
    for g in grads:
        g.mul_(scale.reshape(*batch_shape, *([1] * (g.dim() - batch_ndim))))
    return norms


class ValueFunction(BatchedMLP):
    """Independent tanh MLP critics, one per learner, reading PettingZoo observations.

    ``forward(obs)`` maps observations ``[phase, donor_rep, action, recipient_rep, own_rep]``
    of shape (*batch_shape, M, 5) to values (*batch_shape, M). The network's output
    (:meth:`per_round`) is a payoff per round, of order b - c whatever gamma is; ``forward``
    multiplies it by ``scale`` (PPO: ``1 / (1 - gamma)``, a discounted return).
    """

    def __init__(self, batch_shape, hidden: int, scale: float, seed: int = 0, device="cpu"):
        super().__init__(batch_shape, 5, hidden, torch.Generator().manual_seed(seed))
        self.scale = scale
        self.to(device)

    def per_round(self, obs: torch.Tensor) -> torch.Tensor:
        """The network's output: value in payoff per round, (*batch, M)."""
        return super().forward(obs)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.scale * self.per_round(obs)


def decision_observations(rollout: Rollout) -> tuple[torch.Tensor, torch.Tensor]:
    """PettingZoo observations of the act (T, S, F, B, 5) and assess (T k, S, F, B, 5)
    decisions."""
    own = rollout.own_rep.cpu().numpy()
    device = rollout.actions.device
    act = observations(rollout.action_contexts.cpu().numpy(), 0, own)
    assess = observations(rollout.signal_contexts.cpu().numpy(), 1,
                          np.repeat(own, rollout.assess_phases, axis=0))
    return torch.as_tensor(act, device=device), torch.as_tensor(assess, device=device)


# -- the learner -------------------------------------------------------------------------------
class Reinforce:
    """REINFORCE learners for ``batch_shape = (S, F)`` (seeds x focal slots).

    Args:
        config: :class:`ReinforceConfig`.
        env_config: the environment the learners play (validated ``EnvConfig``).
        batch_shape: (S, F); rollouts must come from ``collect(..., num_seeds=S)`` on a game of
            this configuration.
        seed: seeds the parameter initialisation: an int, or one seed per seed row (S of them;
            row s then starts as it would alone).
        device: torch device.
    """

    # the declaration (reciprocity.learners)
    name = "reinforce"
    config_class = ReinforceConfig
    policy_classes = POLICY_CLASSES
    colour = "tab:green"
    sample_based = True
    tuning_space: ClassVar[dict] = {
        # 720 points, as every built-in learner's space
        "lr": LEARNING_RATES, "rounds_per_update": ROUNDS_PER_UPDATE,
        "gamma": (0.95, 0.97, 0.99), "baseline": ("learned", "running_mean"),
        "entropy_coef": (0.0, 0.003, 0.01), "normalize_advantages": (True, False)}

    @staticmethod
    def relative_cost(config: ReinforceConfig, num_agents: int) -> float:
        """One forward and backward pass over every decision."""
        return 2.0

    def __init__(self, config: ReinforceConfig, env_config: EnvConfig, batch_shape, seed: int = 0,
                 device: str | torch.device = "cpu"):
        self.config = config
        self.env_config = env_config
        self.batch_shape = tuple(batch_shape)
        self.device = torch.device(device)
        seeds = row_seeds(seed, self.batch_shape[0])
        self.policy = per_row(lambda shape, k: ReputationPolicy(
            shape, kind=config.policy, hidden=config.hidden, seed=k, device=self.device,
            shared=config.share_policy),
            self.batch_shape, seeds)
        groups = [{"params": list(self.policy.parameters()), "lr": config.lr}]
        self.value = None
        if config.baseline == "learned":
            self.value = per_row(lambda shape, k: ValueFunction(
                shape, config.value_hidden, scale=1.0, seed=k + 1, device=self.device),
                self.batch_shape, seeds)
            groups.append({"params": list(self.value.parameters()), "lr": config.value_lr})
        self.optimizer = torch.optim.Adam(groups)
        # running mean of the payoff per round per learner and phase (0 = act, 1 = assess)
        self.running_rate = torch.zeros(*self.batch_shape, 2, device=self.device)
        self.baseline_ready = False

    def update(self, rollout: Rollout) -> dict[str, float]:
        """One REINFORCE step on ``rollout`` (tensors (T, S, F, B)), collected with the current
        policy. Returns metrics (floats, averaged over learners)."""
        cfg = self.config
        T, k = rollout.num_rounds, rollout.assess_phases
        if tuple(rollout.actions.shape[1:3]) != self.batch_shape:
            raise ValueError(f"rollout has learners {tuple(rollout.actions.shape[1:3])}, "
                             f"expected batch_shape {self.batch_shape}")

        # 1. returns-to-go over the decision sequence act_0, assess_0, act_1, ... (T (1 + k), S,
        # F, B), the k assess decisions of a round following its act decision
        no_reward = torch.zeros_like(rollout.signals, dtype=rollout.rewards.dtype)
        rewards = interleave(rollout.rewards, no_reward)
        ends = round_ends(rollout.last_round, k)
        discounts = round_discounts(T, cfg.gamma, self.device, k)
        returns = discounted_returns(rewards, discounts, ends).unflatten(0, (T, 1 + k))
        # per-learner samples of each phase: act (S, F, T B), assess (S, F, T k B)
        act_returns = learner_major(returns[:, 0])
        assess_returns = learner_major(returns[:, 1:].flatten(0, 1))

        # 2. baseline. Truncated returns shrink towards the end of a trajectory, so the baseline
        # is a payoff per round times the discounted number of rounds left, ``horizon`` (the
        # return of a payoff of 1 per round). It depends on the observation and the position
        # only, never on the decision, so the gradient stays unbiased.
        ones = torch.ones_like(rollout.rewards)
        horizon = discounted_returns(interleave(ones, no_reward), discounts,
                                     ends).unflatten(0, (T, 1 + k))
        act_horizon = learner_major(horizon[:, 0])
        assess_horizon = learner_major(horizon[:, 1:].flatten(0, 1))
        # payoff per round of this batch, per learner and phase: sum G / sum horizon
        batch_rates = torch.stack(
            (act_returns.sum(-1) / act_horizon.sum(-1).clamp(min=1e-8),
             assess_returns.sum(-1) / assess_horizon.sum(-1).clamp(min=1e-8)), dim=-1)
        if not self.baseline_ready:
            # start either baseline at the first batch's rate, not at 0: a value net would
            # otherwise spend hundreds of Adam steps just climbing to the level of b - c
            self.running_rate = batch_rates.clone()
            if self.value is not None:
                with torch.no_grad():
                    self.value.b2.copy_(batch_rates.mean(-1))
            self.baseline_ready = True
        if self.value is not None:
            act_obs, assess_obs = (learner_major(o) for o in decision_observations(rollout))
            act_values = self.value(act_obs) * act_horizon
            assess_values = self.value(assess_obs) * assess_horizon
            act_base, assess_base = act_values.detach(), assess_values.detach()
            # regression in payoff per round ((1 - gamma) x return), independent of gamma
            per_round = 1.0 - cfg.gamma
            value_loss = 0.5 * per_round**2 * (
                (act_values - act_returns).pow(2).mean(-1)
                + (assess_values - assess_returns).pow(2).mean(-1)) / 2
        else:
            act_base = self.running_rate[..., 0:1] * act_horizon
            assess_base = self.running_rate[..., 1:2] * assess_horizon
            value_loss = torch.zeros(self.batch_shape, device=self.device)
        act_adv, assess_adv = act_returns - act_base, assess_returns - assess_base
        if cfg.normalize_advantages:
            std = torch.cat((act_adv, assess_adv), dim=-1).std(-1, keepdim=True)
            act_adv, assess_adv = act_adv / (std + 1e-8), assess_adv / (std + 1e-8)

        # 3. log-probabilities of the decisions taken, both heads
        act_logp, act_entropy = log_prob(self.policy.action_logits(),
                                         learner_major(rollout.action_contexts),
                                         learner_major(rollout.actions))
        assess_logp, assess_entropy = log_prob(self.policy.signal_logits(),
                                               learner_major(rollout.signal_contexts),
                                               learner_major(rollout.signals))

        # 4. per-learner loss (mean over that learner's (1 + k) T B decisions), summed over
        # learners
        B = rollout.actions.shape[3]
        policy_loss = -(act_logp * act_adv + sum_over_phases(assess_logp * assess_adv, T, B)
                        ).mean(-1) / (1 + k)
        entropy = (act_entropy.mean(-1) + assess_entropy.mean(-1)) / 2
        loss = (policy_loss - cfg.entropy_coef * entropy + value_loss).sum()
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()

        # the running mean is updated after it served as this batch's baseline
        d = cfg.baseline_decay
        self.running_rate = d * self.running_rate + (1 - d) * batch_rates

        metrics = {
            "reinforce/policy_loss": policy_loss.mean().item(),
            "reinforce/baseline_loss": value_loss.mean().item(),
            "reinforce/mean_return": act_returns.mean().item(),
            "reinforce/mean_reward_per_round": rollout.rewards.float().mean().item(),
            "reinforce/entropy_action": act_entropy.mean().item(),
            "reinforce/entropy_signal": assess_entropy.mean().item(),
            "reinforce/cooperation_rate": rollout.actions.float().mean().item(),
        }
        return metrics

    # -- checkpointing ---------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """Everything :meth:`update` depends on: policy, value function, optimizer, statistics."""
        return {
            "config": asdict(self.config),
            "policy": self.policy.state_dict(),
            "value": None if self.value is None else self.value.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "running_rate": self.running_rate.clone(),
            "baseline_ready": self.baseline_ready,
        }

    def load_state_dict(self, state: dict) -> None:
        self.policy.load_state_dict(state["policy"])
        if self.value is not None:
            self.value.load_state_dict(state["value"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.running_rate = state["running_rate"].clone().to(self.device)
        self.baseline_ready = bool(state["baseline_ready"])


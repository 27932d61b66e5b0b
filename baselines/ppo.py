"""PPO: clipped surrogate objective with GAE(lambda) (a baseline learner of spec §5).

CleanRL's ``ppo.py`` for the reputation policy. One :class:`PPO` object trains
``batch_shape = (S, F)`` independent learners (seeds x focal slots): every loss is a sum of
per-learner losses over disjoint parameters, advantages are normalised per learner, gradient norms
are clipped per learner, and Adam is element-wise, so no learner's update depends on another's.

Decision sequence (as in :mod:`~reciprocity.baselines.reinforce`): a round is 1 + k decisions,
act then k assess phases (k = 1 in the plain game), giving ``act_0, assess_0, act_1, ...`` with
the round's payoff on the act decision. ``gamma`` and ``gae_lambda`` are per round: the steps
within a round (act_t -> assess_t, and from one assess phase to the next) are neither discounted
nor lambda-mixed, so the act decision's advantage is the usual per-round GAE
(``r_t + gamma V(act_{t+1}) - V(act_t) + ...``) and the (last) assess decision's is
``gamma V(act_{t+1}) - V(assess_t) + gamma lambda A(act_{t+1})``.

Critic: one small MLP per learner (:class:`~reciprocity.baselines.reinforce.ValueFunction`)
reading the PettingZoo observation ``[phase, donor_rep, action, recipient_rep, own_rep]``.

Truncation (documented choice). Episodes end only by the time limit ``max_rounds``, an artefact
of the simulation: the criterion is the long-run payoff per round, so an episode end is treated as
*truncation*, not termination, and the value after it is bootstrapped (Pardo et al. 2018, "Time
limits in reinforcement learning"). The same holds at the end of a rollout in mid-episode. The
observation that would follow is not in the rollout, but its distribution is public: the next
act observation is ``[0, x', 0, y, x']`` with x' the learner's reputation after the round and y
the reputation of a recipient drawn uniformly among the others (a uniform random derangement
gives every other agent the same chance), so the bootstrap value is
``P(y = Good) V([0, x', 0, 1, x']) + P(y = Bad) V([0, x', 0, 0, x'])`` with P(y = Good) the share
of Good among the others in the public ``reputation_after``. The GAE recursion itself does not
cross an episode end (the next decision belongs to a fresh game).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import ClassVar

import torch

from ..agents.checks import check_bool, check_choice, check_int, check_real
from ..agents.policy import NUM_ACTION_CONTEXTS, POLICY_KINDS, ReputationPolicy, log_prob
from ..agents.rollout import Rollout
from ..agents.seeding import per_row, row_seeds
from ..envs.config import EnvConfig
from ..envs.vector import observations
from ..learners import LEARNING_RATES, POLICY_CLASSES, ROUNDS_PER_UPDATE
from .reinforce import (
    ValueFunction,
    clip_grad_norm_per_learner_,
    decision_observations,
    interleave,
    learner_major,
    round_discounts,
    round_ends,
)

__all__ = ["PPO", "PPOConfig", "clipped_surrogate", "gae"]


@dataclass
class PPOConfig:
    """Hyper-parameters of :class:`PPO` (defaults: catalogue scenarios, N = 10, 100 rounds).

    gamma: the criterion is the long-run mean payoff per round; cooperation costs c now and is
    repaid through reputation from the next round on (later when u < 1), so the discount must
    satisfy roughly gamma * b_eff > c (``low-benefit``, b = 1.1, c = 1: gamma > ~0.93). PPO
    bootstraps across episode ends and rollout cuts, so a long horizon costs no truncation bias:
    0.99 (~100 rounds) is close to the average-payoff criterion, and GAE(0.95) keeps the variance
    in check. (REINFORCE, whose returns are cut at the episode end, uses 0.97.)
    """

    rounds_per_update: int = 50
    """rounds collected per update (half an episode: the critic bootstraps across the cut)"""
    gamma: float = 0.99
    """discount per round (act and assess of one round are not discounted against each other)"""
    gae_lambda: float = 0.95
    """GAE lambda, per round"""
    lr: float = 0.05
    """Adam learning rate of the policy (tabular logits move ~lr per step)"""
    value_lr: float = 0.01
    """Adam learning rate of the critic"""
    num_epochs: int = 4
    """passes over the rollout per update"""
    num_minibatches: int = 4
    """minibatches per epoch (each learner's (1 + k) T B decisions are split into this many)"""
    clip_coef: float = 0.2
    """surrogate clipping: the probability ratio is clipped to [1 - clip_coef, 1 + clip_coef]"""
    vf_coef: float = 0.5
    """weight of the value loss (measured in payoff per round) in the total loss"""
    entropy_coef: float = 0.0
    """weight of the entropy bonus (mean entropy of both heads at the visited contexts)"""
    max_grad_norm: float = 0.5
    """per-learner clipping of the gradient norm (policy and critic together)"""
    normalize_advantages: bool = True
    """normalise advantages per learner within each minibatch"""
    value_hidden: int = 32
    """hidden width of the critic MLP"""
    policy: str = "tabular"
    """policy parameterisation: "tabular" (4 + 8 logits) or "mlp" (ReputationPolicy kind)"""
    hidden: int = 32
    """hidden width of the policy MLPs (policy="mlp")"""
    share_policy: bool = False
    """one policy for all learners of a game (parameter sharing), each learner's loss its own"""

    def __post_init__(self):
        for name in ("rounds_per_update", "num_epochs", "num_minibatches", "value_hidden",
                     "hidden"):
            setattr(self, name, check_int(name, getattr(self, name), minimum=1))
        self.gamma = check_real("gamma", self.gamma, 0.0, 1.0, high_open=True)
        self.gae_lambda = check_real("gae_lambda", self.gae_lambda, 0.0, 1.0)
        for name in ("lr", "value_lr", "vf_coef", "entropy_coef"):
            setattr(self, name, check_real(name, getattr(self, name), 0.0))
        for name in ("clip_coef", "max_grad_norm"):
            setattr(self, name, check_real(name, getattr(self, name), 0.0, low_open=True))
        self.normalize_advantages = check_bool("normalize_advantages", self.normalize_advantages)
        self.policy = check_choice("policy", self.policy, POLICY_KINDS)
        self.share_policy = check_bool("share_policy", self.share_policy)


def gae(rewards: torch.Tensor, values: torch.Tensor, next_values: torch.Tensor,
        discounts: torch.Tensor, lambdas: torch.Tensor, ends: torch.Tensor) -> torch.Tensor:
    """Generalised advantage estimates along dim 0.

    ``delta_k = r_k + discounts_k * next_values_k - values_k`` and
    ``A_k = delta_k + discounts_k * lambdas_k * (1 - ends_k) * A_{k+1}``, ``A_K = 0``.

    Args:
        rewards, values, next_values: (K, ...). ``next_values_k`` is the value of what follows
            decision k: the next decision's value, or a bootstrap value where the trajectory
            is cut (0 would mean termination).
        discounts, lambdas: (K,) per-step discount and lambda.
        ends: (K,) bool, the recursion does not cross from decision k + 1 back to k.
    """
    deltas = rewards + discounts.view(-1, *[1] * (rewards.dim() - 1)) * next_values - values
    carry = discounts * lambdas * (~ends).to(rewards.dtype)
    advantages = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[0])
    for k in reversed(range(rewards.shape[0])):
        running = deltas[k] + carry[k] * running
        advantages[k] = running
    return advantages


def _take(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """Per-seed minibatch: x (S, F, M, *rest), idx (S, m) sample indices -> (S, F, m, *rest)."""
    index = idx.view(idx.shape[0], 1, idx.shape[1], *[1] * (x.dim() - 3))
    return torch.gather(x, 2, index.expand(*x.shape[:2], idx.shape[1], *x.shape[3:]))


def clipped_surrogate(logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor,
                      clip_coef: float) -> torch.Tensor:
    """Element-wise PPO policy loss ``-min(rho A, clip(rho, 1 - eps, 1 + eps) A)``,
    ``rho = exp(logp - old_logp)``. Average it to get the loss."""
    ratio = (logp - old_logp).exp()
    return -torch.min(ratio * advantages,
                      ratio.clamp(1 - clip_coef, 1 + clip_coef) * advantages)


class PPO:
    """PPO learners for ``batch_shape = (S, F)`` (seeds x focal slots).

    Args:
        config: :class:`PPOConfig`.
        env_config: the environment the learners play (validated ``EnvConfig``); its focal slots
            locate the learners' own reputations in the public record.
        batch_shape: (S, F); rollouts come from ``collect(..., num_seeds=S)``.
        seed: seeds the parameter initialisation and the minibatch shuffling: an int, or one
            seed per seed row (S of them; row s then runs as it would alone).
        device: torch device.
    """

    # the declaration (reciprocity.learners)
    name = "ppo"
    config_class = PPOConfig
    policy_classes = POLICY_CLASSES
    colour = "tab:orange"
    sample_based = True
    tuning_space: ClassVar[dict] = {
        # 720 points, as every built-in learner's space
        "lr": LEARNING_RATES, "rounds_per_update": ROUNDS_PER_UPDATE,
        "gamma": (0.97, 0.99), "gae_lambda": (0.9, 0.95, 1.0),
        "num_epochs": (2, 4, 8), "entropy_coef": (0.0, 0.01)}

    @staticmethod
    def relative_cost(config: PPOConfig, num_agents: int) -> float:
        """Every decision is revisited ``num_epochs`` times (forward and backward)."""
        return 2.0 * config.num_epochs

    @staticmethod
    def check_run(config: PPOConfig, collections: list[int], num_envs: int) -> None:
        """PPO normalises advantages within a minibatch: one decision has no spread (NaN)."""
        for length in sorted(set(collections)):
            size = 2 * length * num_envs // config.num_minibatches
            if size < 2:
                raise ValueError(
                    f"num_minibatches: a collection of {length} round(s) x {num_envs} "
                    f"game(s) gives PPO minibatches of {size} decision(s) (2 x rounds x "
                    f"num_envs / num_minibatches); at least 2 are needed: lower "
                    f"num_minibatches or raise num_envs or rounds")

    def __init__(self, config: PPOConfig, env_config: EnvConfig, batch_shape, seed: int = 0,
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
        self.value = per_row(lambda shape, k: ValueFunction(
            shape, config.value_hidden, scale=1.0 / (1.0 - config.gamma), seed=k + 1,
            device=self.device), self.batch_shape, seeds)
        self.optimizer = torch.optim.Adam([
            {"params": list(self.policy.parameters()), "lr": config.lr},
            {"params": list(self.value.parameters()), "lr": config.value_lr},
        ])
        # minibatch shuffling, one generator per seed row
        self.generators = [torch.Generator().manual_seed(k) for k in seeds]
        self.value_ready = False  # the critic's output bias is set from the first batch

    def _bootstrap_values(self, rollout: Rollout) -> torch.Tensor:
        """Expected value of the act observation after each round, (T, S, F, B) (see module doc)."""
        rep_after = torch.as_tensor(rollout.public["reputation_after"], device=self.device).float()
        T, G, N = rep_after.shape
        S, F = self.batch_shape
        own = rep_after[..., torch.as_tensor(self.env_config.focal_slots, device=self.device)]
        good_others = (rep_after.sum(-1, keepdim=True) - own) / (N - 1)  # (T, G, F)
        # game layout (T, G, F) -> learner layout (T, S, F, B)
        own, good_others = (x.reshape(T, S, G // S, F).transpose(2, 3) for x in (own, good_others))
        x = own.long().cpu().numpy()
        values = []
        for y in (0, 1):
            obs = torch.as_tensor(observations(2 * x + y, 0, x), device=self.device)
            values.append(self.value(learner_major(obs)))
        values = [v.unflatten(-1, (T, G // S)).movedim(2, 0) for v in values]
        return good_others * values[1] + (1 - good_others) * values[0]

    def update(self, rollout: Rollout) -> dict[str, float]:
        """One PPO update (several epochs of minibatch steps) on ``rollout`` (T, S, F, B).

        The rollout must have been collected with the current policy: its probabilities are the
        old policy of the ratio. Returns metrics (floats, averaged over learners and steps).
        """
        cfg = self.config
        T, k = rollout.num_rounds, rollout.assess_phases
        if tuple(rollout.actions.shape[1:3]) != self.batch_shape:
            raise ValueError(f"rollout has learners {tuple(rollout.actions.shape[1:3])}, "
                             f"expected batch_shape {self.batch_shape}")
        B = rollout.actions.shape[3]

        # 1. the decision sequence and its observations, (T (1 + k), S, F, B)
        act_obs, assess_obs = decision_observations(rollout)
        obs = interleave(act_obs, assess_obs)  # (T (1 + k), S, F, B, 5)
        # one context index over both heads: 0..3 action contexts, 4..11 signal contexts
        contexts = interleave(rollout.action_contexts,
                              rollout.signal_contexts + NUM_ACTION_CONTEXTS)
        decisions = interleave(rollout.actions, rollout.signals)
        no_reward = torch.zeros_like(rollout.signals, dtype=rollout.rewards.dtype)
        rewards = interleave(rollout.rewards, no_reward)
        is_act = interleave(torch.ones_like(rollout.rewards), no_reward)
        # per-learner samples (S, F, M) with M = (1 + k) T B
        obs, contexts, decisions, is_act = (learner_major(x)
                                            for x in (obs, contexts, decisions, is_act))

        if not self.value_ready:
            # start the critic at the first batch's payoff per round, not at 0: otherwise it
            # would spend hundreds of Adam steps climbing to the level of b - c
            with torch.no_grad():
                self.value.b2.copy_(learner_major(rollout.rewards).mean(-1))
            self.value_ready = True

        # 2. GAE with bootstrapping at episode ends and at the end of the rollout
        with torch.no_grad():
            logits = torch.cat((self.policy.action_logits(), self.policy.signal_logits()), -1)
            old_logp, entropy = log_prob(logits, contexts, decisions)
            values = self.value(obs)  # (S, F, M)
            seq_values = values.unflatten(-1, ((1 + k) * T, B)).movedim(2, 0)  # (T (1 + k), ..)
            per_round = seq_values.unflatten(0, (T, 1 + k))  # [:, 0] act, [:, 1:] assess phases
            bootstrap = self._bootstrap_values(rollout)  # (T, S, F, B)
            cut = rollout.last_round.clone()
            cut[-1] = True
            next_act = torch.cat((per_round[1:, 0], bootstrap[-1:]))  # V(act_{t+1}), (T, ...)
            cut_b = cut.view(-1, 1, 1, 1)
            after_assess = torch.where(cut_b, bootstrap, next_act)
            # what follows each decision: the next assess phase, or after the last one the next
            # act decision (or its bootstrap value)
            next_values = torch.cat((per_round[:, 1:], after_assess[:, None]), dim=1).flatten(0, 1)
            discounts = round_discounts(T, cfg.gamma, self.device, k)
            lambdas = round_discounts(T, cfg.gae_lambda, self.device, k)
            ends = round_ends(cut, k)
            advantages = gae(rewards, seq_values, next_values, discounts, lambdas, ends)
            returns = advantages + seq_values
            advantages, returns = learner_major(advantages), learner_major(returns)

        # 3. several epochs of minibatch steps; one permutation per seed row serves its learners
        M = (1 + k) * T * B
        mb_size = max(1, M // cfg.num_minibatches)
        params = [*self.policy.parameters(), *self.value.parameters()]
        stats = {"policy_loss": [], "value_loss": [], "approx_kl": [], "clip_fraction": [],
                 "grad_norm": []}
        for _ in range(cfg.num_epochs):
            perm = torch.stack([torch.randperm(M, generator=g)
                                for g in self.generators]).to(self.device)     # (S, M)
            for start in range(0, M - mb_size + 1, mb_size):
                idx = perm[:, start:start + mb_size]
                logits = torch.cat((self.policy.action_logits(), self.policy.signal_logits()), -1)
                logp, mb_entropy = log_prob(logits, _take(contexts, idx), _take(decisions, idx))
                mb_adv = _take(advantages, idx)
                if cfg.normalize_advantages:
                    mb_adv = (mb_adv - mb_adv.mean(-1, keepdim=True)) / (
                        mb_adv.std(-1, keepdim=True) + 1e-8)
                mb_old_logp = _take(old_logp, idx)
                policy_loss = clipped_surrogate(logp, mb_old_logp, mb_adv,
                                                cfg.clip_coef).mean(-1)
                # value loss in payoff per round ((1 - gamma) x return), independent of gamma
                new_values = self.value.per_round(_take(obs, idx))
                target = _take(returns, idx) / self.value.scale
                value_loss = 0.5 * (new_values - target).pow(2).mean(-1)
                loss = (policy_loss - cfg.entropy_coef * mb_entropy.mean(-1)
                        + cfg.vf_coef * value_loss).sum()
                self.optimizer.zero_grad()
                loss.backward()
                norms = clip_grad_norm_per_learner_(params, len(self.batch_shape),
                                                    cfg.max_grad_norm)
                self.optimizer.step()
                with torch.no_grad():
                    log_ratio = logp - mb_old_logp
                    stats["approx_kl"].append(((log_ratio.exp() - 1) - log_ratio).mean())
                    stats["clip_fraction"].append(
                        ((log_ratio.exp() - 1).abs() > cfg.clip_coef).float().mean())
                stats["policy_loss"].append(policy_loss.detach().mean())
                stats["value_loss"].append(value_loss.detach().mean())
                stats["grad_norm"].append(norms.mean())

        with torch.no_grad():
            residual = (returns - values).var(-1)
            explained = 1 - residual / returns.var(-1).clamp(min=1e-8)
            act = is_act.bool()
        metrics = {f"ppo/{k}": torch.stack(v).mean().item() for k, v in stats.items()}
        metrics.update({
            "ppo/explained_variance": explained.mean().item(),
            "ppo/mean_return": returns[act].mean().item(),
            "ppo/mean_reward_per_round": rollout.rewards.float().mean().item(),
            "ppo/entropy_action": entropy[act].mean().item(),
            "ppo/entropy_signal": entropy[~act].mean().item(),
            "ppo/cooperation_rate": rollout.actions.float().mean().item(),
        })
        return metrics

    # -- checkpointing ---------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """Everything :meth:`update` depends on: policy, critic, optimizer, shuffling RNG."""
        return {
            "config": asdict(self.config),
            "policy": self.policy.state_dict(),
            "value": self.value.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "generators": [g.get_state() for g in self.generators],
            "value_ready": self.value_ready,
        }

    def load_state_dict(self, state: dict) -> None:
        self.policy.load_state_dict(state["policy"])
        self.value.load_state_dict(state["value"])
        self.optimizer.load_state_dict(state["optimizer"])
        for g, g_state in zip(self.generators, state["generators"], strict=True):
            g.set_state(g_state)
        self.value_ready = bool(state["value_ready"])

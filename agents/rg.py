"""The reciprocity-gradient (RG) learner.

Each learner (one per focal slot and seed) interleaves three things:

1. **act**: play its current stochastic policy in the environment (done by the caller, see
   :func:`reciprocity.agents.rollout.collect`);
2. **refit**: update its private estimators of every other agent's action and signal behaviour
   from the public record only (:class:`~reciprocity.agents.estimators.PublicEstimators`);
3. **reciprocity-gradient steps**: from the current public reputations of its games, unroll the
   differentiable model of the game (:mod:`reciprocity.agents.model`, with the scenario's
   institution: k observers with majority, signal audit) for ``horizon`` rounds with its own
   policy in its own slot and the estimators everywhere else, and ascend the gradient of its
   discounted expected payoff with respect to both heads (so under an audit the gradient sees
   the cost of a signal that contradicts the audit norm). Estimator outputs are
   constants (not trained in this step) but the gradient flows *through* them: they turn changes
   of reputations into changes of other agents' behaviour.

The learner's reward is the game payoff only: no intrinsic reward, no shaping. Nothing is
sampled in the gradient — the reputation chain is differentiated analytically.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import ClassVar

import numpy as np
import torch

from ..envs.config import EnvConfig
from ..learners import LEARNING_RATES, POLICY_CLASSES, ROUNDS_PER_UPDATE
from .checks import check_choice, check_int, check_real
from .estimators import PublicEstimators
from .model import learner_tables, unroll
from .policy import POLICY_KINDS, ReputationPolicy
from .rollout import Rollout
from .seeding import per_row, row_seeds

# Memory of the model unroll per (model round, seed, learner, game, slot), saved for the backward
# pass: ~90 bytes measured (peak RSS) on many-learners-v0, rounded up.
_UNROLL_BYTES = 128


@dataclass
class RGConfig:
    """Hyper-parameters of the reciprocity-gradient learner."""

    rounds_per_update: int = 10  # rounds played in every game between two updates
    horizon: int = 50  # H: rounds unrolled in the differentiable model
    # discount per round inside the model. The criterion is the long-run payoff per round, so keep
    # it high: cooperating pays c now and about gamma * b (1 - e) a round later, and with
    # b = 1.1, c = 1 (low-benefit-v0) gamma = 0.97 already flips the optimum to defection.
    gamma: float = 0.99
    lr: float = 0.1  # Adam step size on the policy parameters
    steps_per_update: int = 5  # reciprocity-gradient steps after each refit
    estimator_prior: float = 2.0  # pseudo-counts pulling an agent's estimate to the pooled one
    estimator_decay: float = 0.97  # forgetting factor of estimator counts per update
    policy: str = "tabular"  # "tabular" logits or "mlp"
    hidden: int = 32  # MLP width (policy="mlp")

    def __post_init__(self):
        for name in ("rounds_per_update", "horizon", "steps_per_update", "hidden"):
            setattr(self, name, check_int(name, getattr(self, name), minimum=1))
        self.gamma = check_real("gamma", self.gamma, 0.0, 1.0)
        self.lr = check_real("lr", self.lr, 0.0)
        self.estimator_prior = check_real("estimator_prior", self.estimator_prior, 0.0,
                                          low_open=True)
        self.estimator_decay = check_real("estimator_decay", self.estimator_decay, 0.0, 1.0,
                                          low_open=True)
        self.policy = check_choice("policy", self.policy, POLICY_KINDS)

    def to_dict(self) -> dict:
        return asdict(self)


class ReciprocityGradient:
    """Batched RG learners: one per element of ``batch_shape = (S, F)`` (seeds, focal slots).

    Args:
        config: :class:`RGConfig`.
        env_config: the environment's configuration (the institution is public; the background
            strategies in it are *not* read — only N, the focal slots and the game parameters).
        batch_shape: (S, F).
        seed: seeds the policy initialisation: an int, or one seed per seed row (S of them;
            row s then starts as it would alone, see :mod:`~reciprocity.agents.seeding`).
        device: torch device.
    """

    # the declaration (reciprocity.learners)
    name = "rg"
    config_class = RGConfig
    policy_classes = POLICY_CLASSES
    colour = "tab:blue"
    sample_based = False
    tuning_space: ClassVar[dict] = {
        "lr": LEARNING_RATES, "rounds_per_update": ROUNDS_PER_UPDATE,
        # an update costs about steps x horizon: capped at twice the default's per
        # round played
        "horizon": (10, 25, 50), "steps_per_update": (1, 2, 5),
        "estimator_decay": (0.9, 0.97, 1.0)}

    @staticmethod
    def relative_cost(config: RGConfig, num_agents: int) -> float:
        """Every update unrolls the model (N agents, ``horizon`` rounds) ``steps_per_update``
        times."""
        return config.steps_per_update * config.horizon * num_agents / \
            (5 * config.rounds_per_update)

    @staticmethod
    def memory_parts(config: RGConfig, num_seeds: int, num_envs: int,
                     env_config: EnvConfig) -> dict:
        """The model unroll, saved for the backward pass."""
        h, f = config.horizon, int(env_config.focal_slots.size)
        return {"horizon": (f"RG's model unroll of {h} rounds over {num_seeds * num_envs} games",
                            h * num_seeds * f * num_envs * env_config.num_agents
                            * _UNROLL_BYTES)}

    def __init__(self, config: RGConfig, env_config: EnvConfig, batch_shape, seed: int = 0,
                 device: str | torch.device = "cpu"):
        self.config = config
        self.device = torch.device(device)
        self.params = env_config.params
        s, f = batch_shape
        if f != env_config.focal_slots.size:
            raise ValueError(f"batch_shape[1] must equal the number of focal slots "
                             f"({env_config.focal_slots.size}), got {f}")
        self.policy = per_row(lambda shape, k: ReputationPolicy(
            shape, kind=config.policy, hidden=config.hidden, seed=k, device=self.device),
            batch_shape, row_seeds(seed, s))
        self.optimizer = torch.optim.Adam(self.policy.parameters(), lr=config.lr)
        self.estimators = PublicEstimators(s, env_config.num_agents,
                                           prior=config.estimator_prior,
                                           decay=config.estimator_decay)
        mask = torch.zeros(f, env_config.num_agents)
        mask[torch.arange(f), torch.as_tensor(env_config.focal_slots)] = 1.0
        self.slot_mask = mask.to(self.device)  # (F, N) one-hot of each learner's slot
        self.focal_slots = torch.as_tensor(env_config.focal_slots, device=self.device)
        # the institution is public: the audit norm's verdicts (8,), index order
        self.audit_norm = torch.as_tensor(self.params.audit_table, device=self.device)

    def objective(self, start: torch.Tensor, est_action: torch.Tensor,
                  est_signal: torch.Tensor, own_action: torch.Tensor | None = None,
                  own_signal: torch.Tensor | None = None) -> torch.Tensor:
        """Each learner's discounted expected payoff per round, shape (S, F).

        Args:
            start: (S, B, N) public reputations the unroll starts from (one per game).
            est_action: (S, N, 4), est_signal: (S, N, 8) estimator tables.
            own_action, own_signal: (S, F, 4) / (S, F, 8) policy tables; default: the policy.
        """
        p = self.params
        if own_action is None:
            own_action = self.policy.action_probs()
        if own_signal is None:
            own_signal = self.policy.signal_probs()
        # model batch: (S, F, N) tables, (S, F, B, N) reputations
        action, signal = learner_tables(own_action, own_signal, est_action[:, None],
                                        est_signal[:, None], self.slot_mask,
                                        execution_error=p.execution_error,
                                        assessment_error=p.assessment_error)
        value = unroll(start[:, None].to(action.dtype), action[:, :, None], signal[:, :, None],
                       horizon=self.config.horizon, gamma=self.config.gamma,
                       benefit=p.benefit, cost=p.cost,
                       update_probability=p.update_probability,
                       observers_per_interaction=p.observers_per_interaction,
                       signal_audit=p.signal_audit, audit_norm=self.audit_norm)  # (S, F, B, N)
        return self.own_entry(value).mean(dim=-1)

    def own_entry(self, values: torch.Tensor) -> torch.Tensor:
        """Each learner's own slot of per-agent model values: (S, F, B, N) -> (S, F, B)."""
        return torch.gather(values, -1, self.focal_slots.view(1, -1, 1, 1).expand(
            *values.shape[:-1], 1))[..., 0]

    def update(self, rollout: Rollout) -> dict[str, float]:
        """Refit the estimators on the rollout's public record, then take RG steps."""
        self.estimators.update(rollout.public)
        est_action, est_signal = self.estimators.tensors(device=self.device)
        s = self.policy.batch_shape[0]
        last = rollout.public["reputation_after"][-1]                  # (G, N)
        start = torch.as_tensor(last.reshape(s, -1, last.shape[-1]), dtype=torch.float32,
                                device=self.device)
        for _ in range(self.config.steps_per_update):
            value = self.objective(start, est_action, est_signal)
            self.optimizer.zero_grad()
            (-value.sum()).backward()
            self.optimizer.step()
        return {"rg/model_value": float(value.detach().mean()),
                "rg/mean_reward_per_round": float(rollout.rewards.mean())}

    def state_dict(self) -> dict:
        return {"policy": self.policy.state_dict(), "optimizer": self.optimizer.state_dict(),
                "estimators": self.estimators.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.policy.load_state_dict(state["policy"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.estimators.load_state_dict(state["estimators"])


def greedy_tables(policy: ReputationPolicy) -> tuple[np.ndarray, np.ndarray]:
    """Greedy (0/1) action and signal tables of a policy, numpy (*batch, 4) / (*batch, 8)."""
    a, s = policy.tables()
    return (a.cpu().numpy() > 0.5).astype(np.int8), (s.cpu().numpy() > 0.5).astype(np.int8)

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
from ..envs.norms import parse_assessment_rule
from ..learners import LEARNING_RATES, POLICY_CLASSES, ROUNDS_PER_UPDATE
from .checks import check_bool, check_choice, check_int, check_real
from .estimators import PublicEstimators
from .model import learner_tables, unroll
from .policy import POLICY_KINDS, ReputationPolicy
from .rollout import Rollout
from .seeding import per_row, row_seeds
from .world import ESTIMATED, WORLD_MODELS, make_world

#: How an RG step moves the policy (RGConfig.ascent).
ASCENTS = ("auto", "logits", "targets")
#: Target tables stay this far from 0 and 1 (the cross-entropy then keeps the logits finite).
TARGET_MARGIN = 0.0005

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
    # K > 0: the rounds after the horizon are valued too, as K more model rounds whose mean
    # payoff stands for every later round (weight gamma^H / (1 - gamma) in all), so that the
    # objective estimates the discounted payoff of the whole game at any horizon; 0: the first
    # H rounds only, whose last rounds pay for cooperation without the reputation it earns
    # (model.discount_weights)
    tail_rounds: int = 0
    lr: float = 0.1  # Adam step size on the policy parameters
    steps_per_update: int = 5  # reciprocity-gradient steps after each refit
    estimator_prior: float = 2.0  # pseudo-counts pulling an agent's estimate to the pooled one
    estimator_decay: float = 0.97  # forgetting factor of estimator counts per update
    policy: str = "tabular"  # "tabular" logits or "mlp"
    hidden: int = 32  # MLP width (policy="mlp")
    # one policy for all learners of a game, each still ascending its own payoff
    share_policy: bool = False
    # how an RG step moves the policy: "logits" ascends the objective through the policy's
    # parameters; "targets" lets RG propose target tables one step up its gradient in
    # probability space, T = clip(P + target_step dV/dP, TARGET_MARGIN, 1 - TARGET_MARGIN),
    # and fits the policy to them by cross-entropy (what a network needs: the gradient through
    # a saturated sigmoid vanishes); "auto": logits for tabular policies, targets for the MLP
    ascent: str = "auto"
    target_step: float = 1.0  # "targets": the step in probability per unit of dV/dP
    # the numbers of the game in the model (reciprocity.agents.world): "learned" (estimated from
    # the learner's own payoffs, decisions and the public record; the default: RG is handed
    # nothing a participant could not see) or "oracle" (the scenario's numbers)
    world_model: str = "learned"
    # deliberately misspecified models, for studies of what RG depends on: the oracle's numbers
    # multiplied, e.g. {"execution_error": 2.0}; every other agent modelled as assessing by a
    # given norm (e.g. "image_scoring") instead of as its estimator says
    world_factors: dict | None = None
    others_norm: str | None = None

    #: fields added after runs were made: at these values a run's identity leaves them out, so
    #: that runs made before them keep their identity (and resume)
    identity_defaults: ClassVar[dict] = {"tail_rounds": 0}

    def __post_init__(self):
        for name in ("rounds_per_update", "horizon", "steps_per_update", "hidden"):
            setattr(self, name, check_int(name, getattr(self, name), minimum=1))
        self.gamma = check_real("gamma", self.gamma, 0.0, 1.0)
        self.tail_rounds = check_int("tail_rounds", self.tail_rounds, minimum=0)
        if self.tail_rounds and not self.gamma < 1:
            raise ValueError(f"tail_rounds={self.tail_rounds} values the rounds after the horizon "
                             f"as the rest of a discounted series, which needs gamma < 1, got "
                             f"gamma={self.gamma!r}")
        self.lr = check_real("lr", self.lr, 0.0)
        self.estimator_prior = check_real("estimator_prior", self.estimator_prior, 0.0,
                                          low_open=True)
        self.estimator_decay = check_real("estimator_decay", self.estimator_decay, 0.0, 1.0,
                                          low_open=True)
        self.policy = check_choice("policy", self.policy, POLICY_KINDS)
        self.share_policy = check_bool("share_policy", self.share_policy)
        self.ascent = check_choice("ascent", self.ascent, ASCENTS)
        self.target_step = check_real("target_step", self.target_step, 0.0, low_open=True)
        self.world_model = check_choice("world_model", self.world_model, WORLD_MODELS)
        if self.world_factors is not None:
            if not isinstance(self.world_factors, dict):
                raise ValueError(f"world_factors must be a mapping number -> factor, got "
                                 f"{self.world_factors!r}")
            self.world_factors = {str(k): check_real(f"world_factors.{k}", v, 0.0)
                                  for k, v in self.world_factors.items()}
            unknown = sorted(set(self.world_factors) - set(ESTIMATED))
            if unknown:
                raise ValueError(f"world_factors: unknown number(s) {unknown}; known: "
                                 f"{list(ESTIMATED)}")
            if self.world_model != "oracle":
                raise ValueError("world_factors misspecify the oracle: use "
                                 "world_model='oracle'")
        if self.others_norm is not None:
            parse_assessment_rule(self.others_norm, field="others_norm")
            if self.world_model != "oracle":
                raise ValueError("others_norm misspecifies the oracle: use "
                                 "world_model='oracle'")

    @property
    def uses_targets(self) -> bool:
        """Whether RG's steps fit the policy to target tables (see ``ascent``)."""
        return self.ascent == "targets" or (self.ascent == "auto" and self.policy == "mlp")

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
        # 720 points for either policy class, as every built-in learner's space
        "lr": LEARNING_RATES, "rounds_per_update": ROUNDS_PER_UPDATE,
        # an update costs about steps x horizon: capped at twice the default's per round played
        "horizon": (10, 25, 50), "steps_per_update": (1, 2, 5),
        "estimator_decay": {"tabular": (0.9, 0.95, 0.97, 1.0)},
        "target_step": {"mlp": (0.25, 0.5, 1.0, 2.0)}}

    @staticmethod
    def relative_cost(config: RGConfig, num_agents: int) -> float:
        """Every update unrolls the model (N agents, ``horizon`` rounds and the tail's)
        ``steps_per_update`` times."""
        return config.steps_per_update * (config.horizon + config.tail_rounds) * num_agents / \
            (5 * config.rounds_per_update)

    @staticmethod
    def memory_parts(config: RGConfig, num_seeds: int, num_envs: int,
                     env_config: EnvConfig) -> dict:
        """The model unroll, saved for the backward pass."""
        h, f = config.horizon + config.tail_rounds, int(env_config.focal_slots.size)
        return {"horizon": (f"RG's model unroll of {h} rounds over {num_seeds * num_envs} games",
                            h * num_seeds * f * num_envs * env_config.num_agents
                            * _UNROLL_BYTES)}

    def __init__(self, config: RGConfig, env_config: EnvConfig, batch_shape, seed: int = 0,
                 device: str | torch.device = "cpu"):
        self.config = config
        self.device = torch.device(device)
        self.params = env_config.params  # the public rules (the numbers: see self.world)
        s, f = batch_shape
        if f != env_config.focal_slots.size:
            raise ValueError(f"batch_shape[1] must equal the number of focal slots "
                             f"({env_config.focal_slots.size}), got {f}")
        self.policy = per_row(lambda shape, k: ReputationPolicy(
            shape, kind=config.policy, hidden=config.hidden, seed=k, device=self.device,
            shared=config.share_policy),
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
        # the numbers of the game in the model: the scenario's, estimated, or misspecified
        self.world = make_world(config.world_model, env_config, batch_shape,
                                config.world_factors)
        self.others_table = None  # a misspecified model: others assess by this norm (8,)
        if config.others_norm is not None:
            _, table = parse_assessment_rule(config.others_norm, field="others_norm")
            self.others_table = torch.as_tensor(np.asarray(table, dtype=np.float32),
                                                device=self.device)

    def objective(self, start: torch.Tensor, est_action: torch.Tensor,
                  est_signal: torch.Tensor, own_action: torch.Tensor | None = None,
                  own_signal: torch.Tensor | None = None) -> torch.Tensor:
        """Each learner's discounted expected payoff per round, shape (S, F).

        Args:
            start: (S, B, N) public reputations the unroll starts from (one per game).
            est_action: (S, N, 4), est_signal: (S, N, 8) estimator tables.
            own_action, own_signal: (S, F, 4) / (S, F, 8) policy tables; default: the policy.
        """
        if own_action is None:
            own_action = self.policy.action_probs()
        if own_signal is None:
            own_signal = self.policy.signal_probs()
        value = self.model_values(start, est_action[:, None], est_signal[:, None], own_action,
                                  own_signal)  # (S, F, B, N)
        return self.own_entry(value).mean(dim=-1)

    def model_values(self, start: torch.Tensor, others_action: torch.Tensor,
                     others_signal: torch.Tensor, own_action: torch.Tensor,
                     own_signal: torch.Tensor, *, higher_order: bool = False) -> torch.Tensor:
        """Every agent's discounted model payoff per round in each learner's model.

        Args:
            start: (S, B, N) public reputations the unroll starts from (one per game).
            others_action: (S, F or 1, *X, N, 4), others_signal: (S, F or 1, *X, N, 8): the
                tables of the world as each learner models it (its own row is replaced), with
                ``*X`` extra model axes (none or one: copies of the world, see
                :mod:`reciprocity.agents.rg_la`).
            own_action, own_signal: (S, F, 4) / (S, F, 8) the learners' policy tables.
            higher_order: the unroll can be differentiated twice (see
                :func:`~reciprocity.agents.model.unroll`).
        Returns:
            (S, F, *X, B, N).
        """
        p0, action, signal, rules = self.model_inputs(start, others_action, others_signal,
                                                      own_action, own_signal)
        return unroll(p0, action, signal, **rules, higher_order=higher_order)

    def model_inputs(self, start, others_action, others_signal, own_action, own_signal):
        """What :meth:`model_values` unrolls: (start reputations, action tables, signal tables,
        the keywords of :func:`~reciprocity.agents.model.unroll`), shaped to broadcast to
        (S, F, *X, B, N)."""
        extra = others_action.dim() - 4
        w = self.world.numbers(self.device)
        dtype = torch.promote_types(own_action.dtype, others_action.dtype)

        def _per_learner(number, trailing):  # a learned world's numbers in the tables' dtype
            return _numbers(number, trailing, dtype)

        own = (slice(None), slice(None), *(None,) * extra)
        # model batch: (S, F, *X, N) tables, (S, F, *X, B, N) reputations; a learned world's
        # numbers are (S, F): one per learner
        action, signal = learner_tables(
            own_action[own], own_signal[own], others_action, others_signal,
            self.slot_mask.view(-1, *(1,) * extra, self.slot_mask.shape[-1]),
            execution_error=_per_learner(w.execution_error, 1 + extra),
            assessment_error=_per_learner(w.assessment_error, 1 + extra))
        p0 = start.reshape(start.shape[0], *(1,) * (1 + extra), *start.shape[1:])
        rules = dict(horizon=self.config.horizon, gamma=self.config.gamma,
                     tail=self.config.tail_rounds,
                     benefit=_per_learner(w.benefit, 2 + extra),
                     cost=_per_learner(w.cost, 2 + extra),
                     update_probability=_per_learner(w.update_probability, 2 + extra),
                     observers_per_interaction=w.observers_per_interaction,
                     signal_audit=_per_learner(w.signal_audit, 2 + extra),
                     audit_norm=self.audit_norm)
        return p0.to(action.dtype), action.unsqueeze(-3), signal.unsqueeze(-3), rules

    def target_tables(self, start: torch.Tensor, est_action: torch.Tensor,
                      est_signal: torch.Tensor):
        """RG's proposal in probability space: the objective (S, F) at the current tables P and
        the target tables T = clip(P + target_step dV/dP, m, 1 - m) of both heads, (S, F, 4) and
        (S, F, 8), detached (m = :data:`TARGET_MARGIN`)."""
        action = self.policy.action_probs().detach().requires_grad_()
        signal = self.policy.signal_probs().detach().requires_grad_()
        value = self.objective(start, est_action, est_signal, action, signal)
        grads = torch.autograd.grad(value.sum(), (action, signal))
        step = self.config.target_step
        targets = [(p + step * g).clamp(TARGET_MARGIN, 1 - TARGET_MARGIN).detach()
                   for p, g in zip((action, signal), grads, strict=True)]
        return value.detach(), targets[0], targets[1]

    def target_loss(self, start: torch.Tensor, est_action: torch.Tensor,
                    est_signal: torch.Tensor):
        """(objective (S, F), the cross-entropy of the policy's heads to RG's target tables,
        summed over contexts and learners). Its gradient with respect to a head's logits is
        P - T: minus RG's gradient dV/dP (times ``target_step``) wherever the target is not
        clipped — RG's step taken in probability space, which a saturated sigmoid does not
        scale down."""
        value, action_target, signal_target = self.target_tables(start, est_action, est_signal)
        bce = torch.nn.functional.binary_cross_entropy_with_logits
        loss = bce(self.policy.action_logits(), action_target, reduction="sum") + \
            bce(self.policy.signal_logits(), signal_target, reduction="sum")
        return value, loss

    def own_entry(self, values: torch.Tensor) -> torch.Tensor:
        """Each learner's own slot of per-agent model values: (S, F, B, N) -> (S, F, B)."""
        return torch.gather(values, -1, self.focal_slots.view(1, -1, 1, 1).expand(
            *values.shape[:-1], 1))[..., 0]

    def update(self, rollout: Rollout) -> dict[str, float]:
        """Refit the estimators (and a learned world model) on the rollout, then take RG
        steps."""
        self.world.update(rollout)
        self.estimators.update(rollout.public)
        est_action, est_signal = self.estimators.tensors(device=self.device)
        if self.others_table is not None:  # misspecified: everyone assesses by another norm
            mu = self.world.numbers(self.device).assessment_error  # a float: the oracle's
            published = mu + (1 - 2 * mu) * self.others_table
            est_signal = published.expand_as(est_signal).to(est_signal.dtype)
        s = self.policy.batch_shape[0]
        last = rollout.public["reputation_after"][-1]                  # (G, N)
        start = torch.as_tensor(last.reshape(s, -1, last.shape[-1]), dtype=torch.float32,
                                device=self.device)
        for _ in range(self.config.steps_per_update):
            if self.config.uses_targets:
                value, loss = self.target_loss(start, est_action, est_signal)
            else:
                value = self.objective(start, est_action, est_signal)
                loss = -value.sum()
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()
        # one value per seed row: a seed's progress does not mix in the other seeds'
        return {"rg/model_value": value.detach().mean(dim=1),
                "rg/mean_reward_per_round": rollout.rewards.mean(dim=(0, 2, 3)),
                **self.world.report()}

    def seed_summary(self, row: int) -> dict:
        """What the learners of seed row ``row`` add to their run's metrics: a learned world
        model's estimates and uncertainties, per focal learner."""
        if not hasattr(self.world, "estimates"):
            return {}
        return {"world_model": {name: {"estimate": mean[row].tolist(),
                                       "uncertainty": std[row].tolist()}
                                for name, (mean, std) in self.world.estimates().items()}}

    def state_dict(self) -> dict:
        return {"policy": self.policy.state_dict(), "optimizer": self.optimizer.state_dict(),
                "estimators": self.estimators.state_dict(), "world": self.world.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.policy.load_state_dict(state["policy"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.estimators.load_state_dict(state["estimators"])
        self.world.load_state_dict(state.get("world", {}))


def _numbers(number, trailing: int, dtype: torch.dtype):
    """A number of the game as the model takes it: a float as it is, a per-learner (S, F)
    tensor in ``dtype`` with ``trailing`` axes of size 1 appended (to broadcast over games and
    agents)."""
    if isinstance(number, torch.Tensor):
        return number.to(dtype).reshape(*number.shape, *(1,) * trailing)
    return number


def greedy_tables(policy: ReputationPolicy) -> tuple[np.ndarray, np.ndarray]:
    """Greedy (0/1) action and signal tables of a policy, numpy (*batch, 4) / (*batch, 8)."""
    a, s = policy.tables()
    return (a.cpu().numpy() > 0.5).astype(np.int8), (s.cpu().numpy() > 0.5).astype(np.int8)

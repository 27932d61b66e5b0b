"""Tianshou helpers (needs the ``[tianshou]`` extra: ``pip install -e ".[tianshou]"``).

Tianshou plays PettingZoo's AEC API through its ``PettingZooEnv``: after every step it returns
``env.rewards`` of all agents, and its multi-agent algorithm credits each agent the entry of
that vector on the agent's own transitions. The native AEC env sets each agent's payoff of the
round in ``env.rewards`` right after the agent's own assess step, so every learner is credited
its own payoff (with PettingZoo's parallel-to-AEC conversion all payoffs would land on the last
agent's step, and most learners would learn from zeros). The infos are flat and numeric, so
they fit Tianshou's replay buffer.

* :func:`make_env` - a scenario as Tianshou's ``PettingZooEnv``;
* :class:`DqnConfig`, :func:`dqn_algorithm` - one DQN per focal agent in Tianshou's
  ``MultiAgentOffPolicyAlgorithm``, as in Tianshou's own PettingZoo examples;
* :func:`train_dqn` - Tianshou's collectors and off-policy trainer on a scenario;
* :func:`agent_returns` - every agent's summed reward in a Tianshou buffer;
* :func:`policy_table` - one agent's greedy output per context, in the metrics schema.

Tianshou is imported lazily: importing this module works without it, calling a helper raises an
:class:`ImportError` that names the extra.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..envs import Scenario, make
from .common import context_table

__all__ = ["DqnConfig", "agent_returns", "dqn_algorithm", "make_env", "policy_table",
           "set_greedy", "train_dqn"]

_INSTALL_HINT = ('reciprocity.integrations.tianshou needs Tianshou; install the [tianshou] '
                 'extra: pip install "reciprocity[tianshou]" (from a checkout: '
                 'pip install -e ".[tianshou]")')


def _require_tianshou():
    try:
        import tianshou
    except ImportError as err:
        raise ImportError(f"{_INSTALL_HINT} ({err})") from err
    return tianshou


def make_env(scenario: str | Path | Scenario, **overrides: Any):
    """The scenario's AEC environment as Tianshou's ``PettingZooEnv``.

    Observations reach the policies as ``{"agent_id", "obs", "mask"}``; ``obs`` is the
    environment's observation (5,). ``overrides`` are environment keywords.
    """
    _require_tianshou()
    from tianshou.env.pettingzoo_env import PettingZooEnv

    return PettingZooEnv(make(scenario, **overrides))


@dataclass
class DqnConfig:
    """Hyper-parameters of :func:`dqn_algorithm` and :func:`train_dqn` (small, CPU)."""

    hidden_sizes: list[int] = field(default_factory=lambda: [32, 32])  # Q-network layers
    lr: float = 1e-3  # Adam learning rate
    gamma: float = 0.99  # discount per own move (an agent moves twice per round)
    own_moves: int = 6  # n-step horizon in the agent's own moves (see dqn_algorithm)
    target_update_freq: int = 100  # gradient steps between target-network copies
    eps_train: float = 0.1  # epsilon-greedy exploration while collecting
    eps_test: float = 0.0  # epsilon in the evaluation episodes after training
    buffer_size: int = 20_000  # transitions kept (all agents)
    batch_size: int = 64  # transitions per gradient step
    epochs: int = 2  # trainer epochs
    epoch_steps: int = 2_000  # env steps (agent moves) per epoch
    steps_per_collect: int = 20  # env steps between updates
    updates_per_step: float = 0.1  # gradient steps per collected env step
    train_envs: int = 2  # environment copies for collection
    test_episodes: int = 2  # evaluation episodes after each epoch and after training
    seed: int = 0


def dqn_algorithm(env, config: DqnConfig | None = None):
    """One DQN learner per focal agent, combined in ``MultiAgentOffPolicyAlgorithm``.

    ``env`` is a :func:`make_env` environment (only its spaces and agents are read).

    **n-step returns over the agent's own moves.** A one-step TD target cannot credit an act:
    its cost is paid on the agent's next move (its assess step) and the reputation it earns
    pays a round later, while the assess observation does not show the agent's own action. So
    each DQN learns from n-step returns spanning ``own_moves`` of its own moves. Tianshou
    computes n-step returns over consecutive buffer rows, which interleave all F focal agents
    (each moves once per F rows, and the other agents' rows carry 0 in this agent's reward
    column), so the horizon is ``own_moves * F`` rows: a multiple of F, so that the bootstrap
    observation is the agent's own (a row's ``obs_next`` is the next agent's observation: with
    Tianshou's usual 1 or 3 rows every learner would bootstrap from another agent's). The
    discount per row is ``gamma ** (1 / F)``. At an episode's end Tianshou cuts the windows at
    the last row and bootstraps them from its ``obs_next``, the first agent's final observation
    (a stand-in for the others: the last ``own_moves`` moves of each episode).

    The learners explore with ``eps_train`` in every collection: Tianshou 2.0 marks only the
    multi-agent policy as being in a training step, never the per-agent policies, so each DQN
    would otherwise use its inference epsilon while collecting training data (with the usual
    ``eps_inference=0`` it never explores). Call :func:`set_greedy` (or ``set_eps_inference``
    on each learner's policy) before evaluating.
    """
    _require_tianshou()
    from tianshou.algorithm import DQN, MultiAgentOffPolicyAlgorithm
    from tianshou.algorithm.modelfree.dqn import DiscreteQLearningPolicy
    from tianshou.algorithm.optim import AdamOptimizerFactory
    from tianshou.utils.net.common import Net

    cfg = config or DqnConfig()
    n_agents = len(env.agents)
    learners = []
    for _ in env.agents:
        net = Net(state_shape=env.observation_space.shape, action_shape=env.action_space.n,
                  hidden_sizes=list(cfg.hidden_sizes))
        policy = DiscreteQLearningPolicy(model=net, action_space=env.action_space,
                                         eps_training=cfg.eps_train, eps_inference=cfg.eps_train)
        learners.append(DQN(policy=policy, optim=AdamOptimizerFactory(lr=cfg.lr),
                            gamma=cfg.gamma ** (1 / n_agents),
                            n_step_return_horizon=cfg.own_moves * n_agents,
                            target_update_freq=cfg.target_update_freq))
    return MultiAgentOffPolicyAlgorithm(algorithms=learners, env=env)


def train_dqn(scenario: str | Path | Scenario, config: DqnConfig | None = None,
              **overrides: Any) -> dict[str, Any]:
    """Train one DQN per focal agent with Tianshou's collectors and off-policy trainer.

    Torch's thread count is the caller's choice (``torch.set_num_threads(1)`` on a small
    machine). ``overrides`` are environment keywords (``max_rounds``, ...).

    Returns ``{"algorithm", "result" (Tianshou's InfoStats), "buffer" (the training replay
    buffer), "agents", "test_returns" ({agent: summed reward per evaluation episode}),
    "config"}``.
    """
    _require_tianshou()
    import torch
    from tianshou.data import Collector, CollectStats, VectorReplayBuffer
    from tianshou.env import DummyVectorEnv
    from tianshou.trainer import OffPolicyTrainerParams

    cfg = config or DqnConfig()
    np.random.seed(cfg.seed)  # noqa: NPY002 - Tianshou's epsilon-greedy uses the global RNG
    torch.manual_seed(cfg.seed)

    def env_fn():
        return make_env(scenario, **overrides)

    env = env_fn()
    algorithm = dqn_algorithm(env, cfg)
    train_envs = DummyVectorEnv([env_fn] * cfg.train_envs)
    test_envs = DummyVectorEnv([env_fn])
    train_envs.seed(cfg.seed)
    test_envs.seed(cfg.seed + 10_000)
    buffer = VectorReplayBuffer(cfg.buffer_size, cfg.train_envs)
    train_collector = Collector[CollectStats](algorithm, train_envs, buffer,
                                              exploration_noise=True)
    test_collector = Collector[CollectStats](algorithm, test_envs, exploration_noise=True)
    train_collector.reset()
    result = algorithm.run_training(OffPolicyTrainerParams(
        training_collector=train_collector, test_collector=test_collector,
        max_epochs=cfg.epochs, epoch_num_steps=cfg.epoch_steps,
        collection_step_num_env_steps=cfg.steps_per_collect,
        test_step_num_episodes=cfg.test_episodes, batch_size=cfg.batch_size,
        update_step_num_gradient_steps_per_sample=cfg.updates_per_step,
        test_in_training=False, show_progress=False, verbose=False,
        # the trainer's scalar score: the mean over agents of each one's episode return
        multi_agent_return_reduction=lambda returns: returns.mean(axis=1)))
    set_greedy(algorithm, cfg.eps_test)
    test_collector.reset()
    test_collector.collect(n_episode=cfg.test_episodes)
    agents = list(env.agents)
    returns = agent_returns(test_collector.buffer, agents)
    return {"algorithm": algorithm, "result": result, "buffer": buffer, "agents": agents,
            "test_returns": {a: r / cfg.test_episodes for a, r in returns.items()},
            "config": asdict(cfg)}


def set_greedy(algorithm, eps: float = 0.0) -> None:
    """Set every learner's inference epsilon (exploration while evaluating) to ``eps``."""
    for agent in algorithm.policy.policies:
        algorithm.get_algorithm(agent).policy.set_eps_inference(eps)


def agent_returns(buffer, agents: list[str]) -> dict[str, float]:
    """Every agent's summed reward over its own transitions in a Tianshou buffer.

    This is what Tianshou's multi-agent algorithms train each agent on: the rows whose
    ``obs.agent_id`` is the agent, and column ``agents.index(agent)`` of their reward vector.
    """
    _require_tianshou()
    batch = buffer[np.arange(len(buffer))] if len(buffer) else None
    out = dict.fromkeys(agents, 0.0)
    if batch is None:
        return out
    for k, agent in enumerate(agents):
        own = np.asarray(batch.obs.agent_id) == agent
        out[agent] = float(np.asarray(batch.rew)[own, k].sum())
    return out


def policy_table(algorithm, agent: str, *, own_reputation: int | None = None
                 ) -> dict[str, dict[str, float]]:
    """One agent's greedy output (1.0 where Q(1) > Q(0)) per context, in the metrics schema."""
    _require_tianshou()
    import torch

    try:
        net = algorithm.get_algorithm(agent).policy.model
    except KeyError:
        raise ValueError(f"agent: no learner {agent!r}") from None

    def prob_one(obs: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            q, _ = net(torch.from_numpy(obs))
        return (q[:, 1] > q[:, 0]).float().numpy()

    return context_table(prob_one, own_reputation=own_reputation)

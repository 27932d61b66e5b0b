"""TorchRL helpers (needs the ``[torchrl]`` extra: ``pip install -e ".[torchrl]"``).

The environments go through TorchRL's own ``PettingZooWrapper`` unchanged: the infos are flat
and numeric (they become ``("agents", "info", ...)`` tensors), ``state()`` becomes the root
``"state"`` entry with ``return_state=True``, and the native AEC env pays each agent its payoff
on its own step (TorchRL's AEC mode reads ``env.rewards`` after every step).

* :func:`make_env` - a scenario as a TorchRL environment (parallel or AEC);
* :func:`mappo_modules` - a decentralised policy on each agent's observation and a centralised
  critic on the global state (MAPPO), as TorchRL modules;
* :func:`train_mappo` - the MAPPO loop: TorchRL collector, GAE and ``ClipPPOLoss``;
* :func:`policy_table` - a trained policy's output per context, in the metrics schema.

TorchRL is imported lazily: importing this module works without it, calling a helper raises an
:class:`ImportError` that names the extra.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..envs import Scenario, make, make_parallel
from .common import context_table

__all__ = ["GROUP", "MappoConfig", "make_env", "mappo_modules", "policy_table", "train_mappo"]

_INSTALL_HINT = ('reciprocity.integrations.torchrl needs TorchRL; install the [torchrl] extra: '
                 'pip install "reciprocity[torchrl]" (from a checkout: '
                 'pip install -e ".[torchrl]")')

#: The TorchRL group of the focal agents (``MarlGroupMapType.ALL_IN_ONE_GROUP``).
GROUP = "agents"


def _require_torchrl():
    try:
        import torchrl
    except ImportError as err:
        raise ImportError(f"{_INSTALL_HINT} ({err})") from err
    return torchrl


def make_env(scenario: str | Path | Scenario, *, api: str = "parallel",
             return_state: bool = True, record_infos: bool = True, seed: int | None = None,
             device: str = "cpu", **overrides: Any):
    """A scenario as TorchRL's ``PettingZooWrapper``.

    Args:
        scenario: scenario id, scenario file or :class:`Scenario`.
        api: ``"parallel"`` (one TorchRL step = one phase, every agent acts) or ``"aec"`` (one
            TorchRL step = one agent's move; ``use_mask=True`` marks the acting agent).
        return_state: put :meth:`state` at the root ``"state"`` key (centralised critics).
        record_infos: keep the round's public record in the infos (default). ``False`` leaves
            ``"phase"`` alone: the wrapper copies and tensorises every info value of every agent
            on every step, so this steps faster (docs/performance.md); the record stays
            available from the environment's ``public_record()``.
        seed: seed of the first reset.
        device: TorchRL device of the tensordicts.
        **overrides: environment constructor keywords (``max_rounds``, ``benefit``, ...).

    All focal agents form one group, :data:`GROUP` (``"agents"``): entries are
    ``("agents", "observation")`` (F, 5), ``("agents", "action")`` (F,) int64 (categorical),
    ``("agents", "reward")`` (F, 1), ``("agents", "info", key)`` for every info key
    (``("agents", "info", "phase")`` only with ``record_infos=False``).
    """
    _require_torchrl()
    from torchrl.envs.libs.pettingzoo import PettingZooWrapper
    from torchrl.envs.utils import MarlGroupMapType

    overrides["record_infos"] = record_infos
    if api == "parallel":
        env, extra = make_parallel(scenario, **overrides), {}
    elif api == "aec":
        env, extra = make(scenario, **overrides), {"use_mask": True}
    else:
        raise ValueError(f"api must be 'parallel' or 'aec', got {api!r}")
    with warnings.catch_warnings():
        # the wrapper reads the specs from the infos with torch.as_tensor, which warns once
        # that the (shared, read-only) record arrays are not writable; it copies them later
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        return PettingZooWrapper(env, return_state=return_state, categorical_actions=True,
                                 group_map=MarlGroupMapType.ALL_IN_ONE_GROUP, seed=seed,
                                 device=device, **extra)


@dataclass
class MappoConfig:
    """Hyper-parameters of :func:`train_mappo` (small and CPU-friendly by default)."""

    iterations: int = 10  # collection + update cycles
    frames_per_batch: int = 400  # parallel steps collected per iteration (2 per round)
    epochs: int = 4  # passes over each batch
    minibatch_size: int = 100  # parallel steps per minibatch
    lr: float = 3e-3  # Adam learning rate (policy and critic)
    gamma: float = 0.99  # discount per step; keep it near 1: rewards come every other step
    lmbda: float = 0.95  # GAE lambda
    clip_epsilon: float = 0.2  # PPO ratio clip
    entropy_coef: float = 0.01  # entropy bonus
    critic_coef: float = 1.0  # weight of the value loss
    max_grad_norm: float = 1.0  # gradient clipping
    hidden: int = 32  # units in each of the two hidden layers (policy and critic)
    share_params: bool = True  # one policy network for all focal agents
    centralised_critic: bool = True  # critic on the global state (MAPPO); False: IPPO
    seed: int = 0


def mappo_modules(env, *, hidden: int = 32, share_params: bool = True,
                  centralised_critic: bool = True):
    """Policy and critic for a :func:`make_env` (parallel) environment.

    The policy maps each agent's observation to logits of ``Categorical`` (``("agents",
    "logits")`` -> ``("agents", "action")`` with its log-probability), one network for all
    agents with ``share_params``. The centralised critic maps the global ``"state"`` (needs
    ``return_state=True``) to one value per agent, ``("agents", "state_value")`` (F, 1); with
    ``centralised_critic=False`` each agent's critic sees its own observation only (IPPO).

    Returns ``(policy, critic)``.
    """
    _require_torchrl()
    import torch
    from tensordict.nn import TensorDictModule
    from torchrl.modules import MLP, MultiAgentMLP, ProbabilisticActor

    n_agents = len(env.group_map[GROUP])
    obs_dim = env.observation_spec[GROUP, "observation"].shape[-1]
    net = MultiAgentMLP(n_agent_inputs=obs_dim, n_agent_outputs=2, n_agents=n_agents,
                        centralised=False, share_params=share_params, depth=2,
                        num_cells=hidden, activation_class=torch.nn.Tanh)
    policy = ProbabilisticActor(
        TensorDictModule(net, in_keys=[(GROUP, "observation")], out_keys=[(GROUP, "logits")]),
        in_keys=[(GROUP, "logits")], out_keys=[(GROUP, "action")],
        spec=env.full_action_spec[GROUP, "action"],
        distribution_class=torch.distributions.Categorical, return_log_prob=True)
    if centralised_critic:
        if "state" not in env.observation_spec.keys():
            raise ValueError("centralised_critic: the environment has no 'state' entry; make it "
                             "with return_state=True")
        state_dim = env.observation_spec["state"].shape[-1]
        critic_net = torch.nn.Sequential(
            MLP(in_features=state_dim, out_features=n_agents, depth=2, num_cells=hidden,
                activation_class=torch.nn.Tanh),
            torch.nn.Unflatten(-1, (n_agents, 1)))
        critic = TensorDictModule(critic_net, in_keys=["state"],
                                  out_keys=[(GROUP, "state_value")])
    else:
        critic = TensorDictModule(
            MultiAgentMLP(n_agent_inputs=obs_dim, n_agent_outputs=1, n_agents=n_agents,
                          centralised=False, share_params=share_params, depth=2,
                          num_cells=hidden, activation_class=torch.nn.Tanh),
            in_keys=[(GROUP, "observation")], out_keys=[(GROUP, "state_value")])
    return policy, critic


def train_mappo(scenario: str | Path | Scenario, config: MappoConfig | None = None,
                **overrides: Any) -> dict[str, Any]:
    """Train MAPPO on a scenario with TorchRL: collector, GAE, ``ClipPPOLoss``.

    One iteration collects ``frames_per_batch`` parallel steps with TorchRL's ``Collector``,
    computes GAE advantages with the critic, and takes ``epochs`` passes of minibatch PPO
    updates. ``overrides`` are environment keywords (``max_rounds``, ...; ``record_infos``
    defaults to False here: the loop reads no infos). Torch's thread count
    is the caller's choice: on a small machine set ``torch.set_num_threads(1)`` first (the
    networks are tiny; more threads only add overhead).

    Returns ``{"history": [per-iteration metrics], "policy", "critic", "config"}``; each
    history entry has ``iteration``, ``frames``, ``payoff`` (mean reward per round per focal
    agent in the batch), ``loss_objective``, ``loss_critic``, ``loss_entropy``.
    """
    _require_torchrl()
    import torch
    from torchrl.collectors import Collector
    from torchrl.data.replay_buffers import ReplayBuffer
    from torchrl.data.replay_buffers.samplers import SamplerWithoutReplacement
    from torchrl.data.replay_buffers.storages import LazyTensorStorage
    from torchrl.objectives import ClipPPOLoss, ValueEstimators

    cfg = config or MappoConfig()
    torch.manual_seed(cfg.seed)
    # the loop reads observations, rewards and the state, never the infos: leave the record out
    overrides.setdefault("record_infos", False)
    env = make_env(scenario, seed=cfg.seed, return_state=cfg.centralised_critic, **overrides)
    n_agents = len(env.group_map[GROUP])
    policy, critic = mappo_modules(env, hidden=cfg.hidden, share_params=cfg.share_params,
                                   centralised_critic=cfg.centralised_critic)
    collector = Collector(env, policy, frames_per_batch=cfg.frames_per_batch,
                          total_frames=cfg.frames_per_batch * cfg.iterations, device="cpu")
    buffer = ReplayBuffer(storage=LazyTensorStorage(cfg.frames_per_batch),
                          sampler=SamplerWithoutReplacement(), batch_size=cfg.minibatch_size)
    loss = ClipPPOLoss(actor_network=policy, critic_network=critic,
                       clip_epsilon=cfg.clip_epsilon, entropy_coeff=cfg.entropy_coef,
                       critic_coeff=cfg.critic_coef, normalize_advantage=False)
    loss.set_keys(reward=(GROUP, "reward"), action=(GROUP, "action"),
                  value=(GROUP, "state_value"), done=(GROUP, "done"),
                  terminated=(GROUP, "terminated"))
    loss.make_value_estimator(ValueEstimators.GAE, gamma=cfg.gamma, lmbda=cfg.lmbda)
    optim = torch.optim.Adam(loss.parameters(), cfg.lr)
    history = []
    for iteration, batch in enumerate(collector):
        with torch.no_grad():
            loss.value_estimator(batch, params=loss.critic_network_params,
                                 target_params=loss.target_critic_network_params)
        buffer.extend(batch.reshape(-1))
        terms = []
        for _ in range(cfg.epochs):
            for _ in range(cfg.frames_per_batch // cfg.minibatch_size):
                out = loss(buffer.sample())
                total = out["loss_objective"] + out["loss_critic"] + out["loss_entropy"]
                optim.zero_grad()
                total.backward()
                torch.nn.utils.clip_grad_norm_(loss.parameters(), cfg.max_grad_norm)
                optim.step()
                terms.append({k: out[k].item() for k in
                              ("loss_objective", "loss_critic", "loss_entropy")})
        collector.update_policy_weights_()
        rewards = batch.get(("next", GROUP, "reward"))
        rounds = batch.numel() / 2  # two parallel steps per round
        history.append({"iteration": iteration, "frames": (iteration + 1) * batch.numel(),
                        "payoff": float(rewards.sum()) / rounds / n_agents,
                        **{k: float(np.mean([t[k] for t in terms])) for k in terms[0]}})
    collector.shutdown()
    return {"history": history, "policy": policy, "critic": critic, "config": asdict(cfg)}


def policy_table(policy, *, agent: int = 0, own_reputation: int | None = None,
                 greedy: bool = False) -> dict[str, dict[str, float]]:
    """A :func:`mappo_modules` policy's P(output 1) per context, in the metrics schema.

    ``agent`` is the index of the focal agent in the group (the same table for every agent
    with shared parameters). See :func:`reciprocity.integrations.common.context_table`.
    """
    _require_torchrl()
    import torch

    net = policy.module[0].module  # ProbabilisticActor -> TensorDictModule -> MultiAgentMLP
    n_agents = net.n_agents
    if not 0 <= agent < n_agents:
        raise ValueError(f"agent must be in [0, {n_agents}), got {agent}")

    def prob_one(obs: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(obs)[:, None, :].expand(-1, n_agents, -1)
        with torch.no_grad():
            return torch.softmax(net(x)[:, agent], dim=-1)[:, 1].numpy()

    return context_table(prob_one, own_reputation=own_reputation, greedy=greedy)

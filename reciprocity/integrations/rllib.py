"""RLlib (Ray) integration: the PettingZoo parallel environment as an RLlib multi-agent env.

    pip install -e ".[ray]"      # ray[rllib]; note that ray pins gymnasium to 1.2.x

    import ray
    from ray.rllib.algorithms.ppo import PPOConfig  # noqa: F401 (what ppo_config returns)
    from reciprocity.integrations.rllib import ppo_config

    ray.init(num_cpus=2, include_dashboard=False)   # or ray.init(address="auto") on a cluster
    algo = ppo_config("many-learners-v0", max_rounds=20).build_algo()
    result = algo.train()
    print(result["env_runners"]["episode_return_mean"])

Every focal slot of a scenario is an RLlib agent (``agent_<slot>``); background agents stay
scripted inside the environment. :func:`ppo_config` gives one policy (RLModule) per focal
agent, or one shared by all of them (``shared_policy=True``), on RLlib's new API stack.

RLlib is an optional dependency: this module imports without Ray, and its functions raise an
ImportError naming the ``[ray]`` extra when Ray is missing.
"""

from __future__ import annotations

import inspect
from typing import Any

from ..envs.config import merge_overrides
from ..envs.indirect_reciprocity_v0 import CONSTRUCTOR_KEYWORDS
from ..envs.scenarios import Scenario, get_scenario
from .common import context_table

__all__ = ["ENV_KEYWORDS", "env_name", "make_rllib_env", "policy_table", "ppo_config",
           "register_env"]

#: Constructor keywords of the environment (overrides routed to the env, not to PPO).
ENV_KEYWORDS = frozenset(CONSTRUCTOR_KEYWORDS)

#: Overrides routed to ``config.env_runners(...)``.
ENV_RUNNER_KEYWORDS = frozenset(["num_env_runners", "num_envs_per_env_runner",
                                 "rollout_fragment_length", "batch_mode"])

#: Small CPU-friendly defaults of :func:`ppo_config` (each can be overridden by keyword).
PPO_DEFAULTS: dict[str, Any] = {
    "lr": 1e-3,
    "gamma": 0.99,  # the long-run payoff per round is the criterion (spec §6)
    "lambda_": 0.95,
    "train_batch_size_per_learner": 400,
    "minibatch_size": 100,
    "num_epochs": 4,
    "entropy_coeff": 0.0,
    "vf_loss_coeff": 0.5,
}

SHARED_POLICY_ID = "shared"

_INSTALL_HINT = ('RLlib is not installed: install the [ray] extra, e.g. pip install -e ".[ray]" '
                 '(or pip install "reciprocity[ray]"); note that ray pins gymnasium to 1.2.x')


def _require_rllib():
    """Import ray.rllib or raise an ImportError naming the [ray] extra."""
    try:
        import ray.rllib  # noqa: F401
        from ray.rllib.env.wrappers.pettingzoo_env import ParallelPettingZooEnv
    except ImportError as err:
        raise ImportError(f"{_INSTALL_HINT} ({err})") from err
    return ParallelPettingZooEnv


def env_name(scenario: str | Scenario) -> str:
    """The default RLlib registry name of a scenario: ``reciprocity-rllib/<id>``.

    (Distinct from the Gymnasium id ``reciprocity/<id>``, which is the single-agent view.)
    """
    return f"reciprocity-rllib/{get_scenario(scenario).id}"


def _split_env(config: dict[str, Any]) -> dict[str, Any]:
    unknown = set(config) - ENV_KEYWORDS
    if unknown:
        raise ValueError(f"unknown environment keyword(s) {sorted(unknown)}; "
                         f"known: {sorted(ENV_KEYWORDS)}")
    return dict(config)


def make_rllib_env(scenario: str | Scenario, **overrides):
    """The scenario's parallel env wrapped in RLlib's ``ParallelPettingZooEnv``."""
    wrapper = _require_rllib()
    from ..envs.indirect_reciprocity_v0 import parallel_env

    config = merge_overrides(get_scenario(scenario).config(), _split_env(overrides))
    return wrapper(parallel_env(**config))


def register_env(scenario: str | Scenario, name: str | None = None, **overrides) -> str:
    """Register a scenario's parallel environment with RLlib's (Tune's) env registry.

    Args:
        scenario: scenario id, scenario file or :class:`Scenario`.
        name: registry name (default :func:`env_name`, ``reciprocity-rllib/<id>``).
        **overrides: environment constructor keywords (``max_rounds``, ``benefit``, ...).
            Keys of RLlib's ``env_config`` (``config.environment(name, env_config={...})``)
            override these in turn.

    Returns: the registered name, to pass to ``config.environment(...)``.
    """
    _require_rllib()
    from ray.tune.registry import register_env as tune_register_env

    scenario = get_scenario(scenario)
    base = merge_overrides(scenario.config(), _split_env(overrides))
    make_rllib_env(scenario, **base).close()  # bad keywords fail here, not inside Ray
    name = env_name(scenario) if name is None else name

    def creator(env_config=None):
        return make_rllib_env(scenario, **merge_overrides(base, dict(env_config or {})))

    tune_register_env(name, creator)
    return name


def _training_keywords(config_cls) -> set[str]:
    """Keyword names accepted by ``config.training(...)`` (PPO's and the base class')."""
    names = set()
    for cls in config_cls.__mro__:
        method = cls.__dict__.get("training")
        if method is not None:
            names |= {p.name for p in inspect.signature(method).parameters.values()
                      if p.kind == inspect.Parameter.KEYWORD_ONLY}
    return names - {"model", "lr_schedule", "vf_share_layers"}


def ppo_config(scenario: str | Scenario, shared_policy: bool = False, **overrides):
    """An RLlib ``PPOConfig`` (new API stack) training the focal agents of a scenario.

    Args:
        scenario: scenario id, scenario file or :class:`Scenario`; the environment is registered
            under :func:`env_name` (see :func:`register_env`).
        shared_policy: one policy (``"shared"``) for all focal agents (parameter sharing);
            default: one policy per focal agent, named like the agent (``agent_<slot>``).
        **overrides, routed by name:
            - environment keywords (``max_rounds``, ``benefit``, ``population``, ...) ->
              ``env_config``;
            - ``num_env_runners`` (default 0: sample in the driver process),
              ``num_envs_per_env_runner``, ``rollout_fragment_length``, ``batch_mode`` ->
              ``config.env_runners``;
            - ``fcnet_hiddens`` (default ``[32, 32]``) -> the default RLModule's model config;
            - ``seed`` -> ``config.debugging(seed=...)``;
            - any keyword of ``PPOConfig.training`` (``lr``, ``gamma``,
              ``train_batch_size_per_learner``, ``minibatch_size``, ``num_epochs``,
              ``entropy_coeff``, ...; defaults in :data:`PPO_DEFAULTS`).
            Anything else raises a ValueError naming it.

    Returns: a ``ray.rllib.algorithms.ppo.PPOConfig``; call ``.build_algo()`` then ``.train()``.
    """
    _require_rllib()
    from ray.rllib.algorithms.ppo import PPOConfig
    from ray.rllib.core.rl_module.default_model_config import DefaultModelConfig
    from ray.rllib.core.rl_module.multi_rl_module import MultiRLModuleSpec
    from ray.rllib.core.rl_module.rl_module import RLModuleSpec

    scenario = get_scenario(scenario)
    overrides = dict(overrides)
    env_overrides = {k: overrides.pop(k) for k in list(overrides) if k in ENV_KEYWORDS}
    runner = {"num_env_runners": 0, "num_envs_per_env_runner": 1}
    runner.update({k: overrides.pop(k) for k in list(overrides) if k in ENV_RUNNER_KEYWORDS})
    hiddens = list(overrides.pop("fcnet_hiddens", [32, 32]))
    seed = overrides.pop("seed", None)
    allowed = _training_keywords(PPOConfig)
    unknown = set(overrides) - allowed
    if unknown:
        raise ValueError(f"ppo_config: unknown override(s) {sorted(unknown)}; environment "
                         f"keywords: {sorted(ENV_KEYWORDS)}; env runner keywords: "
                         f"{sorted(ENV_RUNNER_KEYWORDS)}; 'fcnet_hiddens', 'seed'; or a "
                         "keyword of PPOConfig.training")
    training = {**PPO_DEFAULTS, **overrides}

    name = register_env(scenario)
    probe = make_rllib_env(scenario, **env_overrides)  # agent ids under these overrides
    agents = sorted(probe.possible_agents, key=lambda a: int(a.rsplit("_", 1)[1]))
    probe.close()

    if shared_policy:
        policies = {SHARED_POLICY_ID}

        def policy_mapping_fn(agent_id, episode=None, **kwargs):
            return SHARED_POLICY_ID
    else:
        policies = set(agents)

        def policy_mapping_fn(agent_id, episode=None, **kwargs):
            return agent_id

    config = (
        PPOConfig()
        .api_stack(enable_rl_module_and_learner=True, enable_env_runner_and_connector_v2=True)
        .environment(name, env_config=env_overrides)
        .framework("torch")
        .env_runners(**runner)
        .learners(num_learners=0)
        .multi_agent(policies=policies, policy_mapping_fn=policy_mapping_fn)
        .rl_module(
            rl_module_spec=MultiRLModuleSpec(
                rl_module_specs={p: RLModuleSpec() for p in sorted(policies)}),
            model_config=DefaultModelConfig(fcnet_hiddens=hiddens, vf_share_layers=False),
        )
        .training(**training)
    )
    if seed is not None:
        config = config.debugging(seed=seed)
    return config


def policy_table(algo, module_id: str, *, own_reputation: int | None = None
                 ) -> dict[str, dict[str, float]]:
    """A trained RLlib policy's probability of output 1 per context, in the metrics schema.

    ``algo``: an RLlib ``Algorithm`` built from :func:`ppo_config`; ``module_id``: the policy
    (``agent_<slot>``, or ``"shared"``). Returns ``{"action": {"GG", ..., "BB"}, "signal":
    {"GGC", ..., "BBD"}}`` like ``metrics.json``'s ``"policy"`` (and
    ``reciprocity.integrations.sb3.policy_table``): P(cooperate | own x, recipient y) and
    P(signal Good | donor x, recipient y, action a); signal probabilities average over the
    observer's own reputation unless ``own_reputation`` (0 or 1) is given. Only the local
    observation (shape (5,)) is supported.
    """
    _require_rllib()
    import torch

    module = algo.get_module(module_id)
    if module is None:
        raise ValueError(f"module_id: no policy {module_id!r} in this algorithm")

    def prob_one(obs):
        with torch.no_grad():
            out = module.forward_inference({"obs": torch.from_numpy(obs)})
            return torch.softmax(out["action_dist_inputs"], dim=-1)[:, 1].numpy()

    return context_table(prob_one, own_reputation=own_reputation)

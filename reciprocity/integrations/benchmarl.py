"""BenchMARL task (needs the ``[torchrl]`` extra, which includes BenchMARL).

BenchMARL runs its algorithms (IPPO, MAPPO, IQL, VDN, QMIX, MASAC, ...) on *tasks*: objects
that build a TorchRL environment and describe its specs. :func:`task` turns any scenario into
one, so BenchMARL's own experiment runner trains on it::

    from benchmarl.algorithms import MappoConfig
    from benchmarl.experiment import Experiment
    from benchmarl.models.mlp import MlpConfig

    from reciprocity.integrations.benchmarl import experiment_config, task

    experiment = Experiment(task=task("discriminators-vs-defectors-v0", max_rounds=50),
                            algorithm_config=MappoConfig.get_from_yaml(),
                            model_config=MlpConfig.get_from_yaml(), seed=0,
                            config=experiment_config(max_n_frames=100_000))
    experiment.run()

The environment is the parallel one through TorchRL's ``PettingZooWrapper``
(:func:`reciprocity.integrations.torchrl.make_env`), with the global ``state()`` for
centralised critics and mixers (MAPPO, QMIX) and all focal agents in one group, ``"agents"``.
Discrete actions only. Unlike the other integration modules, this one imports BenchMARL at once
(its task class subclasses BenchMARL's, and experiments pickle it).

:func:`experiment_config` is the recommended ``ExperimentConfig``: BenchMARL's defaults with
**stochastic evaluation**. BenchMARL evaluates with deterministic (greedy) actions by default; the
greedy output of a policy that is still learning flips on small differences between near-equal
probabilities: on many-learners-v0 (IPPO, MAPPO and IQL after 2 000 frames) the greedy shared
policy defected in every context and every evaluation return read 0.0 while the sampled policy
earned; on the flagship the greedy returns were above the sampled ones. Sampling, as in the
collection, reports what the policy being trained does (docs/marl.md has the figures).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from ..envs import Scenario, get_scenario, scenarios
from ..envs.config import merge_overrides
from ..envs.indirect_reciprocity_v0 import parallel_env
from .torchrl import GROUP, make_env

try:
    from benchmarl.environments.pettingzoo.common import PettingZooClass
    from benchmarl.experiment import ExperimentConfig
except ImportError as err:
    raise ImportError('reciprocity.integrations.benchmarl needs BenchMARL; install the [torchrl] '
                      'extra: pip install "reciprocity[torchrl]" (from a checkout: '
                      f'pip install -e ".[torchrl]") ({err})') from err

__all__ = ["ReciprocityTask", "experiment_config", "task"]


class ReciprocityTask(PettingZooClass):
    """A reciprocity scenario as a BenchMARL task.

    ``name`` is a scenario id (or file) and ``config`` the environment keyword overrides. The
    spec logic is that of BenchMARL's PettingZoo tasks; the environment is built by
    :func:`reciprocity.integrations.torchrl.make_env`.
    """

    def get_env_fun(self, num_envs, continuous_actions, seed, device):
        # not vectorised: BenchMARL runs num_envs copies in a TorchRL SerialEnv
        name, config = self.name, dict(self.config)
        return lambda: make_env(name, seed=seed, device=device, **config)

    def supports_continuous_actions(self) -> bool:
        return False

    def supports_discrete_actions(self) -> bool:
        return True

    def has_state(self) -> bool:
        return True

    def has_render(self, env) -> bool:
        return False

    def max_steps(self, env) -> int:
        return _max_cycles(self.name, self.config)

    @staticmethod
    def log_info(batch) -> dict[str, float]:
        rewards = batch.get(("next", GROUP, "reward"))
        # two parallel steps per round: the mean reward per step times 2 is the payoff
        return {"payoff_per_round": 2.0 * rewards.mean().item()}

    @staticmethod
    def env_name() -> str:
        return "reciprocity"


def _max_cycles(scenario: str, overrides: dict[str, Any]) -> int:
    """Parallel steps per episode of the configured environment."""
    config = merge_overrides(get_scenario(scenario).config(), overrides)
    return parallel_env(**config).max_cycles


def task(scenario: str | Path | Scenario, **overrides: Any) -> ReciprocityTask:
    """A BenchMARL task for a scenario: a registered id, a scenario file, or a registered
    :class:`Scenario`; ``overrides`` are environment keywords (``max_rounds``, ``max_cycles``,
    ``benefit``, ...), validated here."""
    if isinstance(scenario, Scenario):
        if scenario.id not in scenarios():
            raise ValueError(f"scenario: {scenario.id!r} is not registered; register it "
                             "(reciprocity.envs.register) or pass its file")
        name = scenario.id
    else:
        name = str(scenario)  # an id or a file: what experiments pickle and rebuild from
    _max_cycles(name, overrides)  # bad keywords fail now, not inside an experiment
    return ReciprocityTask(name=name, config=dict(overrides))


def experiment_config(**changes: Any) -> ExperimentConfig:
    """The recommended BenchMARL ``ExperimentConfig`` for reciprocity tasks.

    BenchMARL's defaults (``ExperimentConfig.get_from_yaml()``) with
    ``evaluation_deterministic_actions = False`` (evaluation samples actions from the policy, as
    the collection does: on many-learners-v0 the greedy output of an early learner defected
    everywhere, and every evaluation return read 0.0), ``render = False`` (the task has no
    render) and ``loggers = ["csv"]`` (BenchMARL's default adds wandb). ``changes`` set any other
    field (``max_n_frames=...``, ``evaluation_deterministic_actions=True`` for BenchMARL's
    greedy evaluation, ...); an unknown name is a ``ValueError`` naming it.
    """
    known = {f.name for f in dataclasses.fields(ExperimentConfig)}
    unknown = sorted(set(changes) - known)
    if unknown:
        raise ValueError(f"unknown ExperimentConfig field(s) {unknown}; known: {sorted(known)}")
    config = ExperimentConfig.get_from_yaml()
    config.evaluation_deterministic_actions = False
    config.render = False
    config.loggers = ["csv"]
    for name, value in changes.items():
        setattr(config, name, value)
    return config

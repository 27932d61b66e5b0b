"""BenchMARL task (needs the ``[torchrl]`` extra, which includes BenchMARL).

BenchMARL runs its algorithms (IPPO, MAPPO, IQL, VDN, QMIX, MASAC, ...) on *tasks*: objects
that build a TorchRL environment and describe its specs. :func:`task` turns any scenario into
one, so BenchMARL's own experiment runner trains on it::

    from benchmarl.algorithms import MappoConfig
    from benchmarl.experiment import Experiment, ExperimentConfig
    from benchmarl.models.mlp import MlpConfig
    from reciprocity.integrations.benchmarl import task

    experiment = Experiment(task=task("discriminators-vs-defectors-v0", max_rounds=50),
                            algorithm_config=MappoConfig.get_from_yaml(),
                            model_config=MlpConfig.get_from_yaml(), seed=0,
                            config=ExperimentConfig.get_from_yaml())
    experiment.run()

The environment is the parallel one through TorchRL's ``PettingZooWrapper``
(:func:`reciprocity.integrations.torchrl.make_env`), with the global ``state()`` for
centralised critics and mixers (MAPPO, QMIX) and all focal agents in one group, ``"agents"``.
Discrete actions only. Unlike the other integration modules, this one imports BenchMARL at once
(its task class subclasses BenchMARL's, and experiments pickle it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..envs import Scenario, get_scenario, scenarios
from ..envs.config import merge_overrides
from ..envs.indirect_reciprocity_v0 import parallel_env
from .torchrl import GROUP, make_env

try:
    from benchmarl.environments.pettingzoo.common import PettingZooClass
except ImportError as err:
    raise ImportError('reciprocity.integrations.benchmarl needs BenchMARL; install the [torchrl] '
                      'extra: pip install "reciprocity[torchrl]" (from a checkout: '
                      f'pip install -e ".[torchrl]") ({err})') from err

__all__ = ["ReciprocityTask", "task"]


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

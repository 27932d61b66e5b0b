"""reciprocity: multi-agent RL on indirect reciprocity with public signalling.

Subpackages: :mod:`reciprocity.envs` (the game, scenarios, PettingZoo environments),
:mod:`reciprocity.agents` (the reciprocity-gradient learner), :mod:`reciprocity.baselines`
(REINFORCE, PPO). Importing this package registers the single-focal scenarios with Gymnasium
as ``reciprocity/<scenario id>``.
"""

from importlib.metadata import PackageNotFoundError, version

from .envs import make, make_parallel, scenarios, simulate

try:
    __version__ = version("reciprocity")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0"

__all__ = ["__version__", "make", "make_parallel", "scenarios", "simulate"]

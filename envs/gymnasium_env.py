"""Gymnasium view of a single-focal scenario (``gymnasium.make("reciprocity/<id>")``)."""

from __future__ import annotations

import gymnasium
import numpy as np

from .config import merge_overrides
from .indirect_reciprocity_v0 import METADATA, parallel_env
from .scenarios import get_scenario


class SingleFocalEnv(gymnasium.Env):
    """The one focal agent of a scenario as a Gymnasium environment.

    Spaces, observations, rewards and infos are those of the PettingZoo environment's single
    agent; a round is two steps (act, then assess). Keyword arguments override the scenario.
    """

    metadata = {"render_modes": METADATA["render_modes"], "render_fps": 4}  # noqa: RUF012

    def __init__(self, scenario: str = "L6-v0", **overrides):
        config = merge_overrides(get_scenario(scenario).config(), overrides)
        self.par_env = parallel_env(**config)
        if len(self.par_env.possible_agents) != 1:
            raise ValueError(f"population: SingleFocalEnv needs exactly one focal slot, got "
                             f"{len(self.par_env.possible_agents)}; use make_parallel instead")
        self.agent = self.par_env.possible_agents[0]
        self.observation_space = self.par_env.observation_space(self.agent)
        self.action_space = self.par_env.action_space(self.agent)
        self.render_mode = self.par_env.render_mode

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        obs, infos = self.par_env.reset(seed=seed, options=options)
        return obs[self.agent], _own_copy(infos[self.agent])

    def step(self, action):
        obs, rewards, terms, truncs, infos = self.par_env.step({self.agent: action})
        a = self.agent
        return obs[a], rewards[a], terms[a], truncs[a], _own_copy(infos[a])

    def render(self):
        return self.par_env.render()


def _own_copy(info: dict) -> dict:
    """The PettingZoo infos share read-only record arrays between steps; Gymnasium's contract
    is new data on every call."""
    return {k: v.copy() if isinstance(v, np.ndarray) else v for k, v in info.items()}

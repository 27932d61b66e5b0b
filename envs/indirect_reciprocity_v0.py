"""
# Indirect reciprocity with public signalling

| Import             | `from reciprocity.envs import indirect_reciprocity_v0`   |
|--------------------|----------------------------------------------------------|
| Actions            | Discrete                                                 |
| Parallel API       | Yes (native; the AEC env wraps it)                       |
| Agents             | `agents = ["agent_<slot>" for every focal slot]`         |
| Action shape       | Discrete(2): 1 = cooperate / Good, 0 = defect / Bad      |
| Observation shape  | Box(0, 1, (5,), float32)                                 |

A donation game played by N agents (spec §1). Every agent has a public binary reputation. Each
**round** is two parallel steps (two AEC cycles):

1. **act** (phase 0): every donor is matched with a random recipient (a derangement) and
   chooses to cooperate (pay `cost`, recipient gains `benefit`) or defect. An intended
   cooperation fails with probability `execution_error`.
2. **assess** (phase 1): every agent observes exactly one other interaction and emits a public
   signal Good/Bad about its donor, flipped with probability `assessment_error`. With
   probability `update_probability` the donor's reputation becomes the published signal.

The population is a list of slots: `"focal"` slots are the PettingZoo agents (learners);
the others are **background** agents that follow a scripted strategy (an action rule and an
assessment rule, e.g. `"L6"` = stern judging) inside the environment.

### Observation

`[phase, donor_rep, action, recipient_rep, own_rep]`:
- act phase (0): `[0, own_rep, 0, recipient_rep, own_rep]` (the agent is the donor);
- assess phase (1): `[1, donor_rep, executed_action, recipient_rep, own_rep]` about the
  interaction the agent observes, with reputations as they were at the start of the round.

With `observation="full"` the public reputation vector (N) and the ids of the donor, the
recipient and the agent itself (each divided by N - 1) are appended: shape (5 + N + 3,).

### Rewards

Each focal agent's payoff of the round (`-cost` per executed cooperation given, `+benefit` per
executed cooperation received), delivered on the act step; 0 on assess steps. There is no
termination; all agents are truncated after `max_rounds` rounds.

### Infos

`infos[agent]`: `"phase"` (phase of the returned observation), `"round"` (completed rounds),
`"reputation"` (public reputations now, (N,) int8) and `"record"`: the last completed round's
public record (`recipients`, `observers`, `reputation_before`, `actions`, `signals`,
`reputation_after`, each (N,) indexed by donor) or `None` before the first round ends.

### Arguments

`population`, `benefit`, `cost`, `execution_error`, `assessment_error`, `update_probability`,
`max_rounds`, `initial_reputation` (`"good"`, `"bad"` or p0), `observation` (`"local"` or
`"full"`), `render_mode` (`"ansi"` or `"rgb_array"`). Catalogue scenarios:
`reciprocity.envs.make(scenario_id, **overrides)`.

### Version history

* v0: initial release.
"""

from __future__ import annotations

import functools
from collections import deque
from typing import ClassVar

import gymnasium
import numpy as np
from gymnasium.spaces import Box, Discrete
from gymnasium.utils import EzPickle
from pettingzoo import ParallelEnv
from pettingzoo.utils import wrappers
from pettingzoo.utils.conversions import parallel_to_aec_wrapper

from .config import DEFAULTS, EnvConfig, check_env_memory, strategy_tables
from .core import BatchedGame
from .render import render_ansi, render_rgb

__all__ = ["env", "parallel_env", "raw_env"]

OBSERVATION_MODES = ("local", "full")
RENDER_HISTORY = 48  # rounds kept for rendering


def check_action(agent: str, action) -> int:
    """Validate one action (0 or 1); raise a ValueError naming the agent otherwise."""
    if type(action) is int and (action == 0 or action == 1):  # fast path: a plain int
        return action
    value = action
    if isinstance(value, np.ndarray) and value.shape in ((), (1,)):
        value = value.reshape(()).item()
    elif isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, int) or value not in (0, 1):
        raise ValueError(
            f"invalid action for {agent}: {action!r}; the action space is Discrete(2) "
            "(1 = cooperate / Good, 0 = defect / Bad)"
        )
    return value


class parallel_env(ParallelEnv, EzPickle):
    """Native parallel environment; see the module docstring."""

    metadata: ClassVar[dict] = {
        "name": "indirect_reciprocity_v0",
        "render_modes": ["ansi", "rgb_array"],
        "is_parallelizable": True,
        "render_fps": 4,
    }

    def __init__(self, population=DEFAULTS["population"], benefit=DEFAULTS["benefit"],
                 cost=DEFAULTS["cost"], execution_error=DEFAULTS["execution_error"],
                 assessment_error=DEFAULTS["assessment_error"],
                 update_probability=DEFAULTS["update_probability"],
                 max_rounds=DEFAULTS["max_rounds"],
                 initial_reputation=DEFAULTS["initial_reputation"], observation="local",
                 render_mode=None, **unknown):
        if unknown:
            raise ValueError(f"unknown configuration field(s) {sorted(unknown)}; known: "
                             f"{sorted([*DEFAULTS, 'observation', 'render_mode'])}")
        EzPickle.__init__(self, population, benefit, cost, execution_error, assessment_error,
                          update_probability, max_rounds, initial_reputation, observation,
                          render_mode)
        self.config = EnvConfig.from_kwargs(
            population=population, benefit=benefit, cost=cost, execution_error=execution_error,
            assessment_error=assessment_error, update_probability=update_probability,
            max_rounds=max_rounds, initial_reputation=initial_reputation)
        if observation not in OBSERVATION_MODES:
            raise ValueError(f"observation must be one of {OBSERVATION_MODES}, "
                             f"got {observation!r}")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']} or "
                             f"None, got {render_mode!r}")
        self.observation_mode = observation
        self.render_mode = render_mode
        self.max_rounds = self.config.max_rounds
        n = self.config.num_agents
        self.num_slots = n
        self.focal_slots = self.config.focal_slots
        if self.focal_slots.size == 0:
            raise ValueError("population: needs at least one 'focal' slot for a PettingZoo "
                             "environment (use reciprocity.envs.simulate for all-scripted runs)")
        self.possible_agents = [f"agent_{i}" for i in self.focal_slots]
        self.agent_name_mapping = dict(zip(self.possible_agents, self.focal_slots.tolist(),
                                           strict=True))
        self.agents = []
        self.slot_labels = ["focal" if s is None else s.name for s in self.config.strategies]
        action_table, assess_table = strategy_tables(self.config.strategies)
        self.game = BatchedGame(self.config.params, action_table, assess_table, batch=1)
        obs_dim = 5 + (n + 3 if observation == "full" else 0)
        check_env_memory(self.config, obs_dim)
        self._observation_space = Box(0.0, 1.0, (obs_dim,), np.float32)
        self._action_space = Discrete(2)
        self._history: deque = deque(maxlen=RENDER_HISTORY)
        self._phase = 0
        self._last_record = None

    @functools.cache  # noqa: B019 - spaces must be the same object per agent
    def observation_space(self, agent):
        return self._observation_space

    @functools.cache  # noqa: B019
    def action_space(self, agent):
        return self._action_space

    # -- observations ----------------------------------------------------------------------------
    def _observe(self) -> dict[str, np.ndarray]:
        g = self.game
        rep = g.reputation[0]
        slots = self.focal_slots
        obs = np.zeros((len(slots), self._observation_space.shape[0]), dtype=np.float32)
        recipients = g.noise.recipients[0]
        if self._phase == 0:
            donors = slots
            obs[:, 2] = 0.0
        else:
            donors = g.observed_donors()[0, slots]
            obs[:, 2] = self._pending_actions[donors]
        obs[:, 0] = self._phase
        obs[:, 1] = rep[donors]
        obs[:, 3] = rep[recipients[donors]]
        obs[:, 4] = rep[slots]
        if self.observation_mode == "full":
            n = self.num_slots
            obs[:, 5:5 + n] = rep
            obs[:, 5 + n] = donors / (n - 1)
            obs[:, 6 + n] = recipients[donors] / (n - 1)
            obs[:, 7 + n] = slots / (n - 1)
        return dict(zip(self.agents, obs, strict=False))

    def _infos(self) -> dict[str, dict]:
        rep = self.game.reputation[0].copy()
        rep.flags.writeable = False  # shared by all agents' infos
        return {a: {"phase": self._phase, "round": self.game.round, "reputation": rep,
                    "record": self._last_record} for a in self.agents}

    # -- API -------------------------------------------------------------------------------------
    def reset(self, seed=None, options=None):
        self.game.reset(seed)
        self.agents = self.possible_agents[:]
        self._phase = 0
        self._last_record = None
        self._history.clear()
        self.game.begin_round()
        return self._observe(), self._infos()

    def step(self, actions):
        if not self.agents:
            raise RuntimeError("step called on a finished episode; call reset()")
        if len(actions) != len(self.agents) or set(actions) != set(self.agents):
            unknown = set(actions) - set(self.agents)
            if unknown:
                raise ValueError(f"actions given for unknown or finished agent(s) "
                                 f"{sorted(unknown)}; live agents: {self.agents}")
            missing = [a for a in self.agents if a not in actions]
            raise ValueError(f"no action given for agent(s) {missing}")
        decisions = np.array([[check_action(a, actions[a]) for a in self.agents]],
                             dtype=np.int8)
        g = self.game
        zero = dict.fromkeys(self.agents, False)
        if self._phase == 0:
            actions, payoffs = g.act(self.focal_slots, decisions)
            self._pending_actions, payoffs = actions[0], payoffs[0]
            rewards = dict(zip(self.agents, payoffs[self.focal_slots].tolist(), strict=True))
            self._phase = 1
            return self._observe(), rewards, zero, dict(zero), self._infos()
        record = g.assess(self.focal_slots, decisions)
        self._last_record = record.public(0)
        self._history.append(self._last_record)
        rewards = dict.fromkeys(self.agents, 0.0)
        truncated = g.round >= self.max_rounds
        self._phase = 0
        g.begin_round()
        obs, infos = self._observe(), self._infos()
        truncations = dict.fromkeys(self.agents, truncated)
        if truncated:
            self.agents = []
        return obs, rewards, zero, truncations, infos

    def render(self):
        if self.render_mode is None:
            gymnasium.logger.warn("render() called without a render_mode")
            return None
        rep = self.game.reputation[0]
        if self.render_mode == "ansi":
            return render_ansi(self._history, self.focal_slots, rep, self.slot_labels,
                               self.game.round)
        return render_rgb(self._history, self.focal_slots, rep)

    def close(self):
        pass


class ActionCheckedAEC(parallel_to_aec_wrapper):
    """The AEC conversion, rejecting an invalid action at once (ValueError naming the agent).

    A subclass rather than one more wrapper: every attribute read through a wrapper (``last()``
    reads five) costs a ``__getattr__`` hop, about a third of an AEC step.
    """

    def step(self, action):
        agent = self.agent_selection
        if action is not None or not (self.terminations[agent] or self.truncations[agent]):
            check_action(agent, action)
        super().step(action)


def raw_env(**kwargs):
    """The AEC environment without PettingZoo's order-enforcing wrapper."""
    return parallel_to_aec_wrapper(parallel_env(**kwargs))


def env(**kwargs):
    """The AEC environment with the standard wrappers (action check, order enforcing)."""
    return wrappers.OrderEnforcingWrapper(ActionCheckedAEC(parallel_env(**kwargs)))

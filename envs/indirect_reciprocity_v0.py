"""
# Indirect reciprocity with public signalling

| Import             | `from reciprocity.envs import indirect_reciprocity_v0`   |
|--------------------|----------------------------------------------------------|
| Actions            | Discrete                                                 |
| Parallel API       | Yes (native; the AEC env is native too, on the same core)|
| Agents             | `agents = ["agent_<slot>" for every focal slot]`         |
| Action shape       | Discrete(2): 1 = cooperate / Good, 0 = defect / Bad      |
| Observation shape  | Box(0, 1, (5,), float32)                                 |
| State shape        | Box(0, 1, (2 + k + 5 N,), float32)                       |

A donation game played by N agents (spec §1). Every agent has a public binary reputation. Each
**round** is two parallel steps (two AEC cycles) in the plain game:

1. **act** (phase 0): every donor is matched with a random recipient (a derangement) and
   chooses to cooperate (pay `cost`, recipient gains `benefit`) or defect. An intended
   cooperation fails with probability `execution_error`.
2. **assess** (phase 1): every agent observes exactly one other interaction and emits a public
   signal Good/Bad about its donor, flipped with probability `assessment_error`. With
   probability `update_probability` the donor's reputation becomes the published signal.

Institutions (spec §7): with `observers_per_interaction = k` (odd) every interaction has k
distinct observers and a round has 1 + k steps: act, then k assess phases, in each of which every
agent observes one interaction (a different one each phase); the donor's reputation becomes the
majority of the k published signals. With `signal_audit = v` each interaction is audited with
probability v, and an observer whose published signal contradicts `audit_norm` (default: the
background's assessment rule) is set Bad at the end of the round.

The population is a list of slots: `"focal"` slots are the PettingZoo agents (learners);
the others are **background** agents that follow a scripted strategy (an action rule and an
assessment rule, e.g. `"L6"` = stern judging) inside the environment.

### Observation

`[phase, donor_rep, action, recipient_rep, own_rep]`:
- act phase (0): `[0, own_rep, 0, recipient_rep, own_rep]` (the agent is the donor);
- assess phase (1): `[1, donor_rep, executed_action, recipient_rep, own_rep]` about the
  interaction the agent observes, with reputations as they were at the start of the round
  (the same first entry 1 in each of the k assess phases).

With `observation="full"` the public reputation vector (N) and the ids of the donor, the
recipient and the agent itself (each divided by N - 1) are appended: shape (5 + N + 3,).

### Global state

`state()` (the same on both APIs), float32 in [0, 1], `P + 1 + 5 N` entries with P = 1 + k
phases per round (2 in the plain game), blocks in this order (:data:`STATE_BLOCKS`):
`phase` (one-hot, P), `progress` (completed rounds / `max_rounds`), `reputation` (N, now),
`recipient` (N: m(d) / (N - 1) by donor d), `recipient_reputation` (N: g_m(d)), `action` (N:
executed actions, 0 in the act phase), `observer` (N: o(d) / (N - 1) of the current assess
phase, 0 in the act phase).

### Rewards

Each focal agent's payoff of the round (`-cost` per executed cooperation given, `+benefit` per
executed cooperation received). Parallel API: delivered on the act step, 0 on assess steps. AEC
API: every donor must have acted before payoffs exist, so each agent's payoff is its reward on
its own next step (its first assess step), and `last()` returns it at the agent's following
turn; episode sums are the same. There is no termination; all agents are truncated after
`max_rounds` rounds, after the last assess phase (`max_cycles` = (1 + k) `max_rounds` parallel
steps).

### Infos

Flat, numeric, fixed shapes from `reset` on: `"phase"` (phase of the returned observation:
0 act, 1 .. k assess), `"round"` (completed rounds), `"reputation"` (public reputations now,
(N,) int8), and the last completed round's public record as `"record_<field>"` for `recipients`,
`observers` (int64), `reputation_before`, `actions`, `signals`, `reputation_after`, `verdicts`,
`audits`, `flags` (int8), each (N,) indexed by donor (`observers`, `signals` and `flags` are
(k, N) with k > 1 observers per interaction), and -1 before the first round ends.
`public_record()` returns the same record as a dict of arrays (`None` before the first round
ends). With `record_infos=False` the infos hold `"phase"` alone (still numeric and fixed-shape):
pipelines that tensorise every info value each step (TorchRL) run faster, and the record stays
available from `public_record()`.

### Spaces and copies

`observation_space(agent)` / `action_space(agent)` return the entries of the
`observation_spaces` / `action_spaces` dicts (one object per agent, built once). A copy
(`copy.deepcopy`, `pickle`) made after `reset` carries the game (reputations, the round under
way, the random generator), so it continues exactly as the original would; a copy made before
the first `reset` is a new environment of the same configuration (EzPickle), with its own
entropy.

### Arguments

`population`, `benefit`, `cost`, `execution_error`, `assessment_error`, `update_probability`,
`max_rounds` or `max_cycles`, `initial_reputation` (`"good"`, `"bad"` or p0), `signal_audit`,
`audit_norm`, `observers_per_interaction`, `observation` (`"local"` or `"full"`),
`record_infos` (default True; False: infos hold `"phase"` only), `render_mode` (`"human"`,
`"ansi"` or `"rgb_array"`). `max_cycles`, `observation`, `record_infos` and `render_mode` are
options of this shell, not rules of the game. Catalogue scenarios:
`reciprocity.envs.make(scenario_id, **overrides)`.

### Version history

* v0: initial release; institutions (signal audit, k observers with majority) added with
  defaults that leave every trajectory unchanged.
"""

from __future__ import annotations

import copy
from collections import deque
from typing import ClassVar

import gymnasium
import numpy as np
from gymnasium.spaces import Box, Discrete
from gymnasium.utils import EzPickle
from pettingzoo import AECEnv, ParallelEnv
from pettingzoo.utils import wrappers

from .config import DEFAULTS, EnvConfig, check_env_memory, strategy_tables
from .core import BatchedGame, RoundRecord
from .render import render_ansi, render_rgb

__all__ = ["CONSTRUCTOR_KEYWORDS", "STATE_BLOCKS", "env", "parallel_env", "raw_env"]

OBSERVATION_MODES = ("local", "full")
RENDER_HISTORY = 48  # rounds kept for rendering
#: The blocks of ``state()`` in order; ``"phase"`` has P entries, ``"progress"`` 1, the rest N.
STATE_BLOCKS = ("phase", "progress", "reputation", "recipient", "recipient_reputation",
                "action", "observer")
RECORD_PREFIX = "record_"
_EPISODE = "_episode_in_progress"  # marks a pickled state that carries a started game
INDEX_FIELDS = ("recipients", "observers")  # int64 slot indices; the other fields are int8
PANEL_FIELDS = ("observers", "signals", "flags")  # (k, N) with k > 1 observers per interaction
#: Every constructor keyword: the configuration (:data:`DEFAULTS`) and the shell's own.
CONSTRUCTOR_KEYWORDS = (*DEFAULTS, "max_cycles", "observation", "record_infos", "render_mode")
METADATA = {
    "name": "indirect_reciprocity_v0",
    "render_modes": ["human", "ansi", "rgb_array"],
    "is_parallelizable": True,
    "render_fps": 4,
}


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


class GameShell:
    """One game of the core, driven one phase at a time: what the parallel and AEC APIs share.

    Holds the core, the phase, the observations of the current phase (a fresh (F, D) array
    each phase: rows handed out are never overwritten), the infos, the state and the render
    history. ``resolve`` takes the focal agents' decisions of the current phase.
    """

    def __init__(self, observation="local", render_mode=None, max_cycles=None,
                 record_infos=True, **config):
        unknown = set(config) - set(DEFAULTS)
        if unknown:
            raise ValueError(f"unknown configuration field(s) {sorted(unknown)}; known: "
                             f"{sorted(CONSTRUCTOR_KEYWORDS)}")
        self.config = EnvConfig.from_kwargs(max_cycles=max_cycles, **config)
        if observation not in OBSERVATION_MODES:
            raise ValueError(f"observation must be one of {OBSERVATION_MODES}, "
                             f"got {observation!r}")
        if render_mode is not None and render_mode not in METADATA["render_modes"]:
            raise ValueError(f"render_mode must be one of {METADATA['render_modes']} or "
                             f"None, got {render_mode!r}")
        if not isinstance(record_infos, bool | np.bool_):
            raise ValueError(f"record_infos must be True or False, got {record_infos!r}")
        self.observation_mode = observation
        self.render_mode = render_mode
        self.record_infos = bool(record_infos)
        self.max_rounds = self.config.max_rounds
        self.phases = self.config.phases_per_round
        self.assess_phases = self.phases - 1  # k: one observed interaction per agent per phase
        n = self.config.num_agents
        self.num_slots = n
        self.focal_slots = self.config.focal_slots
        if self.focal_slots.size == 0:
            raise ValueError("population: needs at least one 'focal' slot for a PettingZoo "
                             "environment (use reciprocity.envs.simulate for all-scripted runs)")
        self.possible_agents = [f"agent_{i}" for i in self.focal_slots]
        self.slot_labels = ["focal" if s is None else s.name for s in self.config.strategies]
        action_table, assess_table = strategy_tables(self.config.strategies)
        self.game = BatchedGame(self.config.params, action_table, assess_table, batch=1)
        obs_dim = 5 + (n + 3 if observation == "full" else 0)
        check_env_memory(self.config, obs_dim)
        self.observation_space = Box(0.0, 1.0, (obs_dim,), np.float32)
        self.action_space = Discrete(2)
        self.state_space = Box(0.0, 1.0, (self.phases + 1 + 5 * n,), np.float32)
        self.history: deque = deque(maxlen=RENDER_HISTORY)
        panel = (n,) if self.assess_phases == 1 else (self.assess_phases, n)
        self._no_record = self._flat_record({
            k: np.full(panel if k in PANEL_FIELDS else (n,), -1,
                       dtype=np.int64 if k in INDEX_FIELDS else np.int8)
            for k in RoundRecord.PUBLIC_FIELDS})
        # focal signals of the round's assess phases, (1, k, F), handed to the core at the end
        self._pending_signals = np.zeros((1, self.assess_phases, self.focal_slots.size), np.int8)
        self.phase = 0

    # -- phases ----------------------------------------------------------------------------------
    def reset(self, seed=None) -> None:
        self.game.reset(seed)
        self.phase = 0
        self.last_record = None
        self._record_info = self._no_record
        self.history.clear()
        self.game.begin_round()
        self._pending_actions = None
        self._refresh()

    def resolve(self, decisions: np.ndarray) -> np.ndarray | None:
        """End the current phase with the focal decisions (F,) int8.

        Act phase: returns the focal payoffs of the round (F,). Assess phase j (1 .. k): keeps the
        signals; the last one ends the round and begins the next. Returns ``None``.
        """
        g = self.game
        if self.phase == 0:
            actions, payoffs = g.act(self.focal_slots, decisions[None])
            self._pending_actions = actions[0]
            self.phase = 1
            self._refresh()
            return payoffs[0, self.focal_slots]
        self._pending_signals[0, self.phase - 1] = decisions
        if self.phase < self.assess_phases:  # the round goes on with the next assess phase
            self.phase += 1
            self._refresh()
            return None
        signals = self._pending_signals if self.assess_phases > 1 else self._pending_signals[:, 0]
        record = g.assess(self.focal_slots, signals)
        self.last_record = record.public(0)
        self._record_info = self._flat_record(self.last_record)
        self.history.append(self.last_record)
        self.phase = 0
        g.begin_round()
        self._refresh()
        return None

    @property
    def truncated(self) -> bool:
        return self.game.round >= self.max_rounds

    @property
    def started(self) -> bool:
        """True from the first ``reset`` on (the core has a round under way)."""
        return self.game.noise is not None

    def __setstate__(self, state: dict) -> None:
        """A copied shell: the arrays handed to every agent stay read-only (pickle and deepcopy
        return writeable copies)."""
        self.__dict__.update(state)
        shared = [getattr(self, "info", {}), self._no_record, getattr(self, "_record_info", {}),
                  getattr(self, "last_record", None) or {}, *self.history]
        for values in shared:
            for value in values.values():
                if isinstance(value, np.ndarray):
                    value.flags.writeable = False

    def _refresh(self) -> None:
        """Observations and the info of the phase that has just begun."""
        self.observations = self._observe()
        if not self.record_infos:  # the phase alone: what costs nothing to tensorise
            self.info = {"phase": self.phase}
            return
        rep = self.game.reputation[0].copy()
        rep.flags.writeable = False  # shared by all agents' infos
        self.info = {"phase": self.phase, "round": self.game.round, "reputation": rep,
                     **self._record_info}

    @staticmethod
    def _flat_record(record: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {RECORD_PREFIX + k: v for k, v in record.items()}

    def _observe(self) -> np.ndarray:
        """Observations of the focal agents, (F, D) float32, rows in agent order."""
        g = self.game
        rep = g.reputation[0]
        slots = self.focal_slots
        obs = np.zeros((len(slots), self.observation_space.shape[0]), dtype=np.float32)
        recipients = g.noise.recipients[0]
        if self.phase == 0:
            donors = slots
        else:
            donors = g.observed_donors(self.phase - 1)[0, slots]
            obs[:, 2] = self._pending_actions[donors]
        obs[:, 0] = self.phase > 0  # 1 in every assess phase
        obs[:, 1] = rep[donors]
        obs[:, 3] = rep[recipients[donors]]
        obs[:, 4] = rep[slots]
        if self.observation_mode == "full":
            n = self.num_slots
            obs[:, 5:5 + n] = rep
            obs[:, 5 + n] = donors / (n - 1)
            obs[:, 6 + n] = recipients[donors] / (n - 1)
            obs[:, 7 + n] = slots / (n - 1)
        return obs

    def state(self) -> np.ndarray:
        """The public state of the current phase, (P + 1 + 5 N,) float32 (see STATE_BLOCKS)."""
        g = self.game
        if g.noise is None:
            raise RuntimeError("state() needs a started episode; call reset() first")
        n, p = self.num_slots, self.phases
        state = np.zeros(self.state_space.shape, dtype=np.float32)
        state[self.phase] = 1.0
        state[p] = g.round / self.max_rounds
        blocks = state[p + 1:].reshape(5, n)
        rep = g.reputation[0]
        recipients = g.noise.recipients[0]
        blocks[0] = rep
        blocks[1] = recipients / (n - 1)
        blocks[2] = rep[recipients]
        if self.phase > 0:
            blocks[3] = self._pending_actions
            observers = g.noise.observers[0]
            if observers.ndim == 2:  # (k, N): the panel member of this assess phase
                observers = observers[self.phase - 1]
            blocks[4] = observers / (n - 1)
        return state

    def render(self):
        if self.render_mode is None:
            gymnasium.logger.warn("render() called without a render_mode")
            return None
        rep = self.game.reputation[0]
        if self.render_mode == "rgb_array":
            return render_rgb(self.history, self.focal_slots, rep)
        text = render_ansi(self.history, self.focal_slots, rep, self.slot_labels,
                           self.game.round)
        if self.render_mode == "human":
            print(text)
            return None
        return text


class ShellBacked:
    """What both APIs share: construction from the keywords, spaces, state, record, render."""

    metadata: ClassVar[dict] = METADATA

    def __init__(self, **kwargs):
        EzPickle.__init__(self, **kwargs)
        self.shell = shell = GameShell(**kwargs)
        self.config = shell.config
        self.render_mode = shell.render_mode
        self.observation_mode = shell.observation_mode
        self.max_rounds = shell.max_rounds
        self.max_cycles = self.config.max_cycles
        self.num_slots = shell.num_slots
        self.slot_labels = shell.slot_labels
        self.focal_slots = shell.focal_slots
        self.possible_agents = shell.possible_agents
        self.agent_name_mapping = dict(zip(self.possible_agents, self.focal_slots.tolist(),
                                           strict=True))
        self.state_space = shell.state_space
        # one space object per agent, built once, as PettingZoo's own environments do; some
        # clients read these dicts instead of calling observation_space(agent)
        self.observation_spaces = {a: copy.deepcopy(shell.observation_space)
                                   for a in self.possible_agents}
        self.action_spaces = {a: copy.deepcopy(shell.action_space) for a in self.possible_agents}
        self.agents = []

    @property
    def game(self) -> BatchedGame:
        return self.shell.game

    def observation_space(self, agent):
        return self.observation_spaces[agent]

    def action_space(self, agent):
        return self.action_spaces[agent]

    # -- copies: copy.deepcopy and pickle -------------------------------------------------------
    def __getstate__(self) -> dict:
        """Before the first ``reset`` a copy is a new environment of the same configuration
        (EzPickle: vector-env libraries ship a fresh env to each worker by pickling it, and every
        copy draws its own entropy). From ``reset`` on it carries the whole game: reputations,
        the round's matching and noise, the pending phase, the random generator's state, so the
        copy continues exactly as the original would."""
        if not self.shell.started:
            return EzPickle.__getstate__(self)
        return {**self.__dict__, _EPISODE: True}

    def __setstate__(self, state: dict) -> None:
        if state.pop(_EPISODE, False):
            self.__dict__.update(state)
        else:
            EzPickle.__setstate__(self, state)

    def state(self) -> np.ndarray:
        """The public state of the current phase, (2 + k + 5 N,) float32; see the module doc."""
        return self.shell.state()

    def public_record(self) -> dict[str, np.ndarray] | None:
        """The last completed round's public record: arrays indexed by donor ((N,), or (k, N)
        for ``observers``, ``signals``, ``flags`` with k > 1), or ``None`` before the first round
        ends."""
        return self.shell.last_record

    def render(self):
        return self.shell.render()

    def close(self):
        pass


class parallel_env(ShellBacked, ParallelEnv, EzPickle):
    """Native parallel environment; see the module docstring."""

    def _observations_and_infos(self):
        shell = self.shell
        obs = dict(zip(self.agents, shell.observations, strict=False))
        return obs, {a: shell.info.copy() for a in self.agents}

    def reset(self, seed=None, options=None):
        self.shell.reset(seed)
        self.agents = self.possible_agents[:]
        return self._observations_and_infos()

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
        decisions = np.array([check_action(a, actions[a]) for a in self.agents], dtype=np.int8)
        payoffs = self.shell.resolve(decisions)
        if payoffs is None:
            rewards = dict.fromkeys(self.agents, 0.0)
        else:
            rewards = dict(zip(self.agents, payoffs.tolist(), strict=True))
        truncated = payoffs is None and self.shell.truncated
        zero = dict.fromkeys(self.agents, False)
        truncations = dict.fromkeys(self.agents, truncated)
        obs, infos = self._observations_and_infos()
        if truncated:
            self.agents = []
        return obs, rewards, zero, truncations, infos


class raw_env(ShellBacked, AECEnv, EzPickle):
    """Native AEC environment on the same core; see the module docstring.

    In every phase the live agents move in ``possible_agents`` order; the phase is resolved on
    the last agent's step. Each agent's payoff of the round is its reward on its own step after
    the act phase was resolved (its assess step): libraries that credit ``env.rewards`` right
    after an agent's step (Tianshou, TorchRL's AEC mode) credit every agent its own payoff.
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._index = {a: i for i, a in enumerate(self.possible_agents)}

    def observe(self, agent):
        return self.shell.observations[self._index[agent]]

    def reset(self, seed=None, options=None):
        self.shell.reset(seed)
        self.agents = self.possible_agents[:]
        self.rewards = dict.fromkeys(self.agents, 0.0)
        self._cumulative_rewards = dict.fromkeys(self.agents, 0.0)
        self.terminations = dict.fromkeys(self.agents, False)
        self.truncations = dict.fromkeys(self.agents, False)
        self._new_infos()
        self._decisions = np.zeros(len(self.agents), dtype=np.int8)
        self._owed = np.zeros(len(self.agents))  # payoffs not yet paid out, by agent index
        self._rewarded = None  # the agent whose entry of self.rewards is non-zero
        self._turn = 0
        self._skip_agent_selection = None
        self.agent_selection = self.agents[0]

    def _new_infos(self) -> None:
        info = self.shell.info
        self.infos = {a: info.copy() for a in self.agents}

    def step(self, action):
        agent = self.agent_selection
        if self.terminations[agent] or self.truncations[agent]:
            self._was_dead_step(action)
            return
        decision = check_action(agent, action)
        i = self._index[agent]
        self._decisions[i] = decision
        # this step's rewards: the agent's own unpaid payoff, 0 for everybody else
        if self._rewarded is not None:
            self.rewards[self._rewarded] = 0.0
        reward = float(self._owed[i])
        self._owed[i] = 0.0
        self.rewards[agent] = reward
        self._rewarded = agent
        self._cumulative_rewards[agent] = reward
        self._turn += 1
        if self._turn < len(self.agents):
            self.agent_selection = self.agents[self._turn]
            return
        # the last agent of the phase has moved: resolve it
        self._turn = 0
        payoffs = self.shell.resolve(self._decisions)
        if payoffs is not None:
            self._owed += payoffs
        elif self.shell.truncated:
            self.truncations = dict.fromkeys(self.agents, True)
        self._new_infos()
        self.agent_selection = self.agents[0]


def env(**kwargs):
    """The AEC environment with PettingZoo's order-enforcing wrapper."""
    return wrappers.OrderEnforcingWrapper(raw_env(**kwargs))

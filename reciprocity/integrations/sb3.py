"""Stable-Baselines3 helpers (needs the ``[sb3]`` extra: ``pip install -e ".[sb3]"``).

Two ways to train an SB3 model on a scenario:

* **several focal agents, one shared policy** (parameter sharing): :func:`make_vec_env` turns the
  parallel PettingZoo environment into an SB3 ``VecEnv`` through SuperSuit
  (``pettingzoo_env_to_vec_env_v1`` + ``concat_vec_envs_v1(..., base_class="stable_baselines3")``);
  every focal agent of every copy is one entry of the vector environment;
* **one focal agent**: ``import reciprocity; gymnasium.make("reciprocity/<id>")`` is a plain
  Gymnasium environment that SB3 takes as it is.

Either way the observation is ``[phase, donor_rep, action, recipient_rep, own_rep]`` and a round
is two steps (act, then assess). :func:`policy_table` reads a trained model's output per context
in the library's metrics schema and :func:`evaluate_payoff` measures its payoff per round.

Stable-Baselines3 is imported lazily: importing this module works without it, calling a helper
raises an :class:`ImportError` that names the extra.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..envs import Scenario, make_parallel
from .common import context_observations, context_table

__all__ = ["context_observations", "evaluate_payoff", "make_vec_env", "policy_table"]

_INSTALL_HINT = ('reciprocity.integrations.sb3 needs Stable-Baselines3 and SuperSuit; install the '
                 '[sb3] extra: pip install "reciprocity[sb3]" (from a checkout: '
                 'pip install -e ".[sb3]")')


def _require_sb3():
    """Import and return ``(stable_baselines3, supersuit)`` or fail with an install hint."""
    try:
        import stable_baselines3
        import supersuit
    except ImportError as err:
        raise ImportError(f"{_INSTALL_HINT} ({err})") from err
    return stable_baselines3, supersuit


def _seeded_vec_env_class():
    """A ``VecEnvWrapper`` over SuperSuit's SB3 vector env: seedable, and truncation the SB3 way.

    * **Truncation.** SuperSuit's ``SB3VecEnvWrapper`` (3.9-3.11) reports ``done = terminated
      or truncated`` and drops the difference, so SB3's algorithms treat every time-limit end
      as terminal and never bootstrap there. This wrapper steps SuperSuit's concatenated env
      itself and sets ``infos[i]["TimeLimit.truncated"] = truncated and not terminated`` on
      every step, as SB3's own ``DummyVecEnv`` does; SuperSuit already puts the last
      observation in ``infos[i]["terminal_observation"]``. SB3's on-policy algorithms then add
      ``gamma * V(terminal_observation)`` to the reward of a truncated step (``collect_rollouts``)
      and the off-policy ones keep the step non-terminal in their replay buffer.
    * **Seeding.** ``seed()`` is forwarded to the ``ConcatVecEnv``, which has no ``seed``
      method, so ``PPO(..., seed=s)`` and ``venv.seed(s)`` raise ``AttributeError``. This
      wrapper keeps the seed and passes it to the next reset, as SB3's own vector environments
      do: copy ``c`` gets ``seed + c``, also with worker processes (``num_cpus > 1``, where
      SuperSuit would give worker ``w`` the seed ``seed + w`` and neighbouring workers' copies
      the same seeds), whose reset infos are unpacked to one dict per entry too.
    * ``get_attr("render_mode")``, which SuperSuit's wrapper forwards to the ``ConcatVecEnv``
      (no ``get_attr``), so that SB3 warns that ``render_mode`` is not defined.
    """
    from stable_baselines3.common.vec_env import VecEnvWrapper

    class SeededVecEnv(VecEnvWrapper):
        def __init__(self, venv, agents_per_copy: int):
            super().__init__(venv)
            self._next_seed: int | None = None
            self._per_copy = agents_per_copy  # entries of one env copy: its focal agents

        @property
        def _concat(self):
            return self.venv.venv  # SuperSuit's ConcatVecEnv or ProcConcatVec

        def seed(self, seed: int | None = None):
            self._next_seed = seed
            return [None if seed is None else seed + i // self._per_copy
                    for i in range(self.num_envs)]

        def reset(self):
            seed, self._next_seed = self._next_seed, None
            obs, infos = self._reset_copies(seed)
            self.venv.reset_infos = self.reset_infos = infos
            return obs

        def _reset_copies(self, seed):
            concat = self._concat
            if not hasattr(concat, "pipes"):  # one process: copy c gets seed + c
                return concat.reset(seed=seed)
            # worker processes (ProcConcatVec): send each worker the seed of its first copy
            import copy

            from supersuit.vector.multiproc_vec import decompress_info, numpy_deepcopy
            for pipe, start in zip(concat.pipes, concat.idx_starts, strict=False):
                first = None if seed is None else seed + start // self._per_copy
                pipe.send(("reset", (first, None)))
            infos = decompress_info(self.num_envs, concat.idx_starts, concat._receive_info())
            return numpy_deepcopy(concat.observations_buffers), copy.deepcopy(infos)

        def step_wait(self):
            obs, rewards, terminations, truncations, infos = self._concat.step_wait()
            dones = np.logical_or(terminations, truncations)
            for info, terminated, truncated in zip(infos, terminations, truncations,
                                                   strict=True):
                info["TimeLimit.truncated"] = bool(truncated and not terminated)
            return obs, rewards, dones, infos

        def get_attr(self, attr_name, indices=None):
            if attr_name == "render_mode":
                return [self.venv.render_mode] * len(self._get_indices(indices))
            return self.venv.get_attr(attr_name, indices)

    return SeededVecEnv


def make_vec_env(scenario: str | Path | Scenario, num_vec_envs: int = 4, *, num_cpus: int = 0,
                 monitor: bool = True, **overrides):
    """An SB3 ``VecEnv`` of a scenario's parallel environment, one policy for all focal agents.

    Every focal agent of each of the ``num_vec_envs`` copies is one entry, so
    ``venv.num_envs == num_vec_envs * number of focal agents``; an SB3 model trained on it shares
    its parameters across the focal agents. ``overrides`` are constructor keywords (e.g.
    ``max_rounds=50``). ``num_cpus > 0`` steps the copies in that many worker processes.
    With ``monitor`` (default) the result is wrapped in SB3's ``VecMonitor``, so that episode
    returns are logged (``rollout/ep_rew_mean``; divide by ``max_rounds`` for the payoff per
    round) and kept in ``model.ep_info_buffer``.

    Seeding works the SB3 way: ``PPO(..., seed=s)`` or ``venv.seed(s)`` seeds the next reset.
    Episodes reset automatically. Every episode ends by the time limit, and the ends are marked
    the SB3 way: ``infos[i]["TimeLimit.truncated"] = True`` with the last observation in
    ``infos[i]["terminal_observation"]``, so that SB3 bootstraps from the value of the last
    observation instead of treating the end as terminal (SuperSuit alone reports a plain done).
    """
    _require_sb3()
    import supersuit as ss
    from stable_baselines3.common.vec_env import VecMonitor

    if num_vec_envs < 1:
        raise ValueError(f"num_vec_envs must be >= 1, got {num_vec_envs}")
    env = make_parallel(scenario, **overrides)
    venv = ss.pettingzoo_env_to_vec_env_v1(env)
    venv = ss.concat_vec_envs_v1(venv, num_vec_envs, num_cpus=num_cpus,
                                 base_class="stable_baselines3")
    venv = _seeded_vec_env_class()(venv, agents_per_copy=len(env.possible_agents))
    return VecMonitor(venv) if monitor else venv


def _prob_one(model, obs: np.ndarray) -> np.ndarray:
    """P(output = 1) per row of ``obs``; for models without a distribution (e.g. DQN) the
    greedy output."""
    import torch

    policy = model.policy
    if hasattr(policy, "get_distribution"):
        with torch.no_grad():
            obs_t, _ = policy.obs_to_tensor(obs)
            probs = policy.get_distribution(obs_t).distribution.probs
        return probs[:, 1].cpu().numpy().astype(np.float64)
    actions, _ = model.predict(obs, deterministic=True)
    return np.asarray(actions, dtype=np.float64).reshape(-1)


def policy_table(model, *, own_reputation: int | None = None,
                 greedy: bool = False) -> dict[str, dict[str, float]]:
    """A trained SB3 model's output per context, in the library's metrics schema.

    Returns ``{"action": {"GG", "GB", "BG", "BB"}, "signal": {"GGC", ..., "BBD"}}`` (the
    ``"policy"`` entry of ``metrics.json``): the probability of cooperating as a donor of
    reputation x facing a recipient of reputation y, and of signalling Good about a donor x who
    played a against a recipient y. Signal probabilities average over the observer's own
    reputation (``own_reputation=None``) or use the given one (0 or 1).

    ``greedy=True`` gives the greedy output instead (1.0 where the probability is above 0.5).
    Models whose policy has no action distribution (e.g. DQN) always give the greedy output.
    Only the local observation (``observation="local"``, shape (5,)) is supported.
    """
    shape = getattr(model.observation_space, "shape", None)
    if shape != (5,):
        raise ValueError(f"policy_table needs a model trained on the local observation, shape "
                         f"(5,); got observation space {model.observation_space}")
    return context_table(lambda obs: _prob_one(model, obs), own_reputation=own_reputation,
                         greedy=greedy)


def evaluate_payoff(model, scenario: str | Path | Scenario, *, episodes: int = 4,
                    seed: int | None = 0, deterministic: bool = False,
                    **overrides: Any) -> dict[str, Any]:
    """Play ``episodes`` episodes of a scenario with every focal agent following ``model``.

    Works for models from either route (SuperSuit or Gymnasium): all focal agents act on their
    own observation with the one model (stochastically unless ``deterministic``). Episode ``k``
    is seeded with ``seed + k`` (unseeded if ``seed`` is None). Returns ``{"payoff": mean
    payoff per round over agents and episodes, "per_agent": {agent: payoff per round},
    "rounds": rounds per episode, "episodes": episodes}``.
    """
    _require_sb3()
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    env = make_parallel(scenario, **overrides)
    totals = dict.fromkeys(env.possible_agents, 0.0)
    for k in range(episodes):
        observations, _ = env.reset(seed=None if seed is None else seed + k)
        while env.agents:
            agents = list(observations)
            batch = np.stack([observations[a] for a in agents])
            actions, _ = model.predict(batch, deterministic=deterministic)
            observations, rewards, _, _, _ = env.step(
                {a: int(u) for a, u in zip(agents, np.asarray(actions).reshape(-1), strict=True)})
            for a, r in rewards.items():
                totals[a] += r
    env.close()
    rounds = env.max_rounds
    per_agent = {a: t / (episodes * rounds) for a, t in totals.items()}
    return {"payoff": float(np.mean(list(per_agent.values()))), "per_agent": per_agent,
            "rounds": rounds, "episodes": episodes}

"""With the default institution (no audit, one observer per interaction) trajectories are exactly
those of the plain game of spec §1: same seed, same draws, same reputations, actions and signals.

The expected fingerprints below were computed with the library as it was before the institutions
of spec §7 existed (the plain game), by running this file's ``fingerprints()``; the learners'
entries on the plain game with per-seed random streams (a seed's run depends on that seed
alone), which changed how several seeds share their draws. They cover the
batched core (table-driven rounds and rounds with outside focal decisions, small and large
batches, so both derangement samplers), ``simulate``, both PettingZoo APIs, and the learners'
data path (one collect + update of each algorithm; policies compared to 1e-6). RG's entries were
recomputed when its objective moved to the fused unroll (``agents/model.py``: the same value and
gradient as the round-by-round model, summed in another order, so float32 rounding moved two
entries of many-learners-v0 by 1e-6); the game's fingerprints did not change.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from reciprocity.agents.rollout import collect
from reciprocity.envs import BatchedGame, get_scenario, make, make_parallel, simulate
from reciprocity.envs.config import strategy_tables
from reciprocity.envs.vector import VectorGame
from reciprocity.learners import get_algorithm

SCENARIOS = ["L6-v0", "discriminators-vs-defectors-v0", "many-learners-v0", "L3-slow-v0",
             "image-scoring-v0"]
#: public fields of the plain game; later fields of the record are not part of the fingerprint
PLAIN_FIELDS = ("recipients", "observers", "reputation_before", "actions", "signals",
                "reputation_after", "intents")


class Digest:
    """sha256 over integer arrays (as int64, so that a dtype change does not count)."""

    def __init__(self):
        self.h = hashlib.sha256()

    def add(self, *arrays):
        for a in arrays:
            self.h.update(np.ascontiguousarray(np.asarray(a), dtype=np.int64).tobytes())

    def hexdigest(self) -> str:
        return self.h.hexdigest()[:16]


def core_fingerprint(scenario: str, seed: int, batch: int, focal_from_outside: bool) -> str:
    """30 rounds of the core; focal rows are stochastic tables, or outside decisions."""
    config = get_scenario(scenario).env_config
    action, assess = strategy_tables(config.strategies)
    focal = config.focal_slots
    rng = np.random.default_rng(100 + seed)
    action[focal] = rng.uniform(0, 1, (focal.size, 4))
    assess[focal] = rng.uniform(0, 1, (focal.size, 8))
    game = BatchedGame(config.params, action, assess, batch=batch, seed=seed)
    digest = Digest()
    for _ in range(30):
        if focal_from_outside:
            game.begin_round()
            ctx = game.action_contexts()[:, focal]
            game.act(focal, (ctx % 2).astype(np.int8))
            seen = np.take_along_axis(game.signal_contexts(), game.observed_donors()[:, focal],
                                      axis=1)
            record = game.assess(focal, rng.integers(0, 2, seen.shape).astype(np.int8))
        else:
            record = game.play_round()
        digest.add(*(getattr(record, k) for k in PLAIN_FIELDS))
    return digest.hexdigest()


def simulate_fingerprint(seed: int) -> str:
    digest = Digest()
    for population, init in (([{"count": 6, "slot": "L6"}, {"count": 4, "slot": "alld+L6"}],
                              "good"),
                             (["L1", "L3", "disc+image_scoring", "allc+L8", "L6"] * 3, 0.5)):
        result = simulate(population, 40, benefit=3, cost=1, execution_error=0.05,
                          assessment_error=0.03, update_probability=0.6, num_envs=7, seed=seed,
                          initial_reputation=init)
        digest.add(result.final_reputation, np.round(result.good_fraction * 7 * 15),
                   np.round(result.cooperation_rate * 7 * 15))
    return digest.hexdigest()


def parallel_fingerprint(scenario: str, seed: int) -> str:
    env = make_parallel(scenario, max_rounds=15)
    observations, _ = env.reset(seed=seed)
    rng = np.random.default_rng(seed)
    digest = Digest()
    while env.agents:
        actions = {a: int(rng.integers(0, 2)) for a in env.agents}
        observations, rewards, _, _, _ = env.step(actions)
        digest.add(*(observations[a] for a in sorted(observations)))
        digest.add(*(np.round(4 * rewards[a]) for a in sorted(rewards)))
        record = env.public_record()
        if record is not None:
            digest.add(*(record[k] for k in PLAIN_FIELDS if k in record))
    return digest.hexdigest()


def aec_fingerprint(scenario: str, seed: int) -> str:
    """Observations at every turn and every agent's episode return (the AEC API may pay a
    round's payoff at a later turn of the same agent; what each agent earns is the same)."""
    env = make(scenario, max_rounds=10)
    env.reset(seed=seed)
    rng = np.random.default_rng(seed)
    digest = Digest()
    returns = dict.fromkeys(env.possible_agents, 0.0)
    for agent in env.agent_iter():
        obs, reward, termination, truncation, _ = env.last()
        returns[agent] += reward
        digest.add(obs)
        env.step(None if termination or truncation else int(rng.integers(0, 2)))
    digest.add(*(np.round(4 * returns[a]) for a in env.possible_agents))
    return digest.hexdigest()


def learner_policies(algo: str, scenario: str) -> np.ndarray:
    """Action and signal tables (S, F, 12) after two collect + update cycles."""
    torch.manual_seed(0)
    config = get_scenario(scenario).env_config
    algorithm = get_algorithm(algo)
    learner_cls, config_cls = algorithm.learner, algorithm.config
    # RG's model with the scenario's numbers (the fingerprints predate its learned world model,
    # whose priors would move the first steps)
    oracle = {"world_model": "oracle"} if "world_model" in config_cls.__dataclass_fields__ else {}
    learner = learner_cls(config_cls(rounds_per_update=20, **oracle), config,
                          (2, config.focal_slots.size), seed=0)
    game = VectorGame(config, 2 * 4, seed=0)
    game.reset()
    rng = np.random.default_rng(0)
    for _ in range(2):
        learner.update(collect(game, learner.policy, 20, rng, 2))
    return torch.cat(learner.policy.tables(), dim=-1).numpy()


def fingerprints() -> dict:
    """Everything the expected values below hold (run on the plain game to regenerate)."""
    torch.set_num_threads(1)
    out = {"core": {}, "simulate": {}, "parallel": {}, "aec": {}, "learners": {}}
    for scenario in SCENARIOS:
        for seed in (0, 1, 2):
            for batch in (3, 600):
                for outside in (False, True):
                    key = f"{scenario}/{seed}/{batch}/{int(outside)}"
                    out["core"][key] = core_fingerprint(scenario, seed, batch, outside)
            out["parallel"][f"{scenario}/{seed}"] = parallel_fingerprint(scenario, seed)
        out["aec"][scenario] = aec_fingerprint(scenario, 5)
    for seed in (0, 1, 2):
        out["simulate"][str(seed)] = simulate_fingerprint(seed)
    for algo in ("rg", "ppo", "reinforce"):
        for scenario in ("L6-v0", "many-learners-v0"):
            out["learners"][f"{algo}/{scenario}"] = \
                np.round(learner_policies(algo, scenario), 6).tolist()
    return out


if __name__ == "__main__":
    print(json.dumps(fingerprints(), indent=1))


EXPECTED = json.loads((Path(__file__).parent / "default_trajectories.json").read_text())


@pytest.mark.parametrize("key", sorted(EXPECTED["core"]))
def test_core_trajectories_are_the_plain_games(key):
    scenario, seed, batch, outside = key.split("/")
    assert core_fingerprint(scenario, int(seed), int(batch), bool(int(outside))) == \
        EXPECTED["core"][key]


@pytest.mark.parametrize("seed", sorted(EXPECTED["simulate"]))
def test_simulate_is_the_plain_game(seed):
    assert simulate_fingerprint(int(seed)) == EXPECTED["simulate"][seed]


@pytest.mark.parametrize("key", sorted(EXPECTED["parallel"]))
def test_parallel_env_is_the_plain_game(key):
    scenario, seed = key.split("/")
    assert parallel_fingerprint(scenario, int(seed)) == EXPECTED["parallel"][key]


@pytest.mark.parametrize("scenario", sorted(EXPECTED["aec"]))
def test_aec_env_is_the_plain_game(scenario):
    assert aec_fingerprint(scenario, 5) == EXPECTED["aec"][scenario]


@pytest.mark.parametrize("key", sorted(EXPECTED["learners"]))
def test_learners_train_as_in_the_plain_game(key):
    torch.set_num_threads(1)
    algo, scenario = key.split("/")
    np.testing.assert_allclose(learner_policies(algo, scenario), EXPECTED["learners"][key],
                               atol=1e-6, rtol=0)

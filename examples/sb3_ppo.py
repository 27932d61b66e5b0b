"""Train Stable-Baselines3 PPO on reciprocity scenarios, in the two supported ways.

(a) several focal agents sharing one policy (parameter sharing): the parallel PettingZoo
    environment of ``many-learners-v0`` through SuperSuit
    (``reciprocity.integrations.sb3.make_vec_env``);
(b) one focal agent: ``import reciprocity; gymnasium.make("reciprocity/L6-v0")``.

For each, print the learned policy per context (probability of cooperating / of signalling
Good) and the payoff per round, during training and in evaluation episodes. Needs the ``[sb3]``
extra (``pip install -e ".[sb3]"``). The defaults finish in well under a minute on one CPU
core; raise ``--timesteps`` for a real run, e.g.::

    python examples/sb3_ppo.py --timesteps 200000
"""

from __future__ import annotations

import argparse
import time

import gymnasium
import numpy as np
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.env_util import make_vec_env as sb3_make_vec_env

import reciprocity  # noqa: F401  (registers the reciprocity/ Gymnasium namespace)
from reciprocity.envs import get_scenario
from reciprocity.integrations.sb3 import evaluate_payoff, make_vec_env, policy_table


def show_policy(model) -> None:
    """Print the model's probability of output 1 (cooperate / Good) per context."""
    table = policy_table(model)
    print("  action P(C):", "  ".join(f"{k} {v:.2f}" for k, v in table["action"].items()))
    print("  signal P(G):", "  ".join(f"{k} {v:.2f}" for k, v in table["signal"].items()))


def show_payoff(model, scenario: str, max_rounds: int, seed: int) -> None:
    """Payoff per round while training (last episodes) and in evaluation episodes."""
    returns = [info["r"] for info in model.ep_info_buffer]
    if returns:  # ep_info_buffer holds the latest episode returns (sums over 2 * max_rounds steps)
        print(f"  training: mean reward per round {np.mean(returns) / max_rounds:.3f} "
              f"(last {len(returns)} agent-episodes)")
    result = evaluate_payoff(model, scenario, episodes=4, seed=seed + 1000,
                             max_rounds=max_rounds)
    s = get_scenario(scenario)
    print(f"  evaluation: mean reward per round {result['payoff']:.3f} "
          f"(full cooperation b - c = {s.benefit - s.cost:g})")


def train_shared(args) -> None:
    """(a) many-learners-v0: 7 focal agents, one shared PPO policy, through SuperSuit."""
    venv = make_vec_env(args.multi_scenario, num_vec_envs=args.num_vec_envs,
                        max_rounds=args.max_rounds)
    print(f"(a) {args.multi_scenario}: SuperSuit vector env with {venv.num_envs} entries "
          f"({args.num_vec_envs} copies x focal agents), one shared policy")
    model = PPO("MlpPolicy", venv, n_steps=args.n_steps,
                batch_size=args.n_steps * venv.num_envs // 4,
                n_epochs=4, learning_rate=args.learning_rate, gamma=args.gamma, seed=args.seed,
                device="cpu", verbose=0)
    start = time.perf_counter()
    model.learn(total_timesteps=args.timesteps)
    print(f"  {model.num_timesteps} agent-steps in {time.perf_counter() - start:.1f} s")
    show_policy(model)
    show_payoff(model, args.multi_scenario, args.max_rounds, args.seed)
    venv.close()


def train_single(args) -> None:
    """(b) a single-focal scenario as a plain Gymnasium environment."""
    env_id = f"reciprocity/{args.single_scenario}"
    # PPO("MlpPolicy", gymnasium.make(env_id)) works as it is; several copies are faster.
    env = sb3_make_vec_env(lambda: gymnasium.make(env_id, max_rounds=args.max_rounds),
                           n_envs=args.single_envs, seed=args.seed)
    print(f"(b) gymnasium.make({env_id!r}): one focal agent, {args.single_envs} copies")
    model = PPO("MlpPolicy", env, n_steps=args.n_steps,
                batch_size=args.n_steps * env.num_envs // 4,
                n_epochs=4, learning_rate=args.learning_rate, gamma=args.gamma, seed=args.seed,
                device="cpu", verbose=0)
    start = time.perf_counter()
    model.learn(total_timesteps=args.timesteps)
    print(f"  {model.num_timesteps} steps in {time.perf_counter() - start:.1f} s")
    show_policy(model)
    show_payoff(model, args.single_scenario, args.max_rounds, args.seed)
    env.close()


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--timesteps", type=int, default=20_000,
                   help="environment steps per run (agent-steps for the shared policy)")
    p.add_argument("--multi-scenario", default="many-learners-v0")
    p.add_argument("--single-scenario", default="L6-v0")
    p.add_argument("--num-vec-envs", type=int, default=4, help="copies of the parallel env")
    p.add_argument("--single-envs", type=int, default=8,
                   help="copies of the Gymnasium env in (b)")
    p.add_argument("--max-rounds", type=int, default=50, help="rounds per episode")
    p.add_argument("--n-steps", type=int, default=64, help="PPO rollout length per env entry")
    p.add_argument("--learning-rate", type=float, default=1e-3)
    p.add_argument("--gamma", type=float, default=0.99)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--only", choices=["shared", "single"], help="run one of the two parts")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.only in (None, "shared"):
        train_shared(args)
    if args.only in (None, "single"):
        train_single(args)


if __name__ == "__main__":
    main()

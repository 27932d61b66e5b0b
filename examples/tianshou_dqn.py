"""Train one Tianshou DQN per focal agent, as in Tianshou's own PettingZoo examples.

The scenario's (native) AEC environment goes through Tianshou's ``PettingZooEnv``; every focal
agent has its own DQN in Tianshou's ``MultiAgentOffPolicyAlgorithm``, trained with Tianshou's
collectors and off-policy trainer (``reciprocity.integrations.tianshou.train_dqn``). Each agent
is credited its own payoff: the environment sets it in ``env.rewards`` right after that agent's
own assess step. Runs on the flagship and on ``many-learners-v0`` by default and prints every
agent's return per round in greedy evaluation episodes and the first agent's greedy policy.
Needs the ``[tianshou]`` extra (``pip install -e ".[tianshou]"``). The defaults took 80 s (flagship)
and 135 s (many-learners) on a busy 2-core machine::

    python examples/tianshou_dqn.py
    python examples/tianshou_dqn.py --scenarios many-learners-v0 --epochs 20
"""

from __future__ import annotations

import argparse
import logging
import time

import torch

from reciprocity.envs import get_scenario
from reciprocity.integrations.tianshou import DqnConfig, policy_table, train_dqn

SCENARIOS = ["discriminators-vs-defectors-v0", "many-learners-v0"]


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenarios", nargs="+", default=SCENARIOS)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--epoch-steps", type=int, default=2000,
                        help="agent moves collected per epoch (all agents together)")
    parser.add_argument("--max-rounds", type=int, default=25, help="rounds per episode")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (the networks are tiny: 1 is fastest)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    logging.getLogger("tianshou").setLevel(logging.WARNING)  # per-epoch statistics
    config = DqnConfig(epochs=args.epochs, epoch_steps=args.epoch_steps, seed=args.seed)
    results = {}
    for scenario in args.scenarios:
        s = get_scenario(scenario)
        print(f"{scenario}: {s.num_focal} DQN learner(s), full cooperation b - c = "
              f"{s.benefit - s.cost:g} per round")
        start = time.perf_counter()
        out = train_dqn(scenario, config, max_rounds=args.max_rounds)
        payoffs = {a: r / args.max_rounds for a, r in out["test_returns"].items()}
        print("  evaluation payoff per round:",
              "  ".join(f"{a} {p:.2f}" for a, p in payoffs.items()))
        table = policy_table(out["algorithm"], out["agents"][0])
        print(f"  {out['agents'][0]} greedy action:",
              "  ".join(f"{k} {'C' if v else 'D'}" for k, v in table["action"].items()))
        print(f"  {out['agents'][0]} greedy signal:",
              "  ".join(f"{k} {'G' if v else 'B'}" for k, v in table["signal"].items()))
        print(f"  {time.perf_counter() - start:.1f} s")
        results[scenario] = {"payoff": payoffs, "policy": table}
    return results


if __name__ == "__main__":
    main()

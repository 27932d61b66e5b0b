"""Train RLlib PPO on a reciprocity scenario: the path for users who outgrow one machine.

Every focal agent of the scenario is an RLlib agent with its own policy (or one shared policy
with ``--shared-policy``); the background agents stay scripted inside the environment. RLlib's
new API stack samples the PettingZoo parallel environment through
``ray.rllib.env.wrappers.pettingzoo_env.ParallelPettingZooEnv``
(``reciprocity.integrations.rllib``). Prints the episode return per iteration and the learned
policy of the first agent. Needs the ``[ray]`` extra (``pip install -e ".[ray]"``; Ray pins
gymnasium to 1.2.x, so use a separate virtual environment).

The defaults (2 iterations, a local Ray instance on 2 CPUs) finish in well under a minute::

    python examples/rllib_ppo.py
    python examples/rllib_ppo.py --scenario discriminators-vs-defectors-v0 --iterations 50

On a cluster, start Ray on the nodes (``ray start --head`` / ``ray start --address ...``), then
join it with ``ray.init(address="auto")`` — here ``--address auto`` — and scale sampling out
with ``--env-runners N`` (each env runner is a Ray actor on some node)::

    python examples/rllib_ppo.py --address auto --env-runners 16 --iterations 200
"""

from __future__ import annotations

import argparse
import math
import time

import ray

from reciprocity.envs import get_scenario
from reciprocity.integrations.rllib import policy_table, ppo_config


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--scenario", default="many-learners-v0", help="scenario id or file")
    p.add_argument("--iterations", type=int, default=2, help="training iterations (default 2)")
    p.add_argument("--max-rounds", type=int, default=20, help="rounds per episode (default 20)")
    p.add_argument("--shared-policy", action="store_true",
                   help="one policy for all focal agents (default: one per agent)")
    p.add_argument("--train-batch-size", type=int, default=400,
                   help="environment steps per iteration (2 steps per round; default 400)")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--env-runners", type=int, default=0,
                   help="sampling actors (default 0: sample in this process)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--address", default=None,
                   help='Ray cluster to join, e.g. "auto" (default: start a local instance)')
    p.add_argument("--num-cpus", type=int, default=2, help="CPUs of a local Ray instance")
    return p.parse_args(argv)


def main(argv=None) -> list[dict]:
    """Train and print progress; returns RLlib's result dict of every iteration."""
    args = parse_args(argv)
    scenario = get_scenario(args.scenario)
    started = not ray.is_initialized()
    if started:
        if args.address:
            ray.init(address=args.address)
        else:
            ray.init(num_cpus=args.num_cpus, include_dashboard=False, log_to_driver=False)
    config = ppo_config(scenario, shared_policy=args.shared_policy, max_rounds=args.max_rounds,
                        train_batch_size_per_learner=args.train_batch_size,
                        minibatch_size=max(1, args.train_batch_size // 4), lr=args.lr,
                        num_env_runners=args.env_runners, seed=args.seed)
    num_agents = scenario.num_focal
    print(f"{scenario.id}: {num_agents} focal agent(s), "
          f"{'one shared policy' if args.shared_policy else 'one policy per agent'}, "
          f"{args.max_rounds} rounds per episode; full cooperation pays b - c = "
          f"{scenario.benefit - scenario.cost:g} per round")
    algo = config.build_algo()
    results = []
    try:
        for it in range(1, args.iterations + 1):
            start = time.perf_counter()
            result = algo.train()
            results.append(result)
            ret = float(result["env_runners"].get("episode_return_mean", math.nan))
            # RLlib's episode return sums the rewards of all agents over the episode
            per_round = ret / num_agents / args.max_rounds
            print(f"iteration {it}: episode return mean {ret:.3f} (all agents), "
                  f"{per_round:.3f} per agent per round  [{time.perf_counter() - start:.1f} s]")
        module_id = "shared" if args.shared_policy else sorted(
            config.policies, key=lambda a: int(a.rsplit("_", 1)[1]))[0]
        table = policy_table(algo, module_id)
        print(f"policy {module_id}:")
        print("  action P(C):", "  ".join(f"{k} {v:.2f}" for k, v in table["action"].items()))
        print("  signal P(G):", "  ".join(f"{k} {v:.2f}" for k, v in table["signal"].items()))
    finally:
        algo.stop()
        if started:
            ray.shutdown()
    return results


if __name__ == "__main__":
    main()

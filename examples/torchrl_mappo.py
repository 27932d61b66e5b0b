"""Train MAPPO with TorchRL: decentralised policies, a critic on the global state.

The scenario's parallel environment goes through TorchRL's ``PettingZooWrapper``
(``return_state=True``); the policy acts on each focal agent's observation, the centralised
critic sees ``state()`` (every reputation, the round's matching, the phase). The loop is TorchRL's
collector, GAE and ``ClipPPOLoss`` (``reciprocity.integrations.torchrl.train_mappo``). Runs on
the flagship and on ``many-learners-v0`` by default and prints, per iteration, the payoff per
round of the collected batch, then the learned policy per context. Needs the ``[torchrl]`` extra
(``pip install -e ".[torchrl]"``). The defaults take about 20 s per scenario on one core::

    python examples/torchrl_mappo.py
    python examples/torchrl_mappo.py --scenarios many-learners-v0 --iterations 50
"""

from __future__ import annotations

import argparse
import time

import torch

from reciprocity.envs import get_scenario
from reciprocity.integrations.torchrl import MappoConfig, policy_table, train_mappo

SCENARIOS = ["discriminators-vs-defectors-v0", "many-learners-v0"]


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenarios", nargs="+", default=SCENARIOS)
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--frames-per-batch", type=int, default=400,
                        help="parallel steps per iteration (2 per round)")
    parser.add_argument("--max-rounds", type=int, default=50, help="rounds per episode")
    parser.add_argument("--ippo", action="store_true",
                        help="critic on each agent's own observation instead of the state")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (the networks are tiny: 1 is fastest)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    config = MappoConfig(iterations=args.iterations, frames_per_batch=args.frames_per_batch,
                         centralised_critic=not args.ippo, seed=args.seed)
    results = {}
    for scenario in args.scenarios:
        s = get_scenario(scenario)
        print(f"{scenario}: {s.num_focal} focal agent(s), full cooperation b - c = "
              f"{s.benefit - s.cost:g} per round")
        start = time.perf_counter()
        out = train_mappo(scenario, config, max_rounds=args.max_rounds)
        for h in out["history"]:
            print(f"  iteration {h['iteration']:3d}  frames {h['frames']:6d}  payoff per round "
                  f"{h['payoff']:6.3f}  critic loss {h['loss_critic']:.3f}")
        table = policy_table(out["policy"])
        print("  action P(C):", "  ".join(f"{k} {v:.2f}" for k, v in table["action"].items()))
        print("  signal P(G):", "  ".join(f"{k} {v:.2f}" for k, v in table["signal"].items()))
        print(f"  {time.perf_counter() - start:.1f} s")
        results[scenario] = {"history": out["history"], "policy": table}
    return results


if __name__ == "__main__":
    main()

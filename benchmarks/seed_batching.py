"""Seed batching: S seeds trained together in one call vs one call per seed.

    python benchmarks/seed_batching.py                      # --seeds 5 --rounds 200 --repeats 3
    python benchmarks/seed_batching.py --seeds 3 --rounds 100 --repeats 5

For RG, PPO and REINFORCE on L6-v0 (one learner per seed) and many-learners-v0 (seven), it times
``train()`` with seeds 0..S-1 in one call (batched: one game of S x 16 games, one learner object)
and S single-seed calls (unbatched: the anchor, timed next to it in the same process), and
prints batched / unbatched. Each seed's streams are its own (so that a seed's numbers do not
depend on the others), which costs S small draws per round instead of one larger one; the ratio
shows what batching still saves. Target: batched / unbatched < 1 for every row.

The script runs the measurement twice, in child processes: with torch's vectorised CPU kernels
(this machine's default) and with the portable kernels that the ``reciprocity`` command selects
(``ATEN_CPU_CAPABILITY=default``, which makes batched seeds bit-for-bit equal to single ones). It
also prints, per row, batched seconds with portable kernels / with vectorised kernels (the two
children alternate, ``--repeats`` times each; medians). No checkpoints or files are written.
Prints tables and a final JSON line; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

from reciprocity.learners import BUILTIN

ALGOS = tuple(BUILTIN)
SCENARIOS = ("L6-v0", "many-learners-v0")


def measure(seeds: int, rounds: int) -> dict:
    """One repeat in this process: {scenario/algo: (batched s, unbatched s)}."""
    import torch

    from reciprocity.train import TrainConfig, train

    torch.set_num_threads(1)

    def run(scenario: str, algo: str, seed_list) -> float:
        config = TrainConfig(scenario, algo=algo, seeds=tuple(seed_list), rounds=rounds,
                             eval_envs=16, save_checkpoint=False, tensorboard=False)
        start = time.perf_counter()
        train(config, progress=False)
        return time.perf_counter() - start

    out = {}
    for scenario in SCENARIOS:
        for algo in ALGOS:
            run(scenario, algo, [0])  # warm-up (imports, first allocations)
            batched = run(scenario, algo, range(seeds))
            unbatched = sum(run(scenario, algo, [s]) for s in range(seeds))
            out[f"{scenario}/{algo}"] = (batched, unbatched)
    return out


def child(capability: str | None, seeds: int, rounds: int) -> dict:
    env = dict(os.environ)
    env.pop("ATEN_CPU_CAPABILITY", None)
    if capability is not None:
        env["ATEN_CPU_CAPABILITY"] = capability
    done = subprocess.run([sys.executable, __file__, "--child", "--seeds", str(seeds),
                           "--rounds", str(rounds)], env=env, check=True, text=True,
                          capture_output=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=5, help="S (default 5)")
    parser.add_argument("--rounds", type=int, default=200, help="rounds per game (default 200)")
    parser.add_argument("--repeats", type=int, default=3, help="repeats per kernel kind")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.seeds, args.rounds)))
        return
    runs = {"vectorised": [], "portable": []}
    for _ in range(args.repeats):  # alternate, so that both see the same machine load
        runs["vectorised"].append(child(None, args.seeds, args.rounds))
        runs["portable"].append(child("default", args.seeds, args.rounds))
    summary = {}
    print(f"{args.seeds} seeds x 16 games x {args.rounds} rounds; medians over "
          f"{args.repeats} repeats")
    print(f"{'scenario/algo':>28s} {'kernels':>10s} {'batched s':>10s} {'unbatched s':>12s} "
          f"{'batched/unbatched':>18s}")
    for key in runs["vectorised"][0]:
        row = {}
        for kind, repeats in runs.items():
            ratios = [r[key][0] / r[key][1] for r in repeats]
            batched = statistics.median(r[key][0] for r in repeats)
            unbatched = statistics.median(r[key][1] for r in repeats)
            row[kind] = {"batched_seconds": batched, "unbatched_seconds": unbatched,
                         "ratio": statistics.median(ratios),
                         "ratio_range": [min(ratios), max(ratios)]}
            print(f"{key:>28s} {kind:>10s} {batched:10.2f} {unbatched:12.2f} "
                  f"{row[kind]['ratio']:10.2f} [{min(ratios):.2f}-{max(ratios):.2f}]")
        row["portable_over_vectorised_batched"] = statistics.median(
            p[key][0] / v[key][0] for p, v in zip(runs["portable"], runs["vectorised"],
                                                   strict=True))
        print(f"{'':>28s} portable / vectorised (batched): "
              f"{row['portable_over_vectorised_batched']:.2f}")
        summary[key] = row
    print(json.dumps({"benchmark": "seed_batching", "seeds": args.seeds, "rounds": args.rounds,
                      "rows": summary}))


if __name__ == "__main__":
    main()

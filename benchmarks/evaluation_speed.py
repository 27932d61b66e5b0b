"""Evaluation of learners' tables on the many-learner scenarios: first and repeated evaluations.

    python benchmarks/evaluation_speed.py                    # --seeds 5 --eval-envs 256
    python benchmarks/evaluation_speed.py --repeats 3

Every study evaluates each cell's policies by the protocol of ``reciprocity.evaluation``: the
same games (common random numbers) for every policy of a scenario, a burn-in, then the long-run
window. Under the majority of three observers the burn-in is 2,101 rounds and each round draws
observer panels by exact rejection sampling, which dominates the round. The panels are
remembered by generator state (``reciprocity.envs.core.random_observer_panels``), so that a
second evaluation of the same scenario in the same process replays them.

For many-learners-v0 (the anchor: one observer, measured in the same run), many-learners-audit-v0
and many-learners-majority-v0 it times ``evaluate_tables`` of S random table sets (the seeds of a
cell), first call and then ``--repeats`` more (median), in a fresh child process per scenario
(nothing remembered from another scenario; burn-ins are computed before the clock starts), and
prints seconds and the ratio to the anchor's. Prints a table and a final JSON line; asserts
nothing.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

SCENARIOS = ("many-learners-v0", "many-learners-audit-v0", "many-learners-majority-v0")


def measure(scenario: str, seeds: int, eval_envs: int, repeats: int) -> dict:
    """In this process: seconds of the first and of the repeated evaluations."""
    import numpy as np

    from reciprocity.envs import get_scenario
    from reciprocity.evaluation import burn_in_rounds, evaluate_tables, protocol_for

    data = get_scenario(scenario)
    env_config, window = data.env_config, data.max_rounds
    burn_in_rounds(env_config, window)  # the burn-in's model, outside the clock
    protocol = protocol_for(env_config, num_envs=eval_envs, window=window)
    f = env_config.focal_slots.size
    rng = np.random.default_rng(0)
    action, signal = rng.random((seeds, f, 4)), rng.random((seeds, f, 8))
    times = []
    for _ in range(repeats + 1):
        t0 = time.perf_counter()
        evaluate_tables(env_config, action, signal, protocol)
        times.append(time.perf_counter() - t0)
    return {"burn_in": protocol.burn_in, "window": protocol.window, "first": times[0],
            "repeated": statistics.median(times[1:])}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--eval-envs", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(measure(args.child, args.seeds, args.eval_envs, args.repeats)))
        return {}
    out = {}
    for scenario in SCENARIOS:
        result = subprocess.run(
            [sys.executable, __file__, "--child", scenario, "--seeds", str(args.seeds),
             "--eval-envs", str(args.eval_envs), "--repeats", str(args.repeats)],
            check=True, capture_output=True, text=True)
        out[scenario] = json.loads(result.stdout.strip().splitlines()[-1])
    anchor = out[SCENARIOS[0]]
    print(f"evaluate_tables, {args.seeds} table sets x {args.eval_envs} games "
          f"(burn-in + window rounds), seconds; ratio to {SCENARIOS[0]}")
    print(f"{'scenario':28s} {'rounds':>6s} {'first':>8s} {'x':>6s} {'repeated':>9s} {'x':>6s}")
    for scenario, r in out.items():
        print(f"{scenario:28s} {r['burn_in'] + r['window']:6d} {r['first']:8.2f} "
              f"{r['first'] / anchor['first']:6.1f} {r['repeated']:9.2f} "
              f"{r['repeated'] / anchor['repeated']:6.1f}")
    summary = {"benchmark": "evaluation_speed", "seeds": args.seeds,
               "eval_envs": args.eval_envs, "scenarios": out}
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()

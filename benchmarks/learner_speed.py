"""Learner benchmarks: RG update cost vs N and H, and wall time to a discriminating policy.

    python benchmarks/learner_speed.py scaling      # RG update time vs N (10..200) and vs H
    python benchmarks/learner_speed.py to-discriminate [--budget ROUNDS] [--seeds 3]

``scaling`` times one RG update (refit the estimators on 10 rounds of public record from 16
games, then ``steps_per_update`` gradient steps through an H-round unroll) and prints the
scaling exponents fitted on a log-log scale (target: linear in H, polynomial in N, and one
update at N = 200 within 1 s). ``to-discriminate`` trains RG, PPO and REINFORCE on the
stern-judging scenario (L6-v0) with the same interaction budget and reports, per algorithm, the
wall time and the number of rounds until the action rule of a Good agent first discriminates
confidently (P(C | G, G) > 0.9 and P(C | G, B) < 0.1, the criterion of the learning test) — or
that it never did.
Prints tables and a final JSON line; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
import torch

from reciprocity.agents.rg import ReciprocityGradient, RGConfig
from reciprocity.agents.rollout import collect
from reciprocity.envs import EnvConfig, get_scenario
from reciprocity.envs.vector import VectorGame


def time_rg_update(n: int, horizon: int, repeats: int) -> float:
    """Median seconds of one RG update with N agents and horizon H."""
    config = EnvConfig.from_kwargs(population=["focal"] + ["L6"] * (n - 1), benefit=5.0,
                                   cost=1.0, execution_error=0.02, assessment_error=0.02)
    rg = ReciprocityGradient(RGConfig(horizon=horizon), config, (1, 1))
    game = VectorGame(config, 16, seed=0)
    game.reset()
    rng = np.random.default_rng(0)
    rollout = collect(game, rg.policy, rg.config.rounds_per_update, rng, 1)
    rg.update(rollout)  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        rg.update(rollout)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def slope(xs, ys) -> float:
    return float(np.polyfit(np.log(xs), np.log(ys), 1)[0])


def cmd_scaling(args) -> dict:
    ns = [10, 20, 50, 100, 200]
    hs = [5, 10, 20, 40, 80]
    default_h = RGConfig().horizon
    by_n = {n: time_rg_update(n, default_h, args.repeats) for n in ns}
    by_h = {h: time_rg_update(10, h, args.repeats) for h in hs}
    print(f"RG update time (refit + {RGConfig().steps_per_update} gradient steps), "
          f"H = {default_h} (default):")
    print(f"{'N':>6s} {'seconds':>10s}")
    for n, t in by_n.items():
        print(f"{n:6d} {t:10.4f}")
    print(f"  fitted exponent in N: {slope(ns, list(by_n.values())):.2f}")
    print("RG update time, N = 10:")
    print(f"{'H':>6s} {'seconds':>10s}")
    for h, t in by_h.items():
        print(f"{h:6d} {t:10.4f}")
    print(f"  fitted exponent in H: {slope(hs, list(by_h.values())):.2f}")
    met = by_n[200] <= 1.0
    verdict = "met" if met else "NOT met"
    print(f"one update at N = 200: {by_n[200]:.3f} s (target <= 1 s: {verdict})")
    return {"benchmark": "rg_scaling", "seconds_by_N": by_n, "seconds_by_H": by_h,
            "exponent_N": slope(ns, list(by_n.values())),
            "exponent_H": slope(hs, list(by_h.values())), "N200_target_met": met}


def discriminating(action_probs: np.ndarray) -> bool:
    """A Good agent's action rule discriminates, and confidently: P(C | G, G) > 0.9 and
    P(C | G, B) < 0.1 (index 2x + y). A merely greedy criterion (> 0.5 / < 0.5) is met by the
    first small step in the right direction and would time noise, not learning."""
    return bool(action_probs[3] > 0.9 and action_probs[2] < 0.1)


def time_to_discriminate(algo: str, budget: int, seed: int) -> tuple[float | None, int | None,
                                                                     float]:
    from reciprocity.train import TrainConfig, algorithm

    config = TrainConfig("L6-v0", algo=algo, seeds=(seed,), rounds=budget)
    env_config = get_scenario("L6-v0").env_config
    learner_cls, config_cls = algorithm(algo)
    learner = learner_cls(config_cls(), env_config, (1, 1), seed=seed)
    game = VectorGame(env_config, config.num_envs, seed=seed)
    game.reset()
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    rpu = learner.config.rounds_per_update
    t0 = time.perf_counter()
    for update in range(budget // rpu):
        learner.update(collect(game, learner.policy, rpu, rng, 1))
        if discriminating(learner.policy.action_probs()[0, 0].detach().numpy()):
            return time.perf_counter() - t0, (update + 1) * rpu, time.perf_counter() - t0
    return None, None, time.perf_counter() - t0


def cmd_to_discriminate(args) -> dict:
    rows = {}
    print(f"L6-v0, budget {args.budget} rounds x 16 games per seed, {args.seeds} seeds")
    print(f"{'algo':>10s} {'reached':>8s} {'median s':>9s} {'median rounds':>14s} "
          f"{'total s':>8s}")
    for algo in ("rg", "ppo", "reinforce"):
        results = [time_to_discriminate(algo, args.budget, s) for s in range(args.seeds)]
        reached = [r for r in results if r[0] is not None]
        med_s = statistics.median(r[0] for r in reached) if reached else None
        med_r = statistics.median(r[1] for r in reached) if reached else None
        total = sum(r[2] for r in results)
        rows[algo] = {"reached": len(reached), "seeds": args.seeds, "median_seconds": med_s,
                      "median_rounds": med_r, "total_seconds": total}
        print(f"{algo:>10s} {len(reached):>4d}/{args.seeds:<3d} "
              f"{med_s if med_s is not None else float('nan'):9.2f} "
              f"{med_r if med_r is not None else float('nan'):14.0f} {total:8.1f}")
    rg = rows["rg"]["median_seconds"]
    for algo in ("ppo", "reinforce"):
        other = rows[algo]["median_seconds"]
        if rg and other:
            print(f"  {algo} / rg wall-time ratio: {other / rg:.1f}x")
    return {"benchmark": "time_to_discriminate", "budget_rounds": args.budget, "rows": rows}


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("scaling")
    p.add_argument("--repeats", type=int, default=5)
    p.set_defaults(func=cmd_scaling)
    p = sub.add_parser("to-discriminate")
    p.add_argument("--budget", type=int, default=2000, help="rounds per game")
    p.add_argument("--seeds", type=int, default=3)
    p.set_defaults(func=cmd_to_discriminate)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(json.dumps(args.func(args)))


if __name__ == "__main__":
    main()

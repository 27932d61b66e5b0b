"""Learner benchmarks: RG update cost, where training time goes, and wall time to the reference.

    python benchmarks/learner_speed.py scaling      # RG update time vs N (10..200) and vs H
    python benchmarks/learner_speed.py to-discriminate [--budget ROUNDS] [--seeds 3]
    python benchmarks/learner_speed.py profile [--rounds 400]
    python benchmarks/learner_speed.py compile [--horizon 50]   # torch.compile: minutes
    python benchmarks/learner_speed.py to-reference [--seeds 3] [--budget 2000] [--tuning FILE]
    python benchmarks/learner_speed.py to-reference --kernels both      # and the kernels' cost
    python benchmarks/learner_speed.py lookahead [--scenarios many-learners-v0 ...]

``scaling`` times one RG update (refit the estimators on 10 rounds of public record from 16
games, then ``steps_per_update`` gradient steps through an H-round unroll) and prints the
scaling exponents fitted on a log-log scale (target: linear in H, polynomial in N, and one
update at N = 200 within 1 s). ``to-discriminate`` trains RG, PPO and REINFORCE on the
stern-judging scenario (L6-v0) with the same interaction budget and reports, per algorithm, the
wall time and the number of rounds until the action rule of a Good agent first discriminates
confidently (P(C | G, G) > 0.9 and P(C | G, B) < 0.1, the criterion of the learning test) — or
that it never did.

``profile`` splits one training run per algorithm (one seed, L6-v0 and the flagship
discriminators-vs-defectors-v0) into collecting experience, refitting RG's estimators and the
learners' gradient steps, then the parts done once per run: the burn-in of the evaluation
protocol (from the model) and the evaluation of the final policy (long run, 256 games); and it
times one RG gradient step through the fused unroll against the same step through the
round-by-round model (same process, interleaved: their ratio is the fused unroll's speed-up).

``compile`` compiles RG's objective with ``torch.compile`` (fused and round by round) and prints
the first call (the compilation) and a step afterwards, beside the eager steps.

``to-reference`` is the wall-clock target: per scenario (default L6-v0 and the flagship), for
RG, PPO and REINFORCE at their default hyper-parameters (and at the tuned ones of ``--tuning``),
each seed is trained alone by ``reciprocity.train.train`` for ``--budget`` rounds x 16 games,
with its policy snapshotted after every update. Every snapshot is then evaluated by the protocol
of ``reciprocity.evaluation`` (long run after the reference's burn-in, on the reference's 256
confirmation games), and the run's first snapshot whose payoff reaches ``--fraction`` (0.95) of
the reference gives the wall time (training only: collecting and updating, as timed by
``train``; the evaluations come after the clock has stopped, the same way for every algorithm)
and the interactions (rounds x 16 games) it took. Seeds are interleaved across algorithms
(seed 0 of each, then seed 1, ...) so that the machine's load falls on all alike; a warm-up run
of each algorithm comes first. Printed: per algorithm the seeds that reached the fraction, the
median wall time and interactions, and the ratio of the medians to RG's. ``--kernels both`` runs
the measurement in child processes, alternately with torch's vectorised CPU kernels and with the
portable ones that the ``reciprocity`` command selects (``ATEN_CPU_CAPABILITY=default``), and
prints portable / vectorised per algorithm.

``lookahead`` is the cost of the learning-aware RG (``rg-la``): one update (refit and
``steps_per_update`` gradient steps, defaults, 16 games, one seed) of rg-la with 1 and 2
lookahead steps against RG's on the same rollout, interleaved (rg, rg-la L=1, rg-la L=2,
rg-kant, rg, ...), on the multi-learner scenarios (target: rg-la's update at most 5x RG's on
many-learners-v0); rg-kant's update is measured in its Kantian phase (alpha = 1).

Prints tables and a final JSON line; asserts nothing.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np
import torch

from reciprocity.agents.model import discount_weights, payoffs_by_round, prepare
from reciprocity.agents.rg import ReciprocityGradient, RGConfig
from reciprocity.agents.rollout import collect
from reciprocity.envs import EnvConfig, get_scenario
from reciprocity.envs.vector import VectorGame
from reciprocity.learners import BUILTIN, get_algorithm

ALGOS = tuple(BUILTIN)
#: L6-v0 and the flagship: the scenarios of the wall-clock target
TARGET_SCENARIOS = ("L6-v0", "discriminators-vs-defectors-v0")


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
    from reciprocity.train import TrainConfig

    config = TrainConfig("L6-v0", algo=algo, seeds=(seed,), rounds=budget)
    env_config = get_scenario("L6-v0").env_config
    algorithm = get_algorithm(algo)
    learner = algorithm.learner(algorithm.defaults(), env_config, (1, 1), seed=seed)
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


# -- profile: where a training run's time goes ------------------------------------------------
class Stopwatch:
    """Seconds accumulated per named part."""

    def __init__(self):
        self.seconds: dict[str, float] = {}

    def add(self, part: str, seconds: float) -> None:
        self.seconds[part] = self.seconds.get(part, 0.0) + seconds

    def wrap(self, part: str, fn):
        """``fn`` with its calls timed under ``part``."""
        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.add(part, time.perf_counter() - start)
        return timed


def profile_run(scenario: str, algo: str, rounds: int, seed: int = 0) -> dict:
    """Seconds of one single-seed training run, by part (the loop of ``train``)."""
    from reciprocity.evaluation import evaluate_tables, protocol_for
    env_config = get_scenario(scenario).env_config
    algorithm = get_algorithm(algo)
    learner_cls, config_cls = algorithm.learner, algorithm.config
    watch = Stopwatch()
    start = time.perf_counter()
    protocol = protocol_for(env_config)      # the burn-in from the model, once per scenario
    watch.add("burn-in (once)", time.perf_counter() - start)
    learner = learner_cls(config_cls(), env_config, (1, env_config.focal_slots.size),
                          seed=(seed,))
    if algo == "rg":
        learner.estimators.update = watch.wrap("refit estimators", learner.estimators.update)
    game = VectorGame(env_config, 16, seed=seed)
    game.reset()
    rng = np.random.default_rng(seed)
    rpu = learner.config.rounds_per_update
    updates = rounds // rpu
    for _ in range(updates):
        t0 = time.perf_counter()
        rollout = collect(game, learner.policy, rpu, rng, 1)
        t1 = time.perf_counter()
        learner.update(rollout)
        watch.add("collect", t1 - t0)
        watch.add("update", time.perf_counter() - t1)
    if algo == "rg":  # the gradient steps are the update without the refit
        watch.add("update", -watch.seconds["refit estimators"])
        watch.seconds["gradient steps"] = watch.seconds.pop("update")
    start = time.perf_counter()
    action, signal = (t.numpy().astype(np.float64) for t in learner.policy.tables())
    evaluate_tables(env_config, action, signal, protocol)
    watch.add("evaluation (once)", time.perf_counter() - start)
    return {"updates": updates, "seconds": watch.seconds}


def round_by_round_objective(rg: ReciprocityGradient, start, est_action, est_signal):
    """RG's objective through the round-by-round model (:func:`~reciprocity.agents.model.advance`
    per round, autograd through every operation): the reference the fused unroll replaces."""
    from reciprocity.agents.model import learner_tables

    p, config = rg.params, rg.config
    action, signal = learner_tables(rg.policy.action_probs(), rg.policy.signal_probs(),
                                    est_action[:, None], est_signal[:, None], rg.slot_mask,
                                    execution_error=p.execution_error,
                                    assessment_error=p.assessment_error)
    tables = prepare(action[:, :, None], signal[:, :, None],
                     observers_per_interaction=p.observers_per_interaction)
    weights, norm = discount_weights(config.horizon, config.gamma)
    payoffs = payoffs_by_round(start[:, None], itertools.repeat(tables, config.horizon),
                               benefit=p.benefit, cost=p.cost,
                               update_probability=p.update_probability)
    total = sum(w * payoff for w, payoff in zip(weights, payoffs, strict=True)) / norm
    return rg.own_entry(total).mean(dim=-1)


def objective_inputs(scenario: str, horizon: int):
    """An RG learner (defaults but ``horizon``) after one collection of 16 games, and the
    arguments of its objective: (learner, start (1, 16, N), est_action, est_signal)."""
    env_config = get_scenario(scenario).env_config
    rg = ReciprocityGradient(RGConfig(horizon=horizon), env_config,
                             (1, env_config.focal_slots.size))
    game = VectorGame(env_config, 16, seed=0)
    game.reset()
    rollout = collect(game, rg.policy, rg.config.rounds_per_update, np.random.default_rng(0), 1)
    rg.estimators.update(rollout.public)
    start = torch.as_tensor(rollout.public["reputation_after"][-1][None], dtype=torch.float32)
    return (rg, start, *rg.estimators.tensors())


def time_gradient_step(scenario: str, repeats: int) -> dict:
    """Median seconds of one RG gradient step (objective, backward, Adam) at the defaults, 16
    games, through the fused unroll and through the round-by-round model, interleaved."""
    rg, start, est_action, est_signal = objective_inputs(scenario, RGConfig().horizon)

    def step(objective):
        value = objective(start, est_action, est_signal)
        rg.optimizer.zero_grad()
        (-value.sum()).backward()
        rg.optimizer.step()

    ways = {"fused": rg.objective,
            "round by round": lambda *a: round_by_round_objective(rg, *a)}
    times = {name: [] for name in ways}
    for objective in ways.values():  # warm-up
        step(objective)
    for _ in range(repeats):
        for name, objective in ways.items():
            t0 = time.perf_counter()
            step(objective)
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(t) for name, t in times.items()}


def cmd_profile(args) -> dict:
    out = {}
    for scenario in TARGET_SCENARIOS:
        print(f"{scenario}: one seed, {args.rounds} rounds x 16 games, defaults; seconds "
              "(share of the training loop), then the parts done once per run")
        out[scenario] = {}
        for algo in ALGOS:
            run = profile_run(scenario, algo, args.rounds)
            parts = run["seconds"]
            loop = {k: v for k, v in parts.items() if "once" not in k}
            total = sum(loop.values())
            print(f"  {algo:>10s} ({run['updates']} updates, {total:.3f} s): " + ", ".join(
                f"{k} {v:.3f} ({v / total:.0%})" for k, v in loop.items()) + "; " + ", ".join(
                f"{k} {v:.3f}" for k, v in parts.items() if k not in loop))
            out[scenario][algo] = run
        step = time_gradient_step(scenario, args.repeats)
        slow, fast = step["round by round"], step["fused"]
        print(f"  one RG gradient step: fused {fast * 1e3:.2f} ms, round by round "
              f"{slow * 1e3:.2f} ms (x{slow / fast:.1f})")
        out[scenario]["rg_gradient_step_seconds"] = step
    return {"benchmark": "learner_profile", "rounds": args.rounds, "scenarios": out}


def cmd_lookahead(args) -> dict:
    """Median seconds of one update of rg, of rg-la (L = 1, 2) and of rg-kant in its Kantian
    phase on one rollout, interleaved."""
    from reciprocity.agents.rg_kant import KantianRG, RGKantConfig
    from reciprocity.agents.rg_la import LearningAwareRG, RGLAConfig
    out = {}
    for scenario in args.scenarios:
        env_config = get_scenario(scenario).env_config
        shape = (1, env_config.focal_slots.size)
        learners = {"rg": ReciprocityGradient(RGConfig(), env_config, shape),
                    **{f"rg-la L={k}": LearningAwareRG(RGLAConfig(lookahead_steps=k),
                                                       env_config, shape) for k in (1, 2)},
                    # rounds_played stays 0: every update is in the Kantian phase (alpha = 1);
                    # RG's steps per update, so that the row compares the same work (rg-kant's
                    # default takes 10 steps every 25 rounds, RG's 5 every 10)
                    "rg-kant": KantianRG(RGKantConfig(
                        steps_per_update=RGConfig().steps_per_update), env_config, shape)}
        game = VectorGame(env_config, 16, seed=0)
        game.reset()
        rollout = collect(game, learners["rg"].policy, RGConfig().rounds_per_update,
                          np.random.default_rng(0), 1)
        times = {name: [] for name in learners}
        for repeat in range(args.repeats + 1):
            for name, learner in learners.items():
                t0 = time.perf_counter()
                learner.update(rollout)
                if repeat:  # the first round is a warm-up
                    times[name].append(time.perf_counter() - t0)
        medians = {name: statistics.median(t) for name, t in times.items()}
        print(f"{scenario}: one update (defaults, 16 games, 1 seed), median of {args.repeats}")
        for name, seconds in medians.items():
            print(f"  {name:>10s} {seconds * 1e3:8.1f} ms  x{seconds / medians['rg']:.1f} rg")
        out[scenario] = {"seconds": medians,
                         "ratio": {k: v / medians["rg"] for k, v in medians.items()}}
    return {"benchmark": "lookahead_cost", "repeats": args.repeats, "scenarios": out}


def cmd_compile(args) -> dict:
    """torch.compile of RG's objective (forward and backward): time of the first call (the
    compilation) and of a step afterwards, against the eager fused step, same process."""
    rg, start, est_action, est_signal = objective_inputs("L6-v0", args.horizon)
    ways = {"fused, eager": rg.objective,
            "round by round, eager": lambda *a: round_by_round_objective(rg, *a)}
    ways["fused, compiled"] = torch.compile(ways["fused, eager"])
    ways["round by round, compiled"] = torch.compile(ways["round by round, eager"])

    def step(objective) -> float:
        t0 = time.perf_counter()
        value = objective(start, est_action, est_signal)
        rg.optimizer.zero_grad()
        (-value.sum()).backward()
        return time.perf_counter() - t0

    first = {name: step(objective) for name, objective in ways.items()}
    times = {name: [] for name in ways}
    for _ in range(args.repeats):
        for name, objective in ways.items():
            times[name].append(step(objective))
    print(f"RG objective, L6-v0, H = {args.horizon}, 16 games: forward + backward")
    print(f"{'':>26s} {'first call s':>13s} {'then ms':>8s}")
    out = {}
    for name in ways:
        out[name] = {"first_call_seconds": first[name],
                     "step_seconds": statistics.median(times[name])}
        print(f"{name:>26s} {first[name]:13.2f} {out[name]['step_seconds'] * 1e3:8.2f}")
    return {"benchmark": "rg_compile", "horizon": args.horizon, "ways": out}


# -- to-reference: wall time until 95% of the reference ----------------------------------------
def first_reach(metrics: dict, reference_payoff: float, fraction: float) -> dict:
    """The first snapshot of a run whose long-run payoff reaches ``fraction`` of the reference:
    its rounds and training wall time (None if none does), and the run's total wall time."""
    for entry in metrics["budgets"]:
        if entry["per_interaction_payoff"] >= fraction * reference_payoff:
            return {"rounds": entry["rounds"], "interactions": entry["interactions"],
                    "seconds": entry["wall_seconds"], "total_seconds": metrics["wall_seconds"]}
    return {"rounds": None, "interactions": None, "seconds": None,
            "total_seconds": metrics["wall_seconds"]}


def train_snapshotted(scenario: str, algo: str, seed: int, budget: int, params: dict,
                      ref: dict, eval_envs: int) -> dict:
    """One seed trained alone by ``train``, its policy snapshotted after every update and every
    snapshot evaluated on the reference's games, burn-in and window."""
    from reciprocity.train import TrainConfig, train

    config = TrainConfig(scenario, algo=algo, seeds=(seed,), rounds=budget, num_envs=16,
                         eval_envs=eval_envs, eval_burn_in=ref["burn_in"],
                         eval_rounds=ref["rounds"], algo_config=params, checkpoint_every=0,
                         save_checkpoint=False, tensorboard=False)
    config = dataclasses.replace(config,
                                 eval_budgets=tuple(itertools.accumulate(config.collections())))
    return train(config, progress=False)[0]


def median_or_none(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def measure_to_reference(args) -> dict:
    """Every (scenario, setting, algorithm, seed) run of ``to-reference`` in this process."""
    from reciprocity.evaluation import EVALUATION_ENVS, reference
    from reciprocity.runfolder import read_json
    from reciprocity.tuning import selected_params

    torch.set_num_threads(1)
    outcome = None if args.tuning is None else read_json(args.tuning, "--tuning",
                                                         required=("selected", "candidates"))
    settings = {"default": {algo: {} for algo in ALGOS}}
    if outcome is not None:
        budgets = sorted(int(b) for b in outcome["config"]["budgets"])
        tuned_at = args.tuned_budget or max([b for b in budgets if b <= args.budget] or budgets)
        settings[f"tuned at {tuned_at} rounds"] = {
            algo: selected_params(outcome, algo, "tabular", tuned_at) for algo in ALGOS}
    out = {}
    for scenario in args.scenarios:
        ref = reference(scenario, confirm_envs=EVALUATION_ENVS)
        for algo in ALGOS:  # warm-up: first calls, allocations, caches
            train_snapshotted(scenario, algo, 10_000, 20, {"rounds_per_update": 10}, ref, 4)
        rows = {}
        for name, per_algo in settings.items():
            runs = {algo: [] for algo in ALGOS}
            for seed in range(args.seeds):
                for algo in ALGOS:
                    metrics = train_snapshotted(scenario, algo, seed, args.budget,
                                                per_algo[algo], ref, args.eval_envs)
                    runs[algo].append({"seed": seed, **first_reach(
                        metrics, ref["reference_payoff"], args.fraction)})
            rows[name] = {algo: {"params": per_algo[algo], "runs": runs[algo]} for algo in ALGOS}
        out[scenario] = {"reference_payoff": ref["reference_payoff"], "burn_in": ref["burn_in"],
                         "settings": rows}
    return out


def summarise(results: dict, fraction: float, label: str = "") -> dict:
    """Print the to-reference tables; returns per (scenario, setting, algorithm) medians and the
    ratios to RG's."""
    summary = {}
    for scenario, data in results.items():
        summary[scenario] = {}
        for name, rows in data["settings"].items():
            print(f"{scenario} ({name}{label}): first {fraction:.0%} of the reference "
                  f"{data['reference_payoff']:.4f} (long run after {data['burn_in']} rounds)")
            print(f"  {'algo':>10s} {'reached':>8s} {'median s':>9s} {'median interactions':>20s}"
                  f" {'s / RG':>7s} {'interactions / RG':>18s}")
            medians = {}
            for algo, row in rows.items():
                runs = row["runs"]
                medians[algo] = {
                    "reached": sum(r["seconds"] is not None for r in runs), "seeds": len(runs),
                    "median_seconds": median_or_none(r["seconds"] for r in runs),
                    "median_interactions": median_or_none(r["interactions"] for r in runs),
                    "total_seconds": sum(r["total_seconds"] for r in runs)}
            for algo, m in medians.items():
                rg = medians["rg"]
                ratio = {k: m[k] / rg[k] if m[k] is not None and rg[k] else None
                         for k in ("median_seconds", "median_interactions")}
                m["seconds_over_rg"] = ratio["median_seconds"]
                m["interactions_over_rg"] = ratio["median_interactions"]

                def show(value, width, fmt):
                    return format(value, f"{width}{fmt}") if value is not None else \
                        "-".rjust(width)
                note = "" if m["reached"] == m["seeds"] else "  (the others: not within the budget)"
                print(f"  {algo:>10s} {m['reached']:>4d}/{m['seeds']:<3d} "
                      f"{show(m['median_seconds'], 9, '.3f')} "
                      f"{show(m['median_interactions'], 20, ',.0f')} "
                      f"{show(m['seconds_over_rg'], 7, '.2f')} "
                      f"{show(m['interactions_over_rg'], 18, '.2f')}{note}")
            summary[scenario][name] = medians
    return summary


KERNELS = {"vectorised": None, "portable": "default"}


def kernel_child(args, capability: str | None) -> dict:
    """The measurement in a child process with ``ATEN_CPU_CAPABILITY`` set (or not)."""
    env = dict(os.environ)
    env.pop("ATEN_CPU_CAPABILITY", None)
    if capability is not None:
        env["ATEN_CPU_CAPABILITY"] = capability
    argv = [sys.executable, __file__, "to-reference", "--child", "--seeds", str(args.seeds),
            "--budget", str(args.budget), "--fraction", str(args.fraction),
            "--eval-envs", str(args.eval_envs), "--scenarios", *args.scenarios]
    if args.tuning is not None:
        argv += ["--tuning", args.tuning]
    if args.tuned_budget is not None:
        argv += ["--tuned-budget", str(args.tuned_budget)]
    done = subprocess.run(argv, env=env, check=True, text=True, capture_output=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def cmd_to_reference(args) -> dict:
    if args.child:
        return measure_to_reference(args)
    head = {"benchmark": "time_to_reference", "fraction": args.fraction,
            "budget_rounds": args.budget, "seeds": args.seeds, "num_envs": 16,
            "tuning": args.tuning,
            "cpu_capability_here": torch.backends.cpu.get_cpu_capability()}
    print(f"{args.seeds} seeds x 16 games, budget {args.budget} rounds, one seed per run, "
          "wall time of training only")
    if args.kernels == "current":
        results = measure_to_reference(args)
        return {**head, "kernels": os.environ.get("ATEN_CPU_CAPABILITY", "vectorised"),
                "results": results, "summary": summarise(results, args.fraction)}
    runs = {kind: [] for kind in KERNELS}
    for _ in range(args.repeats):  # alternate, so that both see the same machine load
        for kind, capability in KERNELS.items():
            runs[kind].append(kernel_child(args, capability))
    summary = {kind: [summarise(r, args.fraction, f", {kind} kernels, repeat {i + 1}")
                      for i, r in enumerate(results)] for kind, results in runs.items()}
    cost = {}
    print("portable / vectorised kernels, median wall time to the fraction (median over "
          "repeats):")
    for scenario in args.scenarios:
        for name in summary["portable"][0][scenario]:
            for algo in ALGOS:
                ratios = [p[scenario][name][algo]["median_seconds"] /
                          v[scenario][name][algo]["median_seconds"]
                          for p, v in zip(summary["portable"], summary["vectorised"], strict=True)
                          if p[scenario][name][algo]["median_seconds"]
                          and v[scenario][name][algo]["median_seconds"]]
                value = statistics.median(ratios) if ratios else None
                cost[f"{scenario}/{name}/{algo}"] = value
                print(f"  {scenario} {name} {algo:>10s}: "
                      f"{'-' if value is None else f'{value:.2f}'}")
    return {**head, "kernels": "both", "repeats": args.repeats, "results": runs,
            "summary": summary, "portable_over_vectorised": cost}


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
    p = sub.add_parser("profile")
    p.add_argument("--rounds", type=int, default=400, help="rounds per game")
    p.add_argument("--repeats", type=int, default=20, help="timed RG gradient steps")
    p.set_defaults(func=cmd_profile)
    p = sub.add_parser("compile")
    p.add_argument("--horizon", type=int, default=RGConfig().horizon)
    p.add_argument("--repeats", type=int, default=20)
    p.set_defaults(func=cmd_compile)
    p = sub.add_parser("lookahead")
    p.add_argument("--scenarios", nargs="+",
                   default=["many-learners-v0", "many-learners-audit-v0"])
    p.add_argument("--repeats", type=int, default=20)
    p.set_defaults(func=cmd_lookahead)
    p = sub.add_parser("to-reference")
    p.add_argument("--scenarios", nargs="+", default=list(TARGET_SCENARIOS))
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--budget", type=int, default=2000, help="rounds per game")
    p.add_argument("--fraction", type=float, default=0.95, help="of the reference payoff")
    p.add_argument("--eval-envs", type=int, default=256,
                   help="evaluation games (256: the reference's, paired)")
    p.add_argument("--tuning", default=None,
                   help="tuning.json of `reciprocity tune`: also run the tuned configurations")
    p.add_argument("--tuned-budget", type=int, default=None,
                   help="the tuning budget whose selection is used (default: the largest one "
                        "within --budget)")
    p.add_argument("--kernels", choices=("current", "both"), default="current",
                   help="both: vectorised and portable CPU kernels, in child processes")
    p.add_argument("--repeats", type=int, default=1, help="repeats per kernel kind (--kernels "
                                                          "both)")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_to_reference)
    args = parser.parse_args()
    torch.set_num_threads(1)
    result = args.func(args)
    print(json.dumps(result))


if __name__ == "__main__":
    main()

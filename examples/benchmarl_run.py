"""Run BenchMARL's algorithms on a reciprocity scenario with BenchMARL's own runner.

``reciprocity.integrations.benchmarl.task(scenario)`` is a BenchMARL task; BenchMARL's
``Benchmark`` builds one ``Experiment`` per (algorithm, seed) and runs it. The defaults run
IPPO, MAPPO and IQL on the flagship with a small budget (50 s in all on a quiet core) and
print each experiment's last mean episode return and payoff per round; BenchMARL writes its
CSV logs and JSON results under ``--out``. The experiments start from the recommended config,
``reciprocity.integrations.benchmarl.experiment_config()``: evaluation samples from the policy
(BenchMARL's greedy default scored 0.0 on many-learners-v0 while the policy earned;
``--greedy-evaluation`` brings it back). Needs the ``[torchrl]`` extra::

    python examples/benchmarl_run.py
    python examples/benchmarl_run.py --scenario many-learners-v0 --algorithms mappo qmix \\
        --frames 60000 --out runs/benchmarl

Any BenchMARL algorithm with discrete actions works: ippo, mappo, iql, vdn, qmix, masac, isac.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from benchmarl.algorithms import (
    IppoConfig,
    IqlConfig,
    IsacConfig,
    MappoConfig,
    MasacConfig,
    QmixConfig,
    VdnConfig,
)
from benchmarl.benchmark import Benchmark
from benchmarl.experiment import ExperimentConfig
from benchmarl.models.mlp import MlpConfig

from reciprocity.integrations.benchmarl import experiment_config as recommended_config
from reciprocity.integrations.benchmarl import task

ALGORITHMS = {"ippo": IppoConfig, "mappo": MappoConfig, "iql": IqlConfig, "vdn": VdnConfig,
              "qmix": QmixConfig, "masac": MasacConfig, "isac": IsacConfig}


def experiment_config(frames: int, batch: int, out: Path,
                      greedy_evaluation: bool = False) -> ExperimentConfig:
    """The recommended experiment config (BenchMARL's defaults, evaluated stochastically: the
    greedy output of a learner this early defects everywhere), scaled down to a small CPU
    budget. ``greedy_evaluation`` restores BenchMARL's deterministic evaluation."""
    config = recommended_config(evaluation_deterministic_actions=greedy_evaluation)
    config.max_n_frames = frames
    config.lr = 3e-3
    config.on_policy_collected_frames_per_batch = batch
    config.on_policy_n_envs_per_worker = 1
    config.on_policy_minibatch_size = min(100, batch)
    config.on_policy_n_minibatch_iters = 4
    config.off_policy_collected_frames_per_batch = batch
    config.off_policy_n_envs_per_worker = 1
    config.off_policy_n_optimizer_steps = 20
    config.off_policy_train_batch_size = 64
    config.off_policy_memory_size = 20_000
    config.exploration_anneal_frames = frames // 2
    config.evaluation_interval = frames  # evaluate once, at the end
    config.evaluation_episodes = 2
    config.save_folder = str(out)
    return config


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenario", default="discriminators-vs-defectors-v0")
    parser.add_argument("--algorithms", nargs="+", default=["ippo", "mappo", "iql"],
                        choices=sorted(ALGORITHMS))
    parser.add_argument("--frames", type=int, default=2000,
                        help="parallel steps per experiment (2 per round)")
    parser.add_argument("--batch", type=int, default=500, help="parallel steps per iteration")
    parser.add_argument("--max-rounds", type=int, default=25, help="rounds per episode")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--out", type=Path, default=Path("runs/benchmarl"))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--greedy-evaluation", action="store_true",
                        help="evaluate with greedy actions (BenchMARL's default) instead of "
                             "sampling from the policy")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    benchmark = Benchmark(
        algorithm_configs=[ALGORITHMS[name].get_from_yaml() for name in args.algorithms],
        tasks=[task(args.scenario, max_rounds=args.max_rounds)],
        seeds=set(args.seeds),
        experiment_config=experiment_config(args.frames, args.batch, args.out,
                                            args.greedy_evaluation),
        model_config=MlpConfig.get_from_yaml(),
        critic_model_config=MlpConfig.get_from_yaml())
    results = {}
    for experiment in benchmark.get_experiments():  # what Benchmark.run_sequential() does
        experiment.run()
        name = f"{experiment.algorithm_name}/seed{experiment.seed}"
        results[name] = {"mean_return": float(experiment.mean_return),
                         "payoff_per_round": float(experiment.mean_return) / args.max_rounds,
                         "folder": str(experiment.folder_name)}
    for name, r in results.items():
        print(f"{name}: mean episode return {r['mean_return']:.2f} = payoff per round "
              f"{r['payoff_per_round']:.3f} ({r['folder']})")
    return results


if __name__ == "__main__":
    main()

"""Train learners on a scenario: one learner per (seed, focal slot), all seeds in one process.

The loop is the same for every algorithm: collect ``rounds_per_update`` rounds in every game
with the current policies, call the learner's ``update``, log, checkpoint. The interaction budget
is ``rounds`` rounds in each of ``num_envs`` games per seed, identical for all algorithms. After
training, every learner's policy is evaluated on the core by the protocol of
:mod:`reciprocity.evaluation` (long run after a burn-in, and one episode from the initial
reputations). With ``eval_budgets`` the policies are also snapshotted when the run has played
those budgets, and every snapshot is evaluated the same way (one run, several points of a
sample-efficiency curve).

Outputs in ``out``: ``metrics.json`` (single seed) or ``seed_<s>/metrics.json`` per seed plus
``summary.json``; ``progress.csv`` (learning curves); TensorBoard event files in ``tb/`` when
the ``tensorboard`` package is installed; ``checkpoint.pt`` (resume with ``resume=True``).
"""

from __future__ import annotations

import csv
import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from .agents.rollout import collect
from .envs.norms import parse_strategy
from .envs.scenarios import get_scenario
from .envs.vector import VectorGame
from .evaluation import evaluate_tables, protocol_for

ALGOS = ("rg", "ppo", "reinforce")


def algorithm(name: str):
    """(learner class, config dataclass) of an algorithm name."""
    if name == "rg":
        from .agents.rg import ReciprocityGradient, RGConfig

        return ReciprocityGradient, RGConfig
    if name == "ppo":
        from .baselines import PPO, PPOConfig

        return PPO, PPOConfig
    if name == "reinforce":
        from .baselines import Reinforce, ReinforceConfig

        return Reinforce, ReinforceConfig
    raise ValueError(f"algo must be one of {ALGOS}, got {name!r}")


@dataclass
class TrainConfig:
    """A training run."""

    scenario: str  # scenario id or path of a scenario file
    algo: str = "rg"  # "rg", "ppo" or "reinforce"
    seeds: tuple[int, ...] = (0,)  # independent runs, trained together (vectorised)
    rounds: int = 2000  # interaction budget: rounds played in each game
    num_envs: int = 16  # games per seed played in lock-step
    eval_envs: int = 256  # evaluation games per learner after training (paired with the
    #                       reference's games when equal to its confirm_envs)
    eval_rounds: int | None = None  # rounds averaged per evaluation game after the burn-in
    #                                 (default: the scenario's max_rounds)
    eval_burn_in: int | None = None  # rounds played before them (default: from the scenario's
    #                                  dynamics, reciprocity.evaluation.burn_in_rounds)
    eval_budgets: tuple[int, ...] = ()  # also evaluate the policies after these many rounds
    algo_config: dict[str, Any] = field(default_factory=dict)  # overrides of the algo defaults
    checkpoint_every: int = 50  # updates between checkpoints (0: only at the end)
    init_policy: str | None = None  # start every learner from this strategy spec (tabular)
    save_checkpoint: bool = True  # write checkpoint.pt (needed for resume)
    tensorboard: bool = True  # write TensorBoard events to tb/ (if tensorboard is installed)
    device: str = "cpu"  # torch device

    def __post_init__(self):
        algorithm(self.algo)
        self.seeds = tuple(int(s) for s in self.seeds)
        self.eval_budgets = tuple(sorted(int(b) for b in self.eval_budgets))
        if any(b < 1 or b > self.rounds for b in self.eval_budgets) or \
                len(set(self.eval_budgets)) != len(self.eval_budgets):
            raise ValueError(f"eval_budgets must be distinct rounds in 1..rounds={self.rounds}, "
                             f"got {self.eval_budgets}")
        if self.init_policy is not None:
            parse_strategy(self.init_policy, field="init_policy")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds must be distinct and non-empty, got {self.seeds}")
        for name in ("rounds", "num_envs", "eval_envs"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")

    def learner_config(self):
        _, config_cls = algorithm(self.algo)
        known = {f.name for f in dataclasses.fields(config_cls)}
        unknown = set(self.algo_config) - known
        if unknown:
            raise ValueError(f"algo_config: unknown {self.algo} hyper-parameter(s) "
                             f"{sorted(unknown)}; known: {sorted(known)}")
        return config_cls(**self.algo_config)

    def to_dict(self) -> dict:
        out = dataclasses.asdict(self)
        out["seeds"] = list(self.seeds)
        out["eval_budgets"] = list(self.eval_budgets)
        return out


class _Logger:
    """progress.csv + optional TensorBoard. On resume, rows logged after the checkpoint (by the
    killed run) are dropped so that every update appears once."""

    def __init__(self, out: Path | None, resume_update: int | None, tensorboard: bool = True):
        self.out = out
        self.writer = None
        self.csv_file = None
        if out is None:
            return
        path = out / "progress.csv"
        kept = []
        if resume_update is not None and path.is_file():
            with path.open(newline="") as f:
                kept = [r for r in csv.DictReader(f) if int(r["update"]) <= resume_update]
        self.csv_file = path.open("w", newline="")
        self.csv = None
        if kept:
            self.csv = csv.DictWriter(self.csv_file, fieldnames=list(kept[0]))
            self.csv.writeheader()
            self.csv.writerows(kept)
            self.csv_file.flush()
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.writer = SummaryWriter(str(out / "tb"))
            except ImportError:
                self.writer = None

    def log(self, step: int, rows: list[dict]) -> None:
        if self.csv_file is None:
            return
        if self.csv is None:
            self.csv = csv.DictWriter(self.csv_file, fieldnames=list(rows[0]))
            self.csv.writeheader()
        self.csv.writerows(rows)
        self.csv_file.flush()
        if self.writer is not None:
            for row in rows:
                tag = f"seed_{row['seed']}"
                for k, v in row.items():
                    if k not in ("seed", "update", "rounds") and isinstance(v, float):
                        self.writer.add_scalar(f"{k}/{tag}", v, row["rounds"])

    def close(self):
        if self.csv_file is not None:
            self.csv_file.close()
        if self.writer is not None:
            self.writer.close()


def train(config: TrainConfig, out: str | Path | None = None, *, resume: bool = False,
          progress: bool = True) -> list[dict]:
    """Run (or resume) training; returns one metrics dict per seed (and writes them to ``out``)."""
    start_time = time.perf_counter()
    scenario = get_scenario(config.scenario)
    env_config = scenario.env_config
    learner_cls, _ = algorithm(config.algo)
    learner_config = config.learner_config()
    num_seeds, focal = len(config.seeds), env_config.focal_slots
    out = None if out is None else Path(out)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    rpu = learner_config.rounds_per_update
    num_updates = max(1, config.rounds // rpu)
    off_grid = [b for b in config.eval_budgets if b % rpu]
    if off_grid:
        raise ValueError(f"eval_budgets {off_grid} are not multiples of rounds_per_update={rpu}")
    snapshots: dict[int, tuple] = {}  # rounds -> (action, signal tables, wall seconds)

    seed_seq = np.random.SeedSequence(list(config.seeds))
    game_seed, rng_seed = seed_seq.spawn(2)
    game = VectorGame(env_config, num_seeds * config.num_envs,
                      seed=np.random.default_rng(game_seed))
    game.reset()
    rng = np.random.default_rng(rng_seed)
    torch.manual_seed(int(seed_seq.generate_state(1)[0]))
    learner = learner_cls(learner_config, env_config, (num_seeds, focal.size),
                          seed=config.seeds[0], device=config.device)
    if config.init_policy is not None:
        start_policy = parse_strategy(config.init_policy, field="init_policy")
        learner.policy.set_tables(start_policy.action, start_policy.assess)
    first_update, elapsed_before = 0, 0.0
    checkpoint = out / "checkpoint.pt" if out is not None and config.save_checkpoint else None
    if resume:
        if checkpoint is None or not checkpoint.is_file():
            raise ValueError(f"resume: no checkpoint.pt in {out}")
        state = torch.load(checkpoint, weights_only=False)
        learner.load_state_dict(state["learner"])
        game, first_update = state["game"], state["update"]
        rng.bit_generator.state = state["rng"]
        torch.set_rng_state(state["torch_rng"])
        elapsed_before = state["wall_seconds"]
        snapshots = state.get("snapshots", {})

    def save_checkpoint(update: int) -> None:
        if checkpoint is None:
            return
        tmp = checkpoint.with_suffix(".tmp")
        torch.save({"update": update, "learner": learner.state_dict(), "game": game,
                    "rng": rng.bit_generator.state, "torch_rng": torch.get_rng_state(),
                    "config": config.to_dict(), "snapshots": snapshots,
                    "wall_seconds": elapsed_before + time.perf_counter() - start_time}, tmp)
        tmp.replace(checkpoint)

    logger = _Logger(out, first_update if resume else None, config.tensorboard)
    bar = tqdm(range(first_update, num_updates), initial=first_update, total=num_updates,
               desc=f"{config.algo} {scenario.id}", disable=not progress, unit="update")
    try:
        for update in bar:
            rollout = collect(game, learner.policy, rpu, rng, num_seeds)
            logs = learner.update(rollout)
            per_seed = rollout.rewards.mean(dim=(0, 2, 3)).cpu().numpy()  # (S,)
            rounds_done = (update + 1) * rpu
            logger.log(update, [{"update": update + 1, "rounds": rounds_done, "seed": s,
                                 "train_reward_per_round": float(r),
                                 **{k: float(v) for k, v in logs.items()}}
                                for s, r in zip(config.seeds, per_seed, strict=True)])
            bar.set_postfix(reward=f"{per_seed.mean():.3f}")
            if rounds_done in config.eval_budgets:
                snapshots[rounds_done] = (*learner.policy.tables(),
                                          elapsed_before + time.perf_counter() - start_time)
            if config.checkpoint_every and (update + 1) % config.checkpoint_every == 0:
                save_checkpoint(update + 1)
    finally:
        logger.close()
    save_checkpoint(num_updates)
    wall = elapsed_before + time.perf_counter() - start_time
    metrics = evaluate_learner(learner, env_config, config, scenario.id, snapshots)
    for m in metrics:
        m.update(rounds=num_updates * rpu, interactions=num_updates * rpu * config.num_envs,
                 wall_seconds=wall,
                 config={"train": config.to_dict(),
                         "algo": dataclasses.asdict(learner_config),
                         "scenario": scenario.to_dict()})
    if out is not None:
        write_metrics(out, metrics)
    return metrics


def evaluate_learner(learner, env_config, config: TrainConfig, scenario_id: str,
                     snapshots: dict | None = None) -> list[dict]:
    """Evaluate each learner's (stochastic) policy, and its snapshots, by the protocol of
    :mod:`reciprocity.evaluation` (all on the same games, paired with the reference's)."""
    protocol = protocol_for(env_config, num_envs=config.eval_envs, window=config.eval_rounds,
                            burn_in=config.eval_burn_in)
    snapshots = snapshots or {}
    final = (*learner.policy.tables(), None)
    tables = [final, *(snapshots[b] for b in sorted(snapshots))]
    action = np.concatenate([t[0].cpu().numpy() for t in tables]).astype(np.float64)
    signal = np.concatenate([t[1].cpu().numpy() for t in tables]).astype(np.float64)
    evaluated = evaluate_tables(env_config, action, signal, protocol)   # S per table set
    num_seeds = len(config.seeds)
    metrics = []
    for k, seed in enumerate(config.seeds):
        m = {"scenario": scenario_id, "algo": config.algo, "seed": seed,
             **evaluated[k]}
        if snapshots:
            m["budgets"] = [{"rounds": b, "interactions": b * config.num_envs,
                             "wall_seconds": float(snapshots[b][2]),
                             **evaluated[(i + 1) * num_seeds + k]}
                            for i, b in enumerate(sorted(snapshots))]
        metrics.append(m)
    return metrics


def write_metrics(out: Path, metrics: list[dict]) -> None:
    if len(metrics) == 1:
        (out / "metrics.json").write_text(json.dumps(metrics[0], indent=2))
        return
    for m in metrics:
        folder = out / f"seed_{m['seed']}"
        folder.mkdir(exist_ok=True)
        (folder / "metrics.json").write_text(json.dumps(m, indent=2))
    payoff = [m["per_interaction_payoff"] for m in metrics]
    (out / "summary.json").write_text(json.dumps({
        "scenario": metrics[0]["scenario"], "algo": metrics[0]["algo"],
        "seeds": [m["seed"] for m in metrics],
        "per_interaction_payoff": {"mean": float(np.mean(payoff)), "per_seed": payoff},
    }, indent=2))

"""Train learners on a scenario: one learner per (seed, focal slot), all seeds in one process.

The loop is the same for every algorithm: collect ``rounds_per_update`` rounds in every game
with the current policies, call the learner's ``update``, log, checkpoint. The interaction budget
is exactly ``rounds`` rounds in each of ``num_envs`` games per seed, identical for all algorithms:
when ``rounds`` is not a multiple of ``rounds_per_update`` the last collection is shorter. After
training, every learner's policy is evaluated on the core by the protocol of
:mod:`reciprocity.evaluation` (long run after a burn-in, and one episode from the initial
reputations). With ``eval_budgets`` the policies are also snapshotted when the run has played
those budgets, and every snapshot is evaluated the same way (one run, several points of a
sample-efficiency curve).

Seeds are independent runs: everything random in seed s's run (games, decisions, parameter
initialisation, minibatch shuffles) is drawn from seed s alone (see
:mod:`~reciprocity.agents.seeding`), so a seed gives the same numbers whatever other seeds
train beside it.

**Warm-up** (spec §7, ``warmup`` = W > 0, scenarios with several learners): before the learners
train together, each first trains for W rounds as the only learner in a copy of the scenario
whose other learner slots are played by ``warmup_strategy`` (default: DISC acting, assessing by
the audit norm under a signal audit, else by the background's norm: the ideal discriminator of
the multi-learner reference); then all train together from their warmed-up policies. The
warm-up is part of the interaction budget: every learner plays W rounds alone and ``rounds - W``
together, in ``num_envs`` games each, so ``rounds`` stays the number of rounds each learner has
played, whatever W (and every algorithm gets the same W). Only the policy (both heads) carries
over; the rest of a learner's state (RG's estimators, the baselines' critics, optimiser moments)
describes the warm-up game and starts afresh. The rules treat all slots alike, so every learner's
copy is the same game up to relabelling the agents: the warm-up trains the S x F learners as
S x F independent rows of one learner in the scenario with its first learner slot focal, each
row with its own games, decisions and internal randomness drawn from its seed and learner
index alone. A warm-up update is one update of the run (checkpoints and resume cover it);
``progress.csv`` marks its rows ``stage = warmup`` (payoffs in the copy) and the later ones
``stage = together``, and the progress bar names the stage.

Outputs in ``out`` (a run folder, see :mod:`reciprocity.runfolder`): ``run.json`` (the run's
identity and status), ``metrics.json`` (single seed) or ``seed_<s>/metrics.json`` per seed plus
``summary.json``; ``progress.csv`` (learning curves, rewritten at every checkpoint and at the
end); ``learning_curve.png`` (:func:`plot_learning_curve`: training payoff per round against
rounds, per seed, the warm-up shaded; written at the end); TensorBoard event files in ``tb/``
when the ``tensorboard`` package is installed (a live view); ``checkpoint.pt`` (resume with
``resume=True``). Checkpoints embed the fully resolved scenario and every option, so a run
resumes from any directory even if its scenario file has changed or gone.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import signal
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from .agents.rollout import collect
from .envs.config import EnvConfig
from .envs.norms import parse_strategy
from .envs.scenarios import Scenario
from .envs.vector import VectorGame
from .evaluation import burn_in_rounds, evaluate_tables, protocol_for
from .runfolder import (
    RunInterrupted,
    load_checkpoint,
    open_run,
    read_json,
    read_manifest,
    record_written,
    save_checkpoint,
    write_csv,
    write_json,
)
from .train_config import (  # noqa: F401  (re-exported: the options of a run live there)
    TrainConfig,
    check_device,
    parse_checkpoint_every,
    warmup_config,
    warmup_opponent,
)

#: Checkpoints of a run when ``checkpoint_every`` is None (evenly spaced, plus one at the end).
DEFAULT_CHECKPOINTS = 10
#: The learning-curve figure of a run folder (:func:`plot_learning_curve`).
LEARNING_CURVE = "learning_curve.png"

def warmup_seed(seed: int, learner: int) -> int:
    """The seed of a warm-up: learner ``learner`` (its index among the focal slots) of run seed
    ``seed`` warms up exactly as a single-learner run of the warm-up game
    (:func:`warmup_config`) with this seed would train (given the same initial policy)."""
    return int(np.random.SeedSequence(seed, spawn_key=(2, learner)).generate_state(1)[0])


#: ``--init``'s tables are clipped to [1 - START_CONFIDENCE, START_CONFIDENCE] (finite logits)
START_CONFIDENCE = 0.95


def start_tables(strategy, mix: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """The start tables of ``--init`` (action (4,), signal (8,)): the strategy's, clipped to
    [0.05, 0.95], mixed with the uniform policy, P = 0.5 + mix (P_strategy - 0.5)."""
    if mix == 1.0:  # the strategy itself (set_tables clips it)
        return strategy.action, strategy.assess
    low = 1 - START_CONFIDENCE
    return tuple(0.5 + mix * (np.clip(np.asarray(t, dtype=np.float64), low, 1 - low) - 0.5)
                 for t in (strategy.action, strategy.assess))


def _games(env_config: EnvConfig, seeds, num_envs: int):
    """``num_envs`` games per seed (reset) and one decision generator per seed; each seed has
    two streams of its own, for its games and for its learners' decisions."""
    streams = [np.random.SeedSequence(s).spawn(2) for s in seeds]
    game = VectorGame(env_config, len(seeds) * num_envs,
                      seed=[np.random.default_rng(g) for g, _ in streams])
    game.reset()
    return game, [np.random.default_rng(r) for _, r in streams]


class _WarmUp:
    """The warm-up stage of a run: the S x F learners of S seeds and F learner slots as S x F
    rows of one learner (batch shape (S F, 1)) in the warm-up game (:func:`warmup_config`),
    row ``s F + j`` being learner j of seed s. Row (s, j) starts from learner j's initial policy
    in seed s and is seeded with :func:`warmup_seed` (s, j): its games, decisions and internal
    randomness (e.g. PPO's minibatches) depend on seed s and its learner index alone.
    """

    def __init__(self, config: TrainConfig, learner_cls, learner_config, joint_policy):
        env_config = config.scenario_data.env_config
        num_focal = int(env_config.focal_slots.size)
        self.env_config = warmup_config(env_config, config.warmup_opponent)
        self.row_seeds = [s for s in config.seeds for _ in range(num_focal)]  # row -> run seed
        seeds = [warmup_seed(s, j) for s in config.seeds for j in range(num_focal)]
        self.rows = len(seeds)
        self.game, self.rngs = _games(self.env_config, seeds, config.num_envs)
        self.learner = learner_cls(learner_config, self.env_config, (self.rows, 1), seed=seeds,
                                   device=config.device)
        _load_policy(self.learner.policy, joint_policy)

    def finish(self, joint_learner) -> None:
        """Start the joint learners from the warmed-up policies."""
        _load_policy(joint_learner.policy, self.learner.policy)

    def state_dict(self) -> dict:
        return {"learner": self.learner.state_dict(), "game": self.game.state_dict(),
                "rngs": [r.bit_generator.state for r in self.rngs]}

    def load_state_dict(self, state: dict) -> None:
        self.learner.load_state_dict(state["learner"])
        self.game.load_state_dict(state["game"])
        for rng, rng_state in zip(self.rngs, state["rngs"], strict=True):
            rng.bit_generator.state = rng_state


@torch.no_grad()
def _load_policy(target, source) -> None:
    """Copy a policy's parameters into another of batch shape (S, F) <-> (S F, 1), row
    ``s F + j`` <-> element (s, j) (tensors shared by all learners are copied as they are)."""
    shapes = {name: value.shape for name, value in target.state_dict().items()}
    target.load_state_dict({name: value.reshape(shapes[name])
                            for name, value in source.state_dict().items()})


def _logs_per_seed(logs: dict, row_seeds, seeds) -> dict[str, np.ndarray]:
    """A learner's update metrics as one value per run seed: a number stands for every seed; a
    sequence has one value per row of the learner's batch (rows of one run seed, e.g. its
    learners in a warm-up, are averaged)."""
    out = {}
    for name, value in logs.items():
        values = np.asarray(value.detach().cpu() if isinstance(value, torch.Tensor) else value,
                            dtype=np.float64)
        if values.ndim == 0:
            out[name] = np.full(len(seeds), float(values))
            continue
        if values.shape != (len(row_seeds),):
            raise ValueError(f"update() returned {name} of shape {values.shape}; expected a "
                             f"number or one value per seed row ({len(row_seeds)})")
        rows = np.asarray(row_seeds)
        out[name] = np.array([values[rows == s].mean() for s in seeds])
    return out


def _check_finite(learner, logs: dict, per_seed: np.ndarray, seeds, update: int, algo: str):
    """Refuse to continue (and to checkpoint) a learner whose numbers are no longer finite.
    ``seeds``: the run seed of each row of the learner's policy."""
    bad = [name for name, v in logs.items() if not np.isfinite(v).all()]
    if not np.isfinite(per_seed).all():
        bad.append("train_reward_per_round")
    action, signal_ = learner.policy.tables()
    rows = ~(torch.isfinite(action).flatten(1).all(1) & torch.isfinite(signal_).flatten(1).all(1))
    bad_seeds = list(dict.fromkeys(seeds[k] for k in torch.nonzero(rows).flatten().tolist()))
    if bad or bad_seeds:
        where = ", ".join(bad + ([f"policy of seed(s) {bad_seeds}"] if bad_seeds else []))
        raise ValueError(f"training diverged at update {update}: {algo} produced non-finite "
                         f"values (NaN/inf) in {where}; nothing after the last checkpoint was "
                         "saved. Lower the learning rate or check the hyper-parameters")


# -- the run: one update at a time ---------------------------------------------------------------
class TrainingRun:
    """A training run between two updates: the learners, their games and decision streams, the
    warm-up (if any), the updates done and the training time spent.

    :meth:`step` collects ``rounds_per_update`` rounds in every game with the current policies,
    updates the learners and returns the update's rows of progress (one per seed).
    :meth:`state_dict` / :meth:`load_state_dict` hold everything a resumed run needs to continue
    exactly (the callbacks' state is saved beside it, see :class:`Checkpoints`).
    """

    def __init__(self, config: TrainConfig):
        self.config = config
        self.env_config = config.scenario_data.env_config
        self.learner_config = config.learner_config()
        self.collections = config.collections()
        self.num_updates = len(self.collections)
        self.warmup_updates = config.warmup_updates()
        focal = self.env_config.focal_slots
        # one independent stream per seed for its games and one for its decisions
        self.game, self.rngs = _games(self.env_config, config.seeds, config.num_envs)
        self.learner = config.algorithm.learner(self.learner_config, self.env_config,
                                                (len(config.seeds), focal.size),
                                                seed=config.seeds, device=config.device)
        if config.init_policy is not None:
            start = parse_strategy(config.init_policy, field="init_policy")
            self.learner.policy.set_tables(*start_tables(start, config.init_mix),
                                           confidence=START_CONFIDENCE)
        self.warm = _WarmUp(config, config.algorithm.learner, self.learner_config,
                            self.learner.policy) if self.warmup_updates else None
        self.update = 0  # updates done
        self.wall_before = 0.0  # training seconds spent before this process (a resumed run)
        self.started = time.perf_counter()

    @property
    def done(self) -> bool:
        return self.update >= self.num_updates

    @property
    def rounds_done(self) -> int:
        return sum(self.collections[:self.update])

    def wall_seconds(self) -> float:
        """Training seconds so far (across resumes)."""
        return self.wall_before + time.perf_counter() - self.started

    @contextlib.contextmanager
    def paused(self):
        """Work done inside is not training time (e.g. evaluating a snapshot)."""
        stopped = time.perf_counter()
        try:
            yield
        finally:
            self.started += time.perf_counter() - stopped

    def step(self) -> list[dict]:
        """One collection and update; its rows of progress (one per seed)."""
        config, update = self.config, self.update
        num_seeds = len(config.seeds)
        if update < self.warmup_updates:  # each learner alone in the warm-up game
            active, row_seeds = self.warm.learner, self.warm.row_seeds
            rollout = collect(self.warm.game, active.policy, self.collections[update],
                              self.warm.rngs, self.warm.rows)
        else:
            active, row_seeds = self.learner, config.seeds
            rollout = collect(self.game, active.policy, self.collections[update], self.rngs,
                              num_seeds)
        logs = _logs_per_seed(active.update(rollout), row_seeds, config.seeds)   # name -> (S,)
        # mean over each seed's learners and games: (S,)
        per_seed = rollout.rewards.mean(dim=(0, 2, 3)).reshape(num_seeds, -1).mean(dim=1) \
            .cpu().numpy()
        _check_finite(active, logs, per_seed, row_seeds, update + 1, config.algorithm.name)
        self.update += 1
        stage = {} if not self.warmup_updates else \
            {"stage": "warmup" if update < self.warmup_updates else "together"}
        if self.update == self.warmup_updates:  # the warm-up is over: all train together
            self.warm.finish(self.learner)
            self.warm = None
        return [{"update": self.update, "rounds": self.rounds_done, "seed": s, **stage,
                 "train_reward_per_round": float(r), **{k: float(v[i]) for k, v in logs.items()}}
                for i, (s, r) in enumerate(zip(config.seeds, per_seed, strict=True))]

    def state_dict(self) -> dict:
        return {"update": self.update, "learner": self.learner.state_dict(),
                "game": self.game.state_dict(), "rngs": [r.bit_generator.state for r in self.rngs],
                "wall_seconds": self.wall_seconds(),
                **({} if self.warm is None else {"warmup": self.warm.state_dict()})}

    def load_state_dict(self, state: dict) -> None:
        self.learner.load_state_dict(state["learner"])
        self.game.load_state_dict(state["game"])
        for rng, rng_state in zip(self.rngs, state["rngs"], strict=True):
            rng.bit_generator.state = rng_state
        self.update, self.wall_before = state["update"], state["wall_seconds"]
        self.started = time.perf_counter()
        if self.update < self.warmup_updates:
            if not isinstance(state.get("warmup"), dict):
                raise ValueError("checkpoint: it lacks the warm-up's state")
            self.warm.load_state_dict(state["warmup"])
        else:
            self.warm = None


# -- callbacks ----------------------------------------------------------------------------------
class Callback:
    """A hook of the training loop (as in Stable-Baselines3): :meth:`on_update` after every
    update with its rows of progress, :meth:`on_end` after the last one; :meth:`close` always.
    A callback with state to resume (:meth:`state_dict`, :meth:`load_state_dict`) is saved in
    every checkpoint under its ``key``."""

    key: str | None = None

    def on_update(self, run: TrainingRun, rows: list[dict]) -> None:
        pass

    def on_end(self, run: TrainingRun) -> None:
        pass

    def close(self) -> None:
        pass

    def state_dict(self):
        return None

    def load_state_dict(self, state) -> None:
        pass


class ProgressLog(Callback):
    """progress.csv (rows kept in memory, written atomically at every checkpoint and at the end,
    so the file always matches a checkpoint) and an optional live TensorBoard view."""

    key = "progress"

    def __init__(self, out: Path | None, tensorboard: bool):
        self.out, self.rows = out, []
        self.tensorboard = out is not None and tensorboard
        self.writer = None

    def _open_writer(self, resume_rounds: int | None) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # the tensorboard package is optional
            self.tensorboard = False
            return
        # events logged by an interrupted run after its checkpoint are hidden on resume
        purge = None if resume_rounds is None else resume_rounds + 1
        # TensorBoard names its event files itself: they are listed as the run's by pattern
        record_written(self.out / "tb" / "events.out.tfevents.*", pattern=True)
        self.writer = SummaryWriter(str(self.out / "tb"), purge_step=purge)

    def on_update(self, run: TrainingRun, rows: list[dict]) -> None:
        if self.tensorboard and self.writer is None:
            self._open_writer(None)
        self.rows.extend(rows)
        if self.writer is not None:
            for row in rows:
                tag = f"seed_{row['seed']}"
                for k, v in row.items():
                    if k not in ("seed", "update", "rounds") and isinstance(v, float):
                        self.writer.add_scalar(f"{k}/{tag}", v, row["rounds"])

    def write(self) -> None:
        if self.out is not None and self.rows:
            write_csv(self.out / "progress.csv", self.rows)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()

    def state_dict(self) -> list[dict]:
        return self.rows

    def load_state_dict(self, rows: list[dict]) -> None:
        self.rows = list(rows)
        if self.tensorboard:
            self._open_writer(rows[-1]["rounds"] if rows else 0)


class Snapshots(Callback):
    """The policies' tables (and the training time) when the run has played each of
    ``eval_budgets`` rounds: points of a sample-efficiency curve from one run."""

    key = "snapshots"

    def __init__(self, budgets):
        self.budgets = set(budgets)
        self.tables: dict[int, dict] = {}  # rounds -> tables and wall seconds at that budget

    def on_update(self, run: TrainingRun, rows: list[dict]) -> None:
        if run.rounds_done in self.budgets:
            action, signal_ = run.learner.policy.tables()
            self.tables[run.rounds_done] = {
                "rounds": run.rounds_done, "action": action.cpu(), "signal": signal_.cpu(),
                "wall_seconds": run.wall_seconds()}

    def state_dict(self) -> list[dict]:
        return list(self.tables.values())

    def load_state_dict(self, state: list[dict]) -> None:
        self.tables = {int(s["rounds"]): s for s in state}


class ProgressBar(Callback):
    """A progress bar over the updates, with the last training payoff per round. With a warm-up
    its description names the stage of the coming updates: ``warm-up`` (with the warm-up's share
    of the updates; the payoffs are those of the warm-up game), then ``together``."""

    def __init__(self, run: TrainingRun, enabled: bool):
        self.name = f"{run.config.algorithm.name} {run.config.scenario_data.id}"
        self.bar = tqdm(total=run.num_updates, initial=run.update, disable=not enabled,
                        desc=self.description(run), unit="update")

    def description(self, run: TrainingRun) -> str:
        if not run.warmup_updates:
            return self.name
        if run.update < run.warmup_updates:
            return (f"{self.name} warm-up (updates 1-{run.warmup_updates} of "
                    f"{run.num_updates}, alone)")
        return f"{self.name} together"

    def on_update(self, run: TrainingRun, rows: list[dict]) -> None:
        if run.warmup_updates and run.update == run.warmup_updates:
            self.bar.set_description(self.description(run), refresh=False)
        self.bar.update()
        self.bar.set_postfix(reward=f"{np.mean([r['train_reward_per_round'] for r in rows]):.3f}")

    def close(self) -> None:
        self.bar.close()


class Checkpoints(Callback):
    """``checkpoint.pt`` at the configured cadence and after the last update, and progress.csv
    with it; on Ctrl-C, a checkpoint of the last completed update, then
    :class:`~reciprocity.runfolder.RunInterrupted`. A checkpoint holds the run
    (:meth:`TrainingRun.state_dict`), every callback's state, the resolved scenario, the
    options and the run's identity."""

    def __init__(self, path: Path | None, identity: str | None, run: TrainingRun,
                 callbacks: list[Callback], log: ProgressLog):
        self.path, self.identity, self.callbacks, self.log = path, identity, callbacks, log
        config = run.config
        every = config.checkpoint_every
        if every is None:
            every = max(1, math.ceil(run.num_updates / DEFAULT_CHECKPOINTS))
        self.seconds = float(every[:-1]) if isinstance(every, str) else None
        self.every = every
        self.last_save = time.perf_counter()
        self.interrupt = _Interrupt(active=path is not None)

    def save(self, run: TrainingRun) -> None:
        # the checkpoint first: progress.csv is then never ahead of it (a resume rewrites it)
        if self.path is not None:
            config, scenario = run.config, run.config.scenario_data
            save_checkpoint(self.path, {
                "identity": self.identity, "train_config": config.to_dict(),
                "scenario": scenario.to_dict(), "scenario_hash": scenario.content_hash(),
                **run.state_dict(),
                **{c.key: c.state_dict() for c in self.callbacks if c.key is not None}})
        self.log.write()

    def restore(self, run: TrainingRun) -> None:
        """Continue from ``checkpoint.pt`` (it must be this run's)."""
        if self.path is None or not self.path.is_file():
            folder = None if self.path is None else self.path.parent
            raise ValueError(f"--resume {folder}: no checkpoint yet (the run stopped before its "
                             "first one); start it again with --overwrite")
        state = load_checkpoint(self.path, required=CHECKPOINT_KEYS)
        if state["identity"] != self.identity:
            raise ValueError(f"--resume {self.path.parent}: checkpoint.pt belongs to another run "
                             "than run.json")
        try:  # a checkpoint is data: anything in it that does not fit this run is refused
            _check_run_state(state, run)
            with warnings.catch_warnings():  # torch's, about what it is refused for below
                warnings.simplefilter("ignore")
                run.load_state_dict(state)
            _check_optimizers(run)
            for c in self.callbacks:
                if c.key is not None and c.key in state:
                    c.load_state_dict(state[c.key])
        except _DAMAGED as err:
            raise _damaged(self.path, err) from None

    def on_update(self, run: TrainingRun, rows: list[dict]) -> None:
        if self.interrupt.requested:
            self.save(run)
            raise RunInterrupted(
                f"interrupted after update {run.update} of {run.num_updates}: checkpoint saved "
                f"in {self.path.parent}; continue with: reciprocity train --resume "
                f"{self.path.parent}")
        due = (time.perf_counter() - self.last_save >= self.seconds if self.seconds is not None
               else self.every > 0 and run.update % self.every == 0)
        if due and not run.done:
            self.save(run)
            self.last_save = time.perf_counter()

    def on_end(self, run: TrainingRun) -> None:
        self.save(run)
        if self.interrupt.requested:  # Ctrl-C during the last checkpoint: stop before evaluating
            raise RunInterrupted(
                f"interrupted after the last update: checkpoint saved in {self.path.parent}; "
                f"evaluate with: reciprocity train --resume {self.path.parent}")

    def close(self) -> None:
        self.interrupt.restore()


class _Interrupt:
    """While training: the first Ctrl-C asks the loop to checkpoint and stop after the current
    update; a second one interrupts at once (the last checkpoint stands)."""

    def __init__(self, active: bool):
        self.requested = False
        self.previous = None
        if active and threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGINT, self._handle)

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def restore(self) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)
            self.previous = None


# -- train ----------------------------------------------------------------------------------------
def train(config: TrainConfig, out: str | Path | None = None, *, resume: bool = False,
          overwrite: bool = False, progress: bool = True,
          callbacks: list[Callback] | tuple = ()) -> list[dict]:
    """Run (or resume) training; returns one metrics dict per seed (and writes them to ``out``).

    Args:
        config: the run.
        out: the run folder (None: write nothing).
        resume: continue the run in ``out`` from its checkpoint (``config`` must be the run's:
            see :func:`load_run_config`).
        overwrite: clear ``out`` if it holds another run.
        progress: show a progress bar.
        callbacks: more :class:`Callback` objects, called after the run's own (progress log,
            snapshots, progress bar) and before its checkpoints.

    A finished run resumed is left as it is: its stored metrics are returned. A run stopped by
    Ctrl-C is marked ``interrupted`` in run.json (resume continues it).

    Raises:
        RunInterrupted: on Ctrl-C, after checkpointing the last completed update.
    """
    scenario = config.scenario_data
    folder = None
    if out is not None:
        folder = open_run(out, "train", config.identity_config(), overwrite=overwrite,
                          resume=resume, resumable=True)
        out = folder.path
    elif resume:
        raise ValueError("resume needs the run folder (out)")
    try:
        if resume and folder.previous_status == "complete":  # nothing left to do
            return read_metrics(out, config.seeds)
        run = TrainingRun(config)
        log, snapshots = ProgressLog(out, config.tensorboard), Snapshots(config.eval_budgets)
        hooks = [log, snapshots, *callbacks]
        path = out / "checkpoint.pt" if out is not None and config.save_checkpoint else None
        checkpoints = Checkpoints(path, None if folder is None else folder.identity, run, hooks,
                                  log)
        hooks.append(checkpoints)  # last: it saves what the others have recorded
        try:
            if resume:
                checkpoints.restore(run)
            hooks.insert(-1, ProgressBar(run, progress))
            while not run.done:
                rows = run.step()
                for hook in hooks:
                    hook.on_update(run, rows)
            for hook in hooks:
                hook.on_end(run)
        finally:
            for hook in hooks:
                hook.close()
        wall = run.wall_seconds()
        metrics = evaluate_learner(run.learner, run.env_config, config, scenario.id,
                                   snapshots.tables, progress=progress)
        summary = getattr(run.learner, "seed_summary", None)  # optional (reciprocity.learners)
        for k, m in enumerate(metrics):
            if summary is not None and summary(k):
                m["learner"] = summary(k)
            m.update(rounds=config.rounds, interactions=config.rounds * config.num_envs,
                     updates=run.num_updates, wall_seconds=wall,
                     scenario_hash=scenario.content_hash(),
                     # vectorised CPU kernels round a learner's numbers differently depending on
                     # what else is in the batch; "DEFAULT" (set by the reciprocity command) does
                     # not, which makes a seed's numbers independent of the other seeds, bit for bit
                     cpu_capability=torch.backends.cpu.get_cpu_capability(),
                     run_identity=None if folder is None else folder.identity,
                     **({"warmup": {"rounds": config.warmup, "updates": run.warmup_updates,
                                    "strategy": config.warmup_opponent.to_spec()}}
                        if run.warmup_updates else {}),
                     config={"train": config.to_dict(),
                             "algo": dataclasses.asdict(run.learner_config),
                             "scenario": scenario.to_dict()})
        if out is not None:
            write_metrics(out, metrics)
            plot_learning_curve(out / LEARNING_CURVE, log.rows, config, metrics)
            folder.complete()
        return metrics
    except (RunInterrupted, KeyboardInterrupt):
        if folder is not None:  # resumable from its last checkpoint
            with contextlib.suppress(OSError, ValueError):
                folder.write_manifest("interrupted")
        raise
    finally:
        if folder is not None:
            folder.close()


CHECKPOINT_KEYS = ("identity", "train_config", "scenario", "scenario_hash", "update", "learner",
                   "game", "rngs", "progress", "snapshots", "wall_seconds")


def load_run_config(out: str | Path) -> TrainConfig:
    """The configuration of the training run in ``out``, from its checkpoint: the scenario
    embedded there (not the file it once came from), every option as it was."""
    out = Path(out)
    if not out.is_dir():
        raise ValueError(f"--resume {out}: no such folder")
    path = out / "checkpoint.pt"
    if not path.is_file():
        if (read_manifest(out) or {}).get("status") == "complete":
            raise ValueError(f"--resume {out}: the run is already complete (it kept no "
                             "checkpoint); nothing to resume")
        raise ValueError(f"--resume {out}: no checkpoint.pt (the run stopped before its first "
                         "checkpoint, ran without checkpoints, or this is not a training run)")
    state = load_checkpoint(path, required=CHECKPOINT_KEYS)
    try:  # a checkpoint is data: what it holds is checked as any user's input
        for key in ("scenario", "train_config"):
            if not isinstance(state[key], dict):
                raise ValueError(f"{key} is a {type(state[key]).__name__}, not a mapping")
        scenario = Scenario.from_dict(state["scenario"], source="scenario")
        if scenario.content_hash() != state["scenario_hash"]:
            raise ValueError("the embedded scenario does not match its hash")
        options = dict(state["train_config"])
        options["scenario"] = scenario
        if not isinstance(options.get("seeds"), list | tuple):
            raise ValueError(f"train_config.seeds is {options.get('seeds')!r}, not a list")
        options["seeds"] = tuple(options["seeds"])
        known = {f.name for f in dataclasses.fields(TrainConfig)}
        return TrainConfig(**{k: v for k, v in options.items() if k in known})
    except _DAMAGED as err:
        raise _damaged(path, err) from None


#: What reading a damaged or crafted checkpoint's contents into a run can raise.
_DAMAGED = (AttributeError, IndexError, KeyError, OverflowError, RuntimeError, TypeError,
            ValueError)


def _damaged(path: Path, err: Exception) -> ValueError:
    """One line naming the checkpoint and what does not fit in it."""
    reason = " ".join(str(err).split())[:300]
    if isinstance(err, ValueError):
        return ValueError(f"checkpoint {path}: {reason}")
    return ValueError(f"checkpoint {path} is damaged or not a checkpoint of this run "
                      f"({type(err).__name__}: {reason or 'no detail'})")


def _check_run_state(state: dict, run: TrainingRun) -> None:
    """Refuse (ValueError naming the entry) a checkpoint whose run state is not shaped like
    ``run``'s own (same entries, types, tensor and array shapes and dtypes), or whose update
    count and progress rows disagree."""
    update = state["update"]
    if isinstance(update, bool) or not isinstance(update, int) or \
            not 0 <= update <= run.num_updates:
        raise ValueError(f"update is {update!r}, not a count of updates in 0..{run.num_updates}")
    reference = run.state_dict()
    if update >= run.warmup_updates:
        reference.pop("warmup", None)  # the warm-up's state is kept only during the warm-up
    _check_like(state, reference, "")
    rows, seeds = state["progress"], run.config.seeds
    if not isinstance(rows, list) or len(rows) != update * len(seeds) or not all(
            isinstance(r, dict) and all(isinstance(k, str) and isinstance(v, int | float | str)
                                        for k, v in r.items())
            and isinstance(r.get("rounds"), int) for r in rows):
        raise ValueError(f"progress does not hold {len(seeds)} row(s) of numbers per update for "
                         f"its {update} update(s)")
    tables = [t.shape for t in run.learner.policy.tables()]
    snapshots = state["snapshots"]
    if not isinstance(snapshots, list) or not all(
            isinstance(s, dict) and s.get("rounds") in run.config.eval_budgets
            and isinstance(s.get("wall_seconds"), int | float)
            and [getattr(s.get(k), "shape", None) for k in ("action", "signal")] == tables
            for s in snapshots):
        raise ValueError("snapshots are not policy tables of this run's evaluation budgets")


def _check_optimizers(run: TrainingRun) -> None:
    """The optimizer moments loaded from a checkpoint (which a fresh run has none of to compare
    with) are, per parameter, numbers or tensors of the parameter's shape."""
    learners = [run.learner] + ([] if run.warm is None else [run.warm.learner])
    for learner in learners:
        for name, optimizer in vars(learner).items():
            if not isinstance(optimizer, torch.optim.Optimizer):
                continue
            for group in optimizer.param_groups:
                for k, param in enumerate(group["params"]):
                    moments = optimizer.state.get(param, {})
                    if not isinstance(moments, dict) or not all(
                            (isinstance(v, torch.Tensor) and v.shape in (param.shape, ()))
                            or (isinstance(v, int | float) and not isinstance(v, bool))
                            for v in moments.values()):
                        raise ValueError(f"the learner's {name} state of parameter {k} does not "
                                         "fit the parameter")


def _check_like(value, reference, where: str) -> None:
    """``value`` has the structure of ``reference``: mappings with (at least) its keys, lists of
    its length, tensors and arrays of its shape and dtype, numbers and strings of its kind."""
    def refuse(what: str):
        raise ValueError(f"{where.lstrip('.') or 'the state'} {what}")

    if isinstance(reference, torch.Tensor | np.ndarray):
        kind = type(reference)
        if not isinstance(value, kind) or value.shape != reference.shape or \
                value.dtype != reference.dtype:
            refuse(f"is {_describe(value)}, where this run has {_describe(reference)}")
    elif isinstance(reference, dict):
        if not isinstance(value, dict):
            refuse(f"is {_describe(value)}, not a mapping")
        for key, ref in reference.items():
            if key not in value:
                refuse(f"lacks {key!r}")
            _check_like(value[key], ref, f"{where}.{key}")
    elif isinstance(reference, list | tuple):
        if not isinstance(value, list | tuple) or len(value) != len(reference):
            refuse(f"is {_describe(value)}, where this run has {len(reference)} entries")
        for k, (v, ref) in enumerate(zip(value, reference, strict=True)):
            _check_like(v, ref, f"{where}.{k}")
    elif isinstance(reference, bool | str):
        if not isinstance(value, type(reference)):
            refuse(f"is {_describe(value)}, not a {type(reference).__name__}")
    elif isinstance(reference, int | float):
        allowed = int if isinstance(reference, int) else int | float
        if isinstance(value, bool) or not isinstance(value, allowed):
            refuse(f"is {_describe(value)}, not a number")


def _describe(value) -> str:
    name = type(value).__name__
    article = "an" if name[0] in "aeiou" else "a"
    if isinstance(value, torch.Tensor | np.ndarray):
        return f"{article} {name} of shape {tuple(value.shape)} ({value.dtype})"
    if isinstance(value, list | tuple):
        return f"a list of {len(value)}"
    return f"{article} {name}"


def evaluate_learner(learner, env_config, config: TrainConfig, scenario_id: str,
                     snapshots: dict | None = None, progress: bool = False) -> list[dict]:
    """Evaluate each learner's (stochastic) policy, and its snapshots, by the protocol of
    :mod:`reciprocity.evaluation` (all on the same games, paired with the reference's); with
    ``progress``, bars for the burn-in's model (if not cached) and the evaluation games."""
    if config.eval_burn_in is None:
        burn_in_rounds(env_config, config.resolved_eval_rounds(), progress=progress)
    protocol = protocol_for(env_config, num_envs=config.eval_envs,
                            window=config.resolved_eval_rounds(), burn_in=config.eval_burn_in)
    snapshots = snapshots or {}
    budgets = sorted(snapshots)
    tables = [learner.policy.tables(), *((snapshots[b]["action"], snapshots[b]["signal"])
                                         for b in budgets)]
    action = np.concatenate([a.cpu().numpy() for a, _ in tables]).astype(np.float64)
    signal_ = np.concatenate([s.cpu().numpy() for _, s in tables]).astype(np.float64)
    evaluated = evaluate_tables(env_config, action, signal_, protocol,
                                progress=progress)   # S per table set
    num_seeds = len(config.seeds)
    metrics = []
    for k, seed in enumerate(config.seeds):
        m = {"scenario": scenario_id, "algo": config.algorithm.name, "seed": seed,
             **evaluated[k]}
        if snapshots:
            m["budgets"] = [{"rounds": b, "interactions": b * config.num_envs,
                             "wall_seconds": float(snapshots[b]["wall_seconds"]),
                             **evaluated[(i + 1) * num_seeds + k]}
                            for i, b in enumerate(budgets)]
        metrics.append(m)
    return metrics


def plot_learning_curve(path: str | Path, rows: list[dict], config: TrainConfig,
                        metrics: list[dict] | None = None) -> Path:
    """The learning curve of a run: training payoff per round (mean over a seed's learners and
    games, one point per update: thin) and its moving average over 5 updates (thick) against
    the rounds played per game, one colour per seed (``rows``: the rows of progress.csv). A
    warm-up is shaded up to where it ends (its payoffs are the warm-up game's); b - c (full
    cooperation) is dotted; ``metrics`` put each seed's evaluated long-run payoff at the end."""
    from .report import pyplot, save_figure, smooth

    plt = pyplot()
    scenario = config.scenario_data
    fig, ax = plt.subplots(figsize=(7.5, 4.2), layout="constrained")
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for k, seed in enumerate(config.seeds):
        mine = sorted((r for r in rows if r["seed"] == seed), key=lambda r: r["rounds"])
        x = np.array([r["rounds"] for r in mine], dtype=float)
        y = np.array([r["train_reward_per_round"] for r in mine], dtype=float)
        c = colours[k % len(colours)]
        ax.plot(x, y, color=c, lw=0.7, alpha=0.35)
        ax.plot(x, smooth(y), color=c, lw=1.8, label=f"seed {seed}")
        for m in metrics or ():
            if m["seed"] == seed:
                ax.plot([config.rounds], [m["per_interaction_payoff"]], marker="D", ms=6,
                        color=c, mec="k", ls="none")
    if metrics:
        ax.plot([], [], marker="D", ms=6, color="0.6", mec="k", ls="none",
                label="policy evaluated after training (long run)")
    if config.warmup:
        ax.axvspan(0, config.warmup, color="0.88", zorder=0,
                   label="warm-up (each learner alone; the warm-up game's payoffs)")
        ax.axvline(config.warmup, color="0.4", lw=1)
    full = scenario.benefit - scenario.cost
    ax.axhline(full, color="k", ls=":", lw=1, label=f"b - c = {full:g} (full cooperation)")
    ax.set_xlim(0, config.rounds * 1.03)
    ax.set(xlabel="rounds played per game",
           ylabel="training payoff per round\n(mean over learners and games)")
    ax.set_title(f"{config.algorithm.name} on {scenario.id}: learning curve "
                 f"({config.num_envs} games per seed)", fontsize=10)
    ax.legend(fontsize=8, loc="best", ncol=1 + len(config.seeds) // 6)
    save_figure(fig, path, dpi=110)
    plt.close(fig)
    return Path(path)


def read_metrics(out: Path, seeds) -> list[dict]:
    """The stored metrics of a finished run (:func:`write_metrics`), one per seed."""
    paths = [out / "metrics.json"] if len(seeds) == 1 else \
        [out / f"seed_{s}" / "metrics.json" for s in seeds]
    return [read_json(p, f"--resume {out}") for p in paths]


def write_metrics(out: Path, metrics: list[dict]) -> None:
    """``metrics.json`` (one seed) or ``seed_<s>/metrics.json`` and ``summary.json``."""
    if len(metrics) == 1:
        write_json(out / "metrics.json", metrics[0])
        return
    for m in metrics:
        folder = out / f"seed_{m['seed']}"
        folder.mkdir(exist_ok=True)
        write_json(folder / "metrics.json", m)
    payoff = [m["per_interaction_payoff"] for m in metrics]
    write_json(out / "summary.json", {
        "scenario": metrics[0]["scenario"], "algo": metrics[0]["algo"],
        "seeds": [m["seed"] for m in metrics],
        "scenario_hash": metrics[0]["scenario_hash"],
        "per_interaction_payoff": {"mean": float(np.mean(payoff)), "per_seed": payoff},
    })

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
``stage = together``.

Outputs in ``out`` (a run folder, see :mod:`reciprocity.runfolder`): ``run.json`` (the run's
identity and status), ``metrics.json`` (single seed) or ``seed_<s>/metrics.json`` per seed plus
``summary.json``; ``progress.csv`` (learning curves, rewritten at every checkpoint and at the
end); TensorBoard event files in ``tb/`` when the ``tensorboard`` package is installed (a live
view); ``checkpoint.pt`` (resume with ``resume=True``). Checkpoints embed the fully resolved
scenario and every option, so a run resumes from any directory even if its scenario file has
changed or gone.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from .agents.checks import check_bool, check_int
from .agents.rollout import collect
from .envs.config import BYTES_PER_GAME_SLOT, EnvConfig, check_memory
from .envs.norms import Strategy, parse_strategy
from .envs.scenarios import Scenario, get_scenario
from .envs.vector import VectorGame
from .evaluation import evaluate_tables, ideal_norm, protocol_for
from .runfolder import (
    RunInterrupted,
    load_checkpoint,
    open_run,
    save_checkpoint,
    write_csv,
    write_json,
)

ALGOS = ("rg", "ppo", "reinforce")

#: Checkpoints of a run when ``checkpoint_every`` is None (evenly spaced, plus one at the end).
DEFAULT_CHECKPOINTS = 10

# Memory per element, measured (peak RSS) on many-learners-v0 and rounded up: a rollout per
# (round, game, slot) (public record and learner tensors: ~70 bytes); an update per (round,
# game, focal learner) of PPO / REINFORCE (observations, returns, minibatches: ~750-830 bytes);
# RG's model unroll per (model round, seed, learner, game, slot) (saved for backward: ~90 bytes).
_ROLLOUT_BYTES = 128
_UPDATE_BYTES = 1024
_UNROLL_BYTES = 128


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


def warmup_opponent(env_config: EnvConfig, spec: Any = None) -> Strategy:
    """The strategy that plays the other learner slots during a warm-up: ``spec``, or by
    default the ideal discriminator of the multi-learner reference (DISC acting; assessing by
    the audit norm under a signal audit, else by the background's norm)."""
    if spec is not None:
        return parse_strategy(spec, field="warmup_strategy")
    try:
        norm = ideal_norm(env_config)
    except ValueError:
        raise ValueError("warmup_strategy: the default (DISC assessing by the background's norm) "
                         "needs background agents or an audit norm; name a strategy, e.g. "
                         "warmup_strategy='disc+L6'") from None
    return parse_strategy({"action": "disc", "assess": norm}, field="warmup_strategy")


def warmup_config(env_config: EnvConfig, opponent: Strategy) -> EnvConfig:
    """The warm-up game: the scenario with its first learner slot focal and every other learner
    slot played by ``opponent`` (same institution, background and episode length)."""
    first = int(env_config.focal_slots[0])
    strategies = tuple(opponent if s is None and i != first else s
                       for i, s in enumerate(env_config.strategies))
    return dataclasses.replace(env_config, strategies=strategies)


def check_device(device: Any) -> str:
    """A torch device this build can use, as a string (``"cpu"``, ``"cuda:0"``, ...)."""
    if not isinstance(device, str | torch.device):
        raise ValueError(f"device must be a string such as 'cpu' or 'cuda', got {device!r}")
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise ValueError(f"device: {str(device)!r} is not a torch device (e.g. 'cpu', 'cuda', "
                         "'cuda:1')") from None
    if parsed.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device: {str(device)!r} is not available (this torch build has no "
                         "CUDA or no GPU is visible); use 'cpu'")
    if parsed.type not in ("cpu", "cuda"):
        raise ValueError(f"device: {str(device)!r} is not supported; use 'cpu' or 'cuda'")
    return str(device)


def parse_checkpoint_every(value: Any) -> int | str | None:
    """``None`` (about :data:`DEFAULT_CHECKPOINTS` evenly spaced), an int k >= 0 (every k
    updates; 0: only at the end), or ``"<x>s"`` (every x seconds of training)."""
    if value is None:
        return None
    if isinstance(value, str):
        text = value.strip()
        if text.endswith("s"):
            try:
                seconds = float(text[:-1])
            except ValueError:
                seconds = math.nan
            if not (math.isfinite(seconds) and seconds > 0):
                raise ValueError(f"checkpoint_every: {value!r} is not a positive number of "
                                 "seconds such as '300s'")
            return f"{seconds:g}s"
        if text.isdigit():
            return int(text)
        raise ValueError(f"checkpoint_every must be a number of updates (e.g. 20) or of seconds "
                         f"(e.g. '300s'), got {value!r}")
    return check_int("checkpoint_every", value, minimum=0)


@dataclass
class TrainConfig:
    """A training run."""

    scenario: str | Scenario  # scenario id, path of a scenario file, or a Scenario
    algo: str = "rg"  # "rg", "ppo" or "reinforce"
    seeds: tuple[int, ...] = (0,)  # independent runs, trained together (vectorised)
    rounds: int = 2000  # interaction budget: rounds played in each game (exactly)
    num_envs: int = 16  # games per seed played in lock-step
    eval_envs: int = 256  # evaluation games per learner after training (paired with the
    #                       reference's games when equal to its confirm_envs)
    eval_rounds: int | None = None  # rounds averaged per evaluation game after the burn-in
    #                                 (default: the scenario's max_rounds)
    eval_burn_in: int | None = None  # rounds played before them (default: from the scenario's
    #                                  dynamics, reciprocity.evaluation.burn_in_rounds)
    eval_budgets: tuple[int, ...] = ()  # also evaluate the policies after these many rounds
    algo_config: dict[str, Any] = field(default_factory=dict)  # overrides of the algo defaults
    # checkpoints: None = about DEFAULT_CHECKPOINTS evenly spaced, k = every k updates,
    # "300s" = every 300 seconds, 0 = only at the end (there is always one at the end)
    checkpoint_every: int | str | None = None
    init_policy: str | None = None  # start every learner from this strategy spec (tabular)
    warmup: int = 0  # rounds each learner first trains alone (part of rounds; see module doc)
    warmup_strategy: Any = None  # plays the other learner slots in the warm-up (default: the
    #                              ideal discriminator, DISC + the audit or background norm)
    save_checkpoint: bool = True  # write checkpoint.pt (needed for resume)
    tensorboard: bool = True  # write TensorBoard events to tb/ (if tensorboard is installed)
    device: str = "cpu"  # torch device

    def __post_init__(self):
        algorithm(self.algo)
        self._scenario = get_scenario(self.scenario)
        if self._scenario.num_focal == 0:
            raise ValueError(f"scenario {self._scenario.id!r} has no focal slot: nothing to "
                             "train")
        if isinstance(self.seeds, str) or not isinstance(self.seeds, list | tuple):
            raise ValueError(f"seeds must be a list of integers, got {self.seeds!r}")
        self.seeds = tuple(check_int("seeds", s, minimum=0) for s in self.seeds)
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds must be distinct and non-empty, got {list(self.seeds)}")
        self.rounds = check_int("rounds", self.rounds, minimum=1)
        self.num_envs = check_int("num_envs", self.num_envs, minimum=1)
        # a confidence interval needs two games
        self.eval_envs = check_int("eval_envs", self.eval_envs, minimum=2)
        if self.eval_rounds is not None:
            self.eval_rounds = check_int("eval_rounds", self.eval_rounds, minimum=1)
        if self.eval_burn_in is not None:
            self.eval_burn_in = check_int("eval_burn_in", self.eval_burn_in, minimum=0)
        if isinstance(self.eval_budgets, str) or not isinstance(self.eval_budgets, list | tuple):
            raise ValueError(f"eval_budgets must be a list of rounds, got {self.eval_budgets!r}")
        self.eval_budgets = tuple(sorted(check_int("eval_budgets", b, minimum=1)
                                         for b in self.eval_budgets))
        if any(b > self.rounds for b in self.eval_budgets) or \
                len(set(self.eval_budgets)) != len(self.eval_budgets):
            raise ValueError(f"eval_budgets must be distinct rounds in 1..rounds={self.rounds}, "
                             f"got {list(self.eval_budgets)}")
        if not isinstance(self.algo_config, dict):
            raise ValueError(f"algo_config must be a mapping of hyper-parameters, got "
                             f"{self.algo_config!r}")
        self.checkpoint_every = parse_checkpoint_every(self.checkpoint_every)
        if self.init_policy is not None:
            parse_strategy(self.init_policy, field="init_policy")
        self.warmup = check_int("warmup", self.warmup, minimum=0)
        self._warmup_opponent = self._check_warmup()
        self.save_checkpoint = check_bool("save_checkpoint", self.save_checkpoint)
        self.tensorboard = check_bool("tensorboard", self.tensorboard)
        self.device = check_device(self.device)
        learner_config = self.learner_config()
        if self.init_policy is not None and learner_config.policy != "tabular":
            raise ValueError("init_policy needs the tabular policy (policy='tabular')")
        self._check_budget(learner_config)
        early = [b for b in self.eval_budgets if b <= self.warmup]
        if early:
            raise ValueError(f"eval_budgets {early} fall within the warm-up of {self.warmup} "
                             "rounds (learners are evaluated together): choose budgets after it")
        ends = set(itertools.accumulate(self.collections()))
        off_grid = [b for b in self.eval_budgets if b not in ends]
        if off_grid:
            raise ValueError(f"eval_budgets {off_grid} do not end a collection of "
                             f"rounds_per_update={learner_config.rounds_per_update} rounds: "
                             "choose multiples of it (or the whole budget)")
        self._check_memory(learner_config)

    def _check_warmup(self) -> Strategy | None:
        """The warm-up's opponent strategy (None without a warm-up); named errors."""
        if not self.warmup:
            if self.warmup_strategy is not None:
                raise ValueError("warmup_strategy plays the other learner slots during a "
                                 "warm-up; it needs warmup > 0")
            return None
        if isinstance(self.warmup_strategy, Strategy):  # stored as JSON data
            self.warmup_strategy = self.warmup_strategy.to_spec()
        sid, focal = self._scenario.id, self._scenario.num_focal
        if focal < 2:
            raise ValueError(f"warmup: scenario {sid!r} has a single learner, which always "
                             "trains alone; a warm-up needs several learners")
        if self.warmup >= self.rounds:
            raise ValueError(f"warmup: {self.warmup} rounds leave none of rounds={self.rounds} "
                             "for training together (the warm-up is part of the budget); "
                             "choose warmup < rounds")
        return warmup_opponent(self._scenario.env_config, self.warmup_strategy)

    @property
    def scenario_data(self) -> Scenario:
        """The resolved scenario."""
        return self._scenario

    @property
    def warmup_opponent(self) -> Strategy | None:
        """The strategy playing the other learner slots in the warm-up (None: no warm-up)."""
        return self._warmup_opponent

    def learner_config(self):
        _, config_cls = algorithm(self.algo)
        known = {f.name for f in dataclasses.fields(config_cls)}
        unknown = set(self.algo_config) - known
        if unknown:
            raise ValueError(f"algo_config: unknown {self.algo} hyper-parameter(s) "
                             f"{sorted(unknown)}; known: {sorted(known)}")
        return config_cls(**self.algo_config)

    def collections(self) -> list[int]:
        """Rounds collected before each update: ``rounds_per_update`` each, the last one
        shorter when ``rounds`` is not a multiple of it (the budget is exact). With a warm-up,
        the warm-up's ``warmup`` rounds are split so first (:meth:`warmup_updates` updates),
        then the remaining ``rounds - warmup``."""
        rpu = self.learner_config().rounds_per_update

        def split(rounds: int) -> list[int]:
            full, rest = divmod(rounds, rpu)
            return [rpu] * full + ([rest] if rest else [])

        return split(self.warmup) + split(self.rounds - self.warmup)

    def warmup_updates(self) -> int:
        """Updates of the warm-up (the first ones of :meth:`collections`)."""
        return -(-self.warmup // self.learner_config().rounds_per_update)

    def _check_budget(self, learner_config) -> None:
        if self.algo != "ppo":
            return
        # PPO normalises advantages within a minibatch: one decision has no spread (NaN)
        for length in sorted(set(self.collections())):
            size = 2 * length * self.num_envs // learner_config.num_minibatches
            if size < 2:
                raise ValueError(
                    f"num_minibatches: a collection of {length} round(s) x {self.num_envs} "
                    f"game(s) gives PPO minibatches of {size} decision(s) (2 x rounds x "
                    f"num_envs / num_minibatches); at least 2 are needed: lower "
                    f"num_minibatches or raise num_envs or rounds")

    def _check_memory(self, learner_config) -> None:
        env = self._scenario.env_config
        s, b, n, f = len(self.seeds), self.num_envs, env.num_agents, int(env.focal_slots.size)
        t = learner_config.rounds_per_update
        parts = {
            "num_envs": (f"{s * b} games of {n} agents", s * b * n * BYTES_PER_GAME_SLOT),
            "rounds_per_update": (f"a rollout of {t} rounds x {s * b} games",
                                  t * s * b * (n * _ROLLOUT_BYTES + f * _UPDATE_BYTES)),
            "eval_envs": (f"evaluation on {self.eval_envs} games x {s} seeds",
                          min(s * self.eval_envs, 1 << 17) * n * BYTES_PER_GAME_SLOT),
        }
        if self.warmup:  # every learner alone in its own games
            parts["warmup"] = (f"a warm-up of {s * f * b} games of {n} agents",
                               s * f * b * n * BYTES_PER_GAME_SLOT
                               + t * s * f * b * (n * _ROLLOUT_BYTES + _UPDATE_BYTES))
        if self.algo == "rg":
            h = learner_config.horizon
            parts["horizon"] = (f"RG's model unroll of {h} rounds over {s * b} games",
                                h * s * f * b * n * _UNROLL_BYTES)
        total = sum(nbytes for _, nbytes in parts.values())
        name = max(parts, key=lambda k: parts[k][1])
        check_memory(name, f"{parts[name][0]} (with everything else)", total)

    def to_dict(self) -> dict:
        """The options as JSON data (the scenario by id; its content is stored beside it)."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["scenario"] = self._scenario.id
        out["seeds"] = list(self.seeds)
        out["algo_config"] = dict(self.algo_config)
        out["eval_budgets"] = list(self.eval_budgets)
        return out

    def identity_config(self) -> dict:
        """Everything that determines the results (not the checkpoint cadence or logging)."""
        learner = self.learner_config()
        return {"scenario": self._scenario.to_dict(),
                "scenario_hash": self._scenario.content_hash(),
                "algo": self.algo, "seeds": list(self.seeds), "rounds": self.rounds,
                "num_envs": self.num_envs, "eval_envs": self.eval_envs,
                "eval_rounds": self.resolved_eval_rounds(), "eval_burn_in": self.eval_burn_in,
                "eval_budgets": list(self.eval_budgets),
                "algo_config": dataclasses.asdict(learner), "init_policy": self.init_policy,
                "device": self.device, **self.warmup_identity()}

    def warmup_identity(self) -> dict:
        """The warm-up as part of the run's identity (nothing without one, so that runs
        without a warm-up keep their identity): its rounds and its opponent's tables."""
        if not self.warmup:
            return {}
        return {"warmup": self.warmup, "warmup_strategy": self._warmup_opponent.to_spec()}

    def resolved_eval_rounds(self) -> int:
        return self._scenario.max_rounds if self.eval_rounds is None else self.eval_rounds


class _Progress:
    """progress.csv (rows kept in memory, written atomically at every checkpoint and at the end,
    so the file always matches a checkpoint) and an optional live TensorBoard view."""

    def __init__(self, out: Path | None, rows: list[dict], resume_rounds: int | None,
                 tensorboard: bool):
        self.out = out
        self.rows = list(rows)
        self.writer = None
        if out is not None and tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                return
            # events logged by an interrupted run after its checkpoint are hidden on resume
            purge = None if resume_rounds is None else resume_rounds + 1
            self.writer = SummaryWriter(str(out / "tb"), purge_step=purge)

    def log(self, rows: list[dict]) -> None:
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


def warmup_seed(seed: int, learner: int) -> int:
    """The seed of a warm-up: learner ``learner`` (its index among the focal slots) of run seed
    ``seed`` warms up exactly as a single-learner run of the warm-up game
    (:func:`warmup_config`) with this seed would train (given the same initial policy)."""
    return int(np.random.SeedSequence(seed, spawn_key=(2, learner)).generate_state(1)[0])


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


def _check_finite(learner, logs: dict, per_seed: np.ndarray, seeds, update: int, algo: str):
    """Refuse to continue (and to checkpoint) a learner whose numbers are no longer finite.
    ``seeds``: the run seed of each row of the learner's policy."""
    bad = [name for name, v in logs.items() if not math.isfinite(v)]
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


def train(config: TrainConfig, out: str | Path | None = None, *, resume: bool = False,
          overwrite: bool = False, progress: bool = True) -> list[dict]:
    """Run (or resume) training; returns one metrics dict per seed (and writes them to ``out``).

    Args:
        config: the run.
        out: the run folder (None: write nothing).
        resume: continue the run in ``out`` from its checkpoint (``config`` must be the run's:
            see :func:`load_run_config`).
        overwrite: clear ``out`` if it holds another run.
        progress: show a progress bar.
    Raises:
        RunInterrupted: on Ctrl-C, after checkpointing the last completed update.
    """
    start_time = time.perf_counter()
    scenario = config.scenario_data
    env_config = scenario.env_config
    learner_cls, _ = algorithm(config.algo)
    learner_config = config.learner_config()
    collections = config.collections()
    num_updates, num_seeds, focal = len(collections), len(config.seeds), env_config.focal_slots
    folder = None
    if out is not None:
        folder = open_run(out, "train", config.identity_config(), overwrite=overwrite,
                          resume=resume, resumable=True)
        out = folder.path
    elif resume:
        raise ValueError("resume needs the run folder (out)")
    try:
        # one independent stream per seed for its games and one for its decisions
        game, rngs = _games(env_config, config.seeds, config.num_envs)
        learner = learner_cls(learner_config, env_config, (num_seeds, focal.size),
                              seed=config.seeds, device=config.device)
        if config.init_policy is not None:
            start_policy = parse_strategy(config.init_policy, field="init_policy")
            learner.policy.set_tables(start_policy.action, start_policy.assess)
        warmup_updates = config.warmup_updates()
        warm = _WarmUp(config, learner_cls, learner_config, learner.policy) \
            if warmup_updates else None
        first_update, elapsed_before, rows = 0, 0.0, []
        snapshots: dict[int, dict] = {}  # rounds -> policy tables and wall seconds at that budget
        checkpoint = out / "checkpoint.pt" if out is not None and config.save_checkpoint \
            else None
        if resume:
            if checkpoint is None or not checkpoint.is_file():
                raise ValueError(f"--resume {out}: no checkpoint yet (the run stopped before its "
                                 "first one); start it again with --overwrite")
            state = load_checkpoint(checkpoint, required=_CHECKPOINT_KEYS)
            if state["identity"] != folder.identity:
                raise ValueError(f"--resume {out}: checkpoint.pt belongs to another run than "
                                 "run.json")
            learner.load_state_dict(state["learner"])
            game.load_state_dict(state["game"])
            for rng, rng_state in zip(rngs, state["rngs"], strict=True):
                rng.bit_generator.state = rng_state
            first_update, elapsed_before = state["update"], state["wall_seconds"]
            if first_update < warmup_updates:
                if not isinstance(state.get("warmup"), dict):
                    raise ValueError(f"checkpoint {checkpoint} lacks the warm-up's state")
                warm.load_state_dict(state["warmup"])
            else:
                warm = None
            rows = state["progress"]
            snapshots = {int(s["rounds"]): s for s in state["snapshots"]}
        log = _Progress(out, rows, sum(collections[:first_update]) if resume else None,
                        config.tensorboard)

        def save(update: int) -> None:
            # checkpoint first: progress.csv is then never ahead of it (a resume rewrites it)
            if checkpoint is not None:
                save_checkpoint(checkpoint, {
                    "identity": folder.identity, "train_config": config.to_dict(),
                    "scenario": scenario.to_dict(), "scenario_hash": scenario.content_hash(),
                    "update": update, "learner": learner.state_dict(),
                    "game": game.state_dict(), "rngs": [r.bit_generator.state for r in rngs],
                    "progress": log.rows, "snapshots": list(snapshots.values()),
                    "wall_seconds": elapsed_before + time.perf_counter() - start_time,
                    **({} if warm is None else {"warmup": warm.state_dict()})})
            log.write()

        every = config.checkpoint_every
        if every is None:
            every = max(1, math.ceil(num_updates / DEFAULT_CHECKPOINTS))
        seconds = float(every[:-1]) if isinstance(every, str) else None
        last_save = time.perf_counter()
        interrupt = _Interrupt(active=checkpoint is not None)
        bar = tqdm(range(first_update, num_updates), initial=first_update, total=num_updates,
                   desc=f"{config.algo} {scenario.id}", disable=not progress, unit="update")
        try:
            for update in bar:
                if update < warmup_updates:  # each learner alone in the warm-up game
                    active, row_seeds = warm.learner, warm.row_seeds
                    rollout = collect(warm.game, active.policy, collections[update], warm.rngs,
                                      warm.rows)
                else:
                    active, row_seeds = learner, config.seeds
                    rollout = collect(game, active.policy, collections[update], rngs, num_seeds)
                logs = {k: float(v) for k, v in active.update(rollout).items()}
                # mean over each seed's learners and games: (S,)
                per_seed = rollout.rewards.mean(dim=(0, 2, 3)).reshape(num_seeds, -1) \
                    .mean(dim=1).cpu().numpy()
                _check_finite(active, logs, per_seed, row_seeds, update + 1, config.algo)
                rounds_done = sum(collections[:update + 1])
                stage = {} if not warmup_updates else \
                    {"stage": "warmup" if update < warmup_updates else "together"}
                log.log([{"update": update + 1, "rounds": rounds_done, "seed": s, **stage,
                          "train_reward_per_round": float(r), **logs}
                         for s, r in zip(config.seeds, per_seed, strict=True)])
                if update + 1 == warmup_updates:  # the warm-up is over: all train together
                    warm.finish(learner)
                    warm = None
                bar.set_postfix(reward=f"{per_seed.mean():.3f}")
                if rounds_done in config.eval_budgets:
                    action, signal_ = learner.policy.tables()
                    snapshots[rounds_done] = {
                        "rounds": rounds_done, "action": action.cpu(), "signal": signal_.cpu(),
                        "wall_seconds": elapsed_before + time.perf_counter() - start_time}
                done = update + 1
                if interrupt.requested:
                    save(done)
                    raise RunInterrupted(
                        f"interrupted after update {done} of {num_updates}: checkpoint saved in "
                        f"{out}; continue with: reciprocity train --resume {out}")
                due = (time.perf_counter() - last_save >= seconds if seconds is not None
                       else every > 0 and done % every == 0)
                if due and done < num_updates:
                    save(done)
                    last_save = time.perf_counter()
            save(num_updates)
            if interrupt.requested:  # Ctrl-C during the last checkpoint: stop before evaluating
                raise RunInterrupted(
                    f"interrupted after the last update: checkpoint saved in {out}; evaluate "
                    f"with: reciprocity train --resume {out}")
        finally:
            interrupt.restore()
            bar.close()
            log.close()
        wall = elapsed_before + time.perf_counter() - start_time
        metrics = evaluate_learner(learner, env_config, config, scenario.id, snapshots)
        for m in metrics:
            m.update(rounds=config.rounds, interactions=config.rounds * config.num_envs,
                     updates=num_updates, wall_seconds=wall, scenario_hash=scenario.content_hash(),
                     # vectorised CPU kernels round a learner's numbers differently depending on
                     # what else is in the batch; "DEFAULT" (set by the reciprocity command) does
                     # not, which makes a seed's numbers independent of the other seeds, bit for bit
                     cpu_capability=torch.backends.cpu.get_cpu_capability(),
                     run_identity=None if folder is None else folder.identity,
                     **({"warmup": {"rounds": config.warmup, "updates": warmup_updates,
                                    "strategy": config.warmup_opponent.to_spec()}}
                        if warmup_updates else {}),
                     config={"train": config.to_dict(),
                             "algo": dataclasses.asdict(learner_config),
                             "scenario": scenario.to_dict()})
        if out is not None:
            write_metrics(out, metrics)
            folder.complete()
        return metrics
    finally:
        if folder is not None:
            folder.close()


_CHECKPOINT_KEYS = ("identity", "train_config", "scenario", "scenario_hash", "update", "learner",
                    "game", "rngs", "progress", "snapshots", "wall_seconds")


def load_run_config(out: str | Path) -> TrainConfig:
    """The configuration of the training run in ``out``, from its checkpoint: the scenario
    embedded there (not the file it once came from), every option as it was."""
    out = Path(out)
    if not out.is_dir():
        raise ValueError(f"--resume {out}: no such folder")
    path = out / "checkpoint.pt"
    if not path.is_file():
        raise ValueError(f"--resume {out}: no checkpoint.pt (the run stopped before its first "
                         "checkpoint, ran without checkpoints, or this is not a training run)")
    state = load_checkpoint(path, required=_CHECKPOINT_KEYS)
    scenario = Scenario.from_dict(state["scenario"], source=f"{path} (scenario)")
    if scenario.content_hash() != state["scenario_hash"]:
        raise ValueError(f"{path}: the embedded scenario does not match its hash")
    options = dict(state["train_config"])
    options["scenario"] = scenario
    options["seeds"] = tuple(options["seeds"])
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    return TrainConfig(**{k: v for k, v in options.items() if k in known})


def evaluate_learner(learner, env_config, config: TrainConfig, scenario_id: str,
                     snapshots: dict | None = None) -> list[dict]:
    """Evaluate each learner's (stochastic) policy, and its snapshots, by the protocol of
    :mod:`reciprocity.evaluation` (all on the same games, paired with the reference's)."""
    protocol = protocol_for(env_config, num_envs=config.eval_envs,
                            window=config.resolved_eval_rounds(), burn_in=config.eval_burn_in)
    snapshots = snapshots or {}
    budgets = sorted(snapshots)
    tables = [learner.policy.tables(), *((snapshots[b]["action"], snapshots[b]["signal"])
                                         for b in budgets)]
    action = np.concatenate([a.cpu().numpy() for a, _ in tables]).astype(np.float64)
    signal_ = np.concatenate([s.cpu().numpy() for _, s in tables]).astype(np.float64)
    evaluated = evaluate_tables(env_config, action, signal_, protocol)   # S per table set
    num_seeds = len(config.seeds)
    metrics = []
    for k, seed in enumerate(config.seeds):
        m = {"scenario": scenario_id, "algo": config.algo, "seed": seed, **evaluated[k]}
        if snapshots:
            m["budgets"] = [{"rounds": b, "interactions": b * config.num_envs,
                             "wall_seconds": float(snapshots[b]["wall_seconds"]),
                             **evaluated[(i + 1) * num_seeds + k]}
                            for i, b in enumerate(budgets)]
        metrics.append(m)
    return metrics


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

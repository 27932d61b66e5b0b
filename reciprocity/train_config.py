"""The options of a training run (:class:`TrainConfig`): data, validated at construction.

Every option is checked when the config is built — a bad value is a ``ValueError`` naming it,
before any folder is touched or any game is played — including what the learner's algorithm
refuses (:meth:`reciprocity.learners.Algorithm.check_run`) and whether the run fits in memory
(:func:`check_memory_budget`). The budget schedule (:func:`budget_schedule`: rounds collected
before each update) and the run's identity (:meth:`TrainConfig.identity_config`: everything that
determines its results) are derived from the options. The loop that trains is
:mod:`reciprocity.train`.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from dataclasses import dataclass, field
from typing import Any

import torch

from .agents.checks import check_bool, check_int, check_real
from .envs.config import BYTES_PER_GAME_SLOT, EnvConfig, check_memory, check_work
from .envs.norms import Strategy, parse_strategy
from .envs.scenarios import Scenario, get_scenario
from .evaluation import evaluation_size, ideal_norm
from .learners import SHIPPED, Algorithm, get_algorithm, register
from .locate import is_locator

__all__ = ["TrainConfig", "budget_schedule", "check_device", "check_memory_budget",
           "check_study_size",
           "parse_checkpoint_every", "warmup_config", "warmup_opponent"]

# Memory per element, measured (peak RSS) on many-learners-v0 and rounded up: a rollout per
# (round, game, slot) (public record and learner tensors: ~70 bytes); an update per (round,
# game, focal learner) of PPO / REINFORCE (observations, returns, minibatches: ~750-830 bytes).
# A learner adds its own large allocations (RG: its model unroll) through the registry.
_ROLLOUT_BYTES = 128
_UPDATE_BYTES = 1024
_PROGRESS_BYTES = 2048  # a row of progress.csv per (update, seed), kept in memory and checkpoints


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
    algo: str = "rg"  # an algorithm name (rg, ppo, reinforce, a registered one) or a learner
    #                   class as MODULE:CLASS or path/to/file.py:CLASS (reciprocity.learners)
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
    # how much of it: P = 0.5 + init_mix (P_init - 0.5), P_init its tables clipped to
    # [0.05, 0.95]; 1 = the strategy, 0 = the uniform policy (a basin-of-attraction map)
    init_mix: float = 1.0
    warmup: int = 0  # rounds each learner first trains alone (part of rounds; see module doc)
    warmup_strategy: Any = None  # plays the other learner slots in the warm-up (default: the
    #                              ideal discriminator, DISC + the audit or background norm)
    save_checkpoint: bool = True  # write checkpoint.pt (needed for resume)
    tensorboard: bool = True  # write TensorBoard events to tb/ (if tensorboard is installed)
    device: str = "cpu"  # torch device

    def __post_init__(self):
        self._algorithm = get_algorithm(self.algo)
        if is_locator(self.algo):  # a file path made absolute: the run resumes from anywhere
            self.algo = self._algorithm.locator
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
        self.init_mix = check_real("init_mix", self.init_mix, 0.0, 1.0)
        if self.init_mix != 1.0 and self.init_policy is None:
            raise ValueError("init_mix mixes the uniform policy with init_policy; give "
                             "init_policy too")
        self.warmup = check_int("warmup", self.warmup, minimum=0)
        self._warmup_opponent = self._check_warmup()
        self.save_checkpoint = check_bool("save_checkpoint", self.save_checkpoint)
        self.tensorboard = check_bool("tensorboard", self.tensorboard)
        self.device = check_device(self.device)
        learner_config = self.learner_config()
        policy = self._algorithm.policy_class(learner_config)
        if policy not in self._algorithm.policy_classes:
            raise ValueError(f"policy: {self._algorithm.name} has no {policy!r} policy class; "
                             f"it has {list(self._algorithm.policy_classes)}")
        if self.init_policy is not None and policy != "tabular":
            raise ValueError("init_policy needs the tabular policy (policy='tabular')")
        if getattr(learner_config, "share_policy", False) and self.warmup:
            raise ValueError("share_policy: a warm-up trains every learner alone, so it cannot "
                             "end in one shared policy; use share_policy without --warmup")
        # before the schedule is built (one entry per update) and anything is played
        check_memory_budget(self, learner_config)
        self._algorithm.check_run(learner_config, self.collections(), self.num_envs)
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

    def __reduce__(self):
        # rebuilt (and validated) from its options where it is unpickled: a worker process
        # resolves the algorithm from its name or locator and gets the resolved scenario; a
        # learner registered in this process travels as its class (pickled by reference), so
        # that a worker started afresh (spawn, Ray) registers it too
        options = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        options["scenario"] = self._scenario
        registered = self._algorithm.locator == self._algorithm.name and \
            self._algorithm.name not in SHIPPED
        return (_rebuild_train_config,
                (options, self._algorithm.learner if registered else None))

    @property
    def algorithm(self) -> Algorithm:
        """The resolved algorithm (reciprocity.learners)."""
        return self._algorithm

    @property
    def warmup_opponent(self) -> Strategy | None:
        """The strategy playing the other learner slots in the warm-up (None: no warm-up)."""
        return self._warmup_opponent

    def learner_config(self):
        """The algorithm's config: its defaults with ``algo_config`` on top."""
        return self._algorithm.make_config(self.algo_config)

    def collections(self) -> list[int]:
        """Rounds collected before each update (:func:`budget_schedule`)."""
        return budget_schedule(self.rounds, self.warmup,
                               self.learner_config().rounds_per_update)

    def warmup_updates(self) -> int:
        """Updates of the warm-up (the first ones of :meth:`collections`)."""
        return -(-self.warmup // self.learner_config().rounds_per_update)

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
        algo_config = dataclasses.asdict(learner)
        # a field added later, at its identity default, keeps the identity runs had before it
        for key, default in getattr(learner, "identity_defaults", {}).items():
            if key in algo_config and algo_config[key] == default:
                del algo_config[key]
        return {"scenario": self._scenario.to_dict(),
                "scenario_hash": self._scenario.content_hash(),
                "algo": self.algo, "seeds": list(self.seeds), "rounds": self.rounds,
                "num_envs": self.num_envs, "eval_envs": self.eval_envs,
                "eval_rounds": self.resolved_eval_rounds(), "eval_burn_in": self.eval_burn_in,
                "eval_budgets": list(self.eval_budgets),
                "algo_config": algo_config, "init_policy": self.init_policy,
                # a full start keeps the identity runs had before init_mix existed
                **({"init_mix": self.init_mix} if self.init_mix != 1.0 else {}),
                "device": self.device, **self.warmup_identity()}

    def warmup_identity(self) -> dict:
        """The warm-up as part of the run's identity (nothing without one, so that runs
        without a warm-up keep their identity): its rounds and its opponent's tables."""
        if not self.warmup:
            return {}
        return {"warmup": self.warmup, "warmup_strategy": self._warmup_opponent.to_spec()}

    def resolved_eval_rounds(self) -> int:
        return self._scenario.max_rounds if self.eval_rounds is None else self.eval_rounds


def _rebuild_train_config(options: dict, learner: type | None = None) -> TrainConfig:
    if learner is not None:
        register(learner)
    return TrainConfig(**options)


def budget_schedule(rounds: int, warmup: int, rounds_per_update: int) -> list[int]:
    """Rounds collected before each update: ``rounds_per_update`` each, the last one shorter
    when the budget is not a multiple of it (the budget is exact). With a warm-up, its
    ``warmup`` rounds are split so first, then the remaining ``rounds - warmup``."""
    def split(total: int) -> list[int]:
        full, rest = divmod(total, rounds_per_update)
        return [rounds_per_update] * full + ([rest] if rest else [])

    return split(warmup) + split(rounds - warmup)


def check_memory_budget(config: TrainConfig, learner_config) -> None:
    """Refuse a run whose estimated memory does not fit, or which would not finish (naming the
    option that weighs most): its games, a rollout, the progress kept per update, a warm-up,
    what its learner declares, and the evaluation after training (every seed's policy and
    snapshots on ``eval_envs`` games of burn-in + ``eval_rounds`` rounds, and one episode; the
    burn-in model when ``eval_burn_in`` is not given)."""
    env = config._scenario.env_config
    s, b, n, f = len(config.seeds), config.num_envs, env.num_agents, int(env.focal_slots.size)
    t = learner_config.rounds_per_update
    updates = -(-config.warmup // t) + -(-(config.rounds - config.warmup) // t)
    window = config.resolved_eval_rounds()
    evaluation, (cause, evaluation_work) = evaluation_size(
        env, candidates=s * (1 + len(config.eval_budgets)), num_envs=config.eval_envs,
        window=window, burn_in=config.eval_burn_in)
    scenario_rounds = "max_rounds (the scenario's; or give eval_rounds)"
    names = {"games": "eval_envs", "episode": "max_rounds (the scenario's)",
             "window": "eval_rounds" if config.eval_rounds is not None else scenario_rounds,
             "burn_in": "eval_burn_in" if config.eval_burn_in is not None else
             "eval_rounds" if config.eval_rounds is not None else scenario_rounds}
    parts = {
        "num_envs": (f"{s * b} games of {n} agents", s * b * n * BYTES_PER_GAME_SLOT),
        "rounds_per_update": (f"a rollout of {t} rounds x {s * b} games",
                              t * s * b * (n * _ROLLOUT_BYTES + f * _UPDATE_BYTES)),
        "rounds": (f"the progress of {updates} updates x {s} seeds",
                   updates * s * _PROGRESS_BYTES),
        **{names[cause]: part for cause, part in evaluation.items()},
    }
    if config.warmup:  # every learner alone in its own games
        parts["warmup"] = (f"a warm-up of {s * f * b} games of {n} agents",
                           s * f * b * n * BYTES_PER_GAME_SLOT
                           + t * s * f * b * (n * _ROLLOUT_BYTES + _UPDATE_BYTES))
    parts.update(config._algorithm.memory_parts(learner_config, s, b, env))
    total = sum(nbytes for _, nbytes in parts.values())
    name = max(parts, key=lambda k: parts[k][1])
    check_memory(name, f"{parts[name][0]} (with everything else)", total)
    training = config.rounds * s * b * n * (1 + f * (1 + int(config.warmup > 0)))
    check_work("rounds" if training >= evaluation_work else names[cause],
               "training and evaluating", training + evaluation_work)


def check_study_size(scenarios, *, seeds: int, num_envs: int, rounds: int, eval_envs: int,
                     where: str = "") -> None:
    """Refuse the runs of a study (``seeds`` seeds x ``num_envs`` games for ``rounds`` rounds
    on each scenario, evaluated on ``eval_envs`` games) that could not fit in memory or finish,
    naming the option (``where`` + its name: ``seeds``, ``num_envs``, ``rounds``,
    ``eval_envs``), before anything runs and before its seeds are even listed. Each run's own
    estimate (:func:`check_memory_budget`) applies as it is built."""
    counts = {"seeds": seeds, "num_envs": num_envs, "rounds": rounds, "eval_envs": eval_envs}
    for name, value in counts.items():
        check_int(where + name, value, minimum=1)
    envs = [get_scenario(s).env_config for s in scenarios]
    n = max((e.num_agents for e in envs), default=0)
    f = max((int(e.focal_slots.size) for e in envs), default=0)
    episode = max((e.max_rounds for e in envs), default=0)
    parts = {"num_envs": seeds * num_envs * n * BYTES_PER_GAME_SLOT,  # the games
             "rounds": rounds * seeds * _PROGRESS_BYTES,  # at most one row per round and seed
             "eval_envs": seeds * eval_envs * (n * BYTES_PER_GAME_SLOT + 16 * f)}
    name = max(parts, key=parts.get)
    name = "seeds" if seeds >= counts[name] else name
    check_memory(where + name, f"runs of {seeds} seeds x {num_envs} games of {n} agents, "
                 f"evaluated on {eval_envs} games", sum(parts.values()))
    work = seeds * n * (num_envs * rounds * (1 + f) + eval_envs * (episode + 4000))
    check_work(where + max(("seeds", "num_envs", "rounds", "eval_envs"), key=counts.get),
               "a run of the study", work)

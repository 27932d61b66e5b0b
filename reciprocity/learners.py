"""The learner interface and the registry: an algorithm is declared once, on its learner class.

**The interface** (:class:`Learner`). A learner class trains ``batch_shape = (S, F)``
independent learners at once — S seeds x F focal slots — and has

* ``__init__(config, env_config, batch_shape, seed=0, device="cpu")``: ``config`` an instance of
  its config dataclass, ``env_config`` the scenario's :class:`~reciprocity.envs.config.EnvConfig`
  (a learner may read N, the focal slots and the public rules, never the background strategies),
  ``seed`` an int or one seed per seed row (row s must then start as it would alone);
* ``policy``: the object that acts. Its ``tables()`` returns the detached probability tables
  (action (S, F, 4) P(C | 2x + y), signal (S, F, 8) P(Good | 4x + 2y + a)) that
  :func:`~reciprocity.agents.rollout.collect` samples from and the evaluation protocol scores.
  :class:`~reciprocity.agents.policy.ReputationPolicy` (tabular or MLP) is one; a learner with a
  policy over observations gets its tables by evaluating it on the 12 context observations
  (:func:`~reciprocity.agents.policy.context_observations`). ``set_tables(action, signal)`` is
  needed for ``--init`` (start from a strategy) and ``state_dict`` / ``load_state_dict`` of the
  policy for the warm-up (it carries the policy over to the joint stage);
* ``update(rollout) -> dict[str, float]``: learn from a
  :class:`~reciprocity.agents.rollout.Rollout` (rounds of every learner's games and the public
  record), return metrics (names like ``"algo/what"``; logged to progress.csv);
* ``state_dict()`` / ``load_state_dict(state)``: everything needed to resume exactly (tensors and
  plain data: checkpoints load with ``weights_only=True``);
* ``seed_summary(row) -> dict`` (optional): what seed row ``row``'s learners add to their run's
  metrics.json under ``learner`` (RG: its learned world model's estimates).

``update`` returns numbers, or one number per seed row (a sequence of length S) where seeds
differ: progress.csv then holds each seed's own value.

**The declaration** (class attributes, read by :func:`declare`):

* ``name``: the algorithm's name in commands, tables and figures (required);
* ``config_class``: a dataclass of hyper-parameters with defaults, validating itself in
  ``__post_init__``; it must have ``rounds_per_update`` (rounds played between updates) and may
  have ``policy`` (the policy class, ``"tabular"`` or ``"mlp"``) (required);
* ``policy_classes``: the policy classes it supports (default ``("tabular",)``);
* ``tuning_space``: hyper-parameter -> values searched by ``reciprocity tune``, or ->
  ``{policy class: values}`` where they differ per class (a class left out does not search it)
  (default: no search, the defaults);
* ``colour``: its colour in figures (default: one from a palette, by name);
* ``tuned_like`` (optional): the name of an algorithm whose tuned configuration a study takes
  (for the hyper-parameters the two share) where the tuning has none of this one's (rg-la:
  RG's, since the tuning's single-learner scenarios cannot tune its lookahead);
* ``sample_based``: whether it learns from sampled returns only — the learners the collapse
  claim of the claim map is about (default False);
* ``relative_cost(config, num_agents) -> float`` (static or class method, optional): the cost of
  one round of one learner's update relative to one agent's step in one game, to start long jobs
  first;
* ``check_run(config, collections, num_envs)`` (optional): refuse a run it cannot train (a
  ``ValueError`` naming the option), given the rounds of every collection;
* ``memory_parts(config, num_seeds, num_envs, env_config) -> dict`` (optional): its own large
  allocations, ``{option: (description, bytes)}``, added to the run's memory estimate.

**The registry.** The shipped algorithms (``rg``, ``ppo``, ``reinforce``, which every study
compares by default, and ``rg-la``, the learning-aware RG, and ``rg-kant``, RG with a Kantian
start, which the studies of several learners add), those registered with :func:`register`,
and those of installed packages (the entry-point group ``reciprocity.learners``, each entry a
learner class) are known by name. Anywhere an algorithm
name is accepted, a locator works too: ``MODULE:CLASS`` (a module on the Python path) or
``path/to/file.py:CLASS`` — the class is loaded and declared on the spot (see
:mod:`reciprocity.locate`). A process pool forked from the process that registered a learner
knows it; a Ray worker or any fresh process only knows what it can load, so give a locator (or
an entry point) when a study runs on Ray.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any, ClassVar, Protocol, runtime_checkable

from .locate import canonical, is_locator, load_object

__all__ = ["BUILTIN", "ENTRY_POINT_GROUP", "LEARNING_RATES", "POLICY_CLASSES",
           "ROUNDS_PER_UPDATE", "SHIPPED", "Algorithm", "Learner", "algorithm_names", "colour",
           "declare", "get_algorithm", "lookup", "rank", "register", "sample_based"]

#: Policy classes of :class:`~reciprocity.agents.policy.ReputationPolicy`.
POLICY_CLASSES = ("tabular", "mlp")
#: Adam step sizes the built-in learners search, per policy class (an MLP needs smaller steps).
LEARNING_RATES = {"tabular": (0.01, 0.03, 0.1, 0.3, 1.0), "mlp": (0.001, 0.003, 0.01, 0.03, 0.1)}
#: Rounds per update the built-in learners search (a tuning keeps those dividing every budget).
ROUNDS_PER_UPDATE = (5, 10, 25, 50)
#: The built-in algorithms every study compares by default, in the order of tables and figures.
BUILTIN = {"rg": "reciprocity.agents.rg:ReciprocityGradient",
           "ppo": "reciprocity.baselines.ppo:PPO",
           "reinforce": "reciprocity.baselines.reinforce:Reinforce"}
#: Every learner the package ships, known by name: :data:`BUILTIN`, then those a study adds where
#: they are the question (where several learners learn together: rg-la, the learning-aware RG;
#: rg-kant, RG with a Kantian start).
SHIPPED = {**BUILTIN, "rg-la": "reciprocity.agents.rg_la:LearningAwareRG",
           "rg-kant": "reciprocity.agents.rg_kant:KantianRG"}
ENTRY_POINT_GROUP = "reciprocity.learners"
#: Colours of algorithms that declare none (picked by name, stable across runs).
PALETTE = ("tab:purple", "tab:brown", "tab:pink", "tab:olive", "tab:cyan", "tab:red",
           "tab:gray")


@runtime_checkable
class Learner(Protocol):
    """What every learner implements (see the module docstring)."""

    name: ClassVar[str]
    config_class: ClassVar[type]
    policy: Any

    def update(self, rollout) -> dict[str, float]: ...

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...


@dataclass(frozen=True)
class Algorithm:
    """A declared algorithm: what the studies, the CLI and the figures read."""

    name: str
    learner: type
    config: type
    policy_classes: tuple[str, ...]
    tuning: Mapping[str, Any]
    colour: str
    sample_based: bool
    locator: str
    """what a worker process names to find it: the name, or a MODULE:CLASS / FILE.py:CLASS"""
    order: int
    """its rank in tables (built-ins first, in :data:`BUILTIN` order)"""

    def defaults(self):
        """The config with every default."""
        return self.config()

    def make_config(self, params: Mapping[str, Any] | None = None):
        """The config with ``params`` overriding the defaults; unknown names are refused."""
        params = dict(params or {})
        known = [f.name for f in dataclasses.fields(self.config)]
        unknown = sorted(set(params) - set(known))
        if unknown:
            raise ValueError(f"algo_config: unknown {self.name} hyper-parameter(s) {unknown}; "
                             f"known: {sorted(known)}")
        return self.config(**params)

    def policy_class(self, config) -> str:
        """The policy class a config selects (``"tabular"`` when it has no ``policy``)."""
        return getattr(config, "policy", "tabular")

    def search_space(self, policy: str, *, rounds_per_update=None) -> dict[str, tuple]:
        """Hyper-parameter -> values searched for one policy class; ``rounds_per_update``
        (if given) restricts that hyper-parameter to the values it allows."""
        if policy not in self.policy_classes:
            raise ValueError(f"{self.name} has no {policy!r} policy class; it has "
                             f"{list(self.policy_classes)}")
        space = {}
        for name, values in self.tuning.items():
            if isinstance(values, Mapping):
                if policy not in values:  # not searched for this policy class
                    continue
                values = values[policy]
            if name == "rounds_per_update" and rounds_per_update is not None:
                values = tuple(v for v in values if v in rounds_per_update)
            space[name] = tuple(values)
        return space

    def search_key(self) -> int:
        """A stable integer of the algorithm, to seed the draw of its tuning candidates."""
        if self.order < len(SHIPPED):
            return self.order
        return int(hashlib.sha256(self.name.encode()).hexdigest()[:8], 16)

    def relative_cost(self, config, num_agents: int) -> float:
        """Cost of one round of one learner's update, in agent-steps of one game (a guess for
        scheduling: 1 when the learner declares nothing)."""
        hook = getattr(self.learner, "relative_cost", None)
        cost = 1.0 if hook is None else float(hook(config, num_agents))
        return cost * (1.5 if self.policy_class(config) == "mlp" else 1.0)

    def check_run(self, config, collections: list[int], num_envs: int) -> None:
        hook = getattr(self.learner, "check_run", None)
        if hook is not None:
            hook(config, collections, num_envs)

    def memory_parts(self, config, num_seeds: int, num_envs: int, env_config) -> dict:
        hook = getattr(self.learner, "memory_parts", None)
        return {} if hook is None else dict(hook(config, num_seeds, num_envs, env_config))


def _require(cls, attribute: str, test: Callable[[Any], bool], what: str, where: str):
    value = getattr(cls, attribute, None)
    if value is None or not test(value):
        raise ValueError(f"{where}: a learner class must declare {attribute} ({what}); see "
                         "reciprocity.learners")
    return value


def declare(cls, *, locator: str | None = None, order: int | None = None) -> Algorithm:
    """The :class:`Algorithm` a learner class declares (checked, with named errors)."""
    where = f"learner {getattr(cls, '__qualname__', cls)!r}"
    if not isinstance(cls, type):
        raise ValueError(f"{where}: expected a learner class, got {type(cls).__name__}")
    name = _require(cls, "name", lambda v: isinstance(v, str) and v.strip() == v and v
                    and ":" not in v and "/" not in v, "a non-empty string without ':' or '/'",
                    where)
    config = _require(cls, "config_class", dataclasses.is_dataclass,
                      "a dataclass of hyper-parameters", where)
    for method in ("update", "state_dict", "load_state_dict"):
        if not callable(getattr(cls, method, None)):
            raise ValueError(f"{where}: a learner class must define {method}(); see "
                             "reciprocity.learners")
    try:
        defaults = config()
    except Exception as err:
        raise ValueError(f"{where}: its config_class {config.__name__} must build with "
                         f"defaults alone ({type(err).__name__}: {err})") from None
    if not isinstance(getattr(defaults, "rounds_per_update", None), int):
        raise ValueError(f"{where}: its config_class {config.__name__} needs an integer "
                         "rounds_per_update (rounds played between two updates)")
    policies = tuple(getattr(cls, "policy_classes", ("tabular",)))
    if not policies or any(p not in POLICY_CLASSES for p in policies):
        raise ValueError(f"{where}: policy_classes must be among {list(POLICY_CLASSES)}, got "
                         f"{list(policies)}")
    fields = {f.name for f in dataclasses.fields(config)}
    tuning = dict(getattr(cls, "tuning_space", None) or {})
    for key, values in tuning.items():
        if key not in fields:
            raise ValueError(f"{where}: tuning_space names {key!r}, which {config.__name__} "
                             f"does not have; it has {sorted(fields)}")
        per_policy = values if isinstance(values, Mapping) else {p: values for p in policies}
        for policy, chosen in per_policy.items():
            if policy not in policies or not chosen:
                raise ValueError(f"{where}: tuning_space[{key!r}] must give values for policy "
                                 f"classes among {list(policies)}, got {policy!r}: {chosen!r}")
    colour = getattr(cls, "colour", None) or \
        PALETTE[int(hashlib.sha256(name.encode()).hexdigest()[:8], 16) % len(PALETTE)]
    return Algorithm(name=name, learner=cls, config=config, policy_classes=policies,
                     tuning=tuning, colour=colour,
                     sample_based=bool(getattr(cls, "sample_based", False)),
                     locator=locator or name,
                     order=len(SHIPPED) + len(_registered) if order is None else order)


_registered: dict[str, Algorithm] = {}   # name -> algorithm (built-ins loaded on first use)
_loaded: dict[str, Algorithm] = {}       # locator -> algorithm


def register(cls) -> type:
    """Register a learner class under its declared name (usable as a class decorator).
    Registering the same class again is a no-op, a class of the same module and name defined
    anew replaces it (a notebook cell run twice); another class under a taken name is
    refused."""
    _builtins()
    algorithm = declare(cls)
    taken = _registered.get(algorithm.name)
    if taken is not None:
        if taken.learner is cls:
            return cls
        if _qualified(taken.learner) != _qualified(cls) or taken.order < len(SHIPPED):
            raise ValueError(f"algo: the name {algorithm.name!r} is taken by "
                             f"{_qualified(taken.learner)}")
        # the same class defined again (a notebook cell run twice): the new one replaces it
        algorithm = dataclasses.replace(algorithm, order=taken.order)
    _registered[algorithm.name] = algorithm
    return cls


def _qualified(cls) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _builtins() -> None:
    for k, (name, locator) in enumerate(SHIPPED.items()):
        if name not in _registered:
            _registered[name] = declare(load_object(locator, "algo"), order=k)


def _entry_points() -> dict[str, Any]:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def algorithm_names() -> tuple[str, ...]:
    """Every algorithm known by name: the built-ins, the registered ones, installed packages'."""
    _builtins()
    return tuple(dict.fromkeys([*_registered, *sorted(_entry_points())]))


def get_algorithm(algo: str | type | Algorithm) -> Algorithm:
    """The algorithm a name, a locator (``MODULE:CLASS``, ``FILE.py:CLASS``) or a learner class
    stands for. Errors are ``ValueError`` naming ``algo``."""
    if isinstance(algo, Algorithm):
        return algo
    if isinstance(algo, type):
        register(algo)
        return _registered[algo.name]
    if not isinstance(algo, str):
        raise ValueError(f"algo must be a name or MODULE:CLASS, got {algo!r}")
    _builtins()
    if algo in _registered:
        return _registered[algo]
    if is_locator(algo):
        locator = canonical(algo, "algo")
        if locator not in _loaded:
            algorithm = declare(load_object(locator, "algo"), locator=locator)
            taken = _registered.get(algorithm.name)
            if taken is not None and taken.learner is not algorithm.learner:
                raise ValueError(f"algo: {algo} declares the name {algorithm.name!r}, which is "
                                 f"taken by {_qualified(taken.learner)}")
            _loaded[locator] = taken or algorithm
        return _loaded[locator]
    eps = _entry_points()
    if algo in eps:
        try:
            cls = eps[algo].load()
        except Exception as err:
            raise ValueError(f"algo: the entry point {algo!r} ({eps[algo].value}) failed to "
                             f"load: {type(err).__name__}: {err}") from None
        algorithm = declare(cls, locator=eps[algo].value)
        if algorithm.name != algo:
            raise ValueError(f"algo: the entry point {algo!r} loads a learner named "
                             f"{algorithm.name!r}; the two names must agree")
        _registered[algo] = algorithm
        return algorithm
    raise ValueError(f"algo: unknown algorithm {algo!r}; known: {list(algorithm_names())}, or "
                     "a learner class as MODULE:CLASS or path/to/file.py:CLASS")


def lookup(name: str) -> Algorithm | None:
    """The algorithm of a name in records (registered, or loaded by a locator in this process);
    None if this process does not know it (records may come from elsewhere)."""
    _builtins()
    return _registered.get(name) or next((a for a in _loaded.values() if a.name == name), None)


def rank(name: str) -> tuple:
    """Sort key of an algorithm name in tables: built-ins first, then registration order."""
    algorithm = lookup(name)
    return (math.inf if algorithm is None else algorithm.order, name)


def colour(name: str) -> str:
    """The figure colour of an algorithm name (a palette colour for names not declared here)."""
    algorithm = lookup(name)
    if algorithm is not None:
        return algorithm.colour
    return PALETTE[int(hashlib.sha256(name.encode()).hexdigest()[:8], 16) % len(PALETTE)]


def sample_based(name: str) -> bool:
    """Whether an algorithm name in records is a sample-based learner (unknown names: no)."""
    algorithm = lookup(name)
    return algorithm is not None and algorithm.sample_based

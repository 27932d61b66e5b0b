"""Evaluate a policy trained elsewhere by the evaluation protocol (spec §8, "own policies").

A **policy** here is any function ``FUNC(obs) -> out`` from a batch of PettingZoo observations
to the agent's outputs:

* ``obs``: NumPy float32, shape (n, 5), rows ``[phase, donor_rep, action, recipient_rep,
  own_rep]`` exactly as the environment emits them (``reciprocity.envs.indirect_reciprocity_v0``):
  act phase ``[0, own, 0, recipient, own]``, assess phase ``[1, donor, action, recipient, own]``
  (1 = Good / cooperate);
* ``out``: shape (n,) or (n, 1) — a NumPy array, a list or a torch tensor — the action in
  {0, 1} (1 = cooperate / Good) or its probability. It must be deterministic: a stochastic
  policy returns its probabilities, not sampled actions.

The observation is binary, so a policy is fully described by its outputs on 4 act-phase and
16 assess-phase observations (:func:`policy_tables`): P(C) per action context and P(Good) per
signal context, per own reputation of the observer (the environment's assess observation
carries it; the library's own policies ignore it). Those tables are played exactly on the core,
with every focal slot of the scenario following the same function, by the protocol of a
training run's evaluation (:mod:`reciprocity.evaluation`): long-run payoff after the burn-in,
paired by common random numbers with the reference's confirmation games
(:func:`evaluate_policy`). The result is a run's ``metrics.json`` as far as
:func:`reciprocity.records.build_record` is concerned, so several of them (seeds of a user's
training) make one ``results.json`` record (:func:`record_from_evaluations`) that sits in the
same tables as the library's learners.

When the signals depend on the observer's own reputation, the (2, 8) signal table is played as
it is (each round with the row of the observer's reputation at the start of the round); in the
metrics schema ``policies.<agent>.signal`` is the own-Good row (what the head diagnosis and the
adherence read) and ``signal_by_own_reputation`` holds both rows.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from .envs.scenarios import Scenario, get_scenario
from .envs.vector import observations
from .evaluation import (
    EVALUATION_ENVS,
    check_comparable,
    evaluate_run,
    evaluate_tables,
    protocol_for,
)
from .evaluation import reference as compute_reference
from .locate import load_object
from .records import build_record
from .runfolder import read_json

__all__ = ["OWN_ALGO", "OWN_POLICY_CLASS", "REFERENCE_KEYS", "check_reference", "evaluate_policy",
           "load_policy", "load_reference", "policy_name", "policy_tables",
           "record_from_evaluations"]

#: ``policy_class`` of a results record of policies trained elsewhere.
OWN_POLICY_CLASS = "own"
#: Algorithm name of an evaluation whose function has no usable name (e.g. a lambda).
OWN_ALGO = "own policy"
#: Keys a reference.json must have to score a policy against it.
REFERENCE_KEYS = ("scenario", "scenario_hash", "protocol", "reference_payoff", "policy", "kind",
                  "regime", "decisive_contexts")
#: What an evaluation keeps of the reference it was scored against.
REFERENCE_SUMMARY = ("kind", "reference_payoff", "reference_ci95", "episode_payoff",
                     "episode_ci95", "full_cooperation_payoff", "regime", "burn_in", "rounds",
                     "norm", "policy", "protocol")


def load_policy(locator: str) -> Callable:
    """The function named by ``"path/to/file.py:FUNC"`` or ``"module:FUNC"``.

    Raises ``ValueError`` naming ``--policy`` when the file or module cannot be imported, has
    no such name, or the name is not callable.
    """
    func = load_object(locator, field="--policy")
    if not callable(func):
        raise ValueError(f"--policy: {locator!r} is not a function (it is of type "
                         f"{type(func).__name__}); it must name a function of the observations")
    return func


def policy_name(func: Callable) -> str:
    """The qualified name of a function (``module.qualname``), for records and messages."""
    name = getattr(func, "__qualname__", None) or type(func).__qualname__
    module = getattr(func, "__module__", None)
    return f"{module}.{name}" if module and not module.startswith("reciprocity_user_") else name


def _describe(obs: np.ndarray) -> str:
    """``[1, 1, 0, 1, 0] (assess: donor G, action D, recipient G, own B)``."""
    v = [int(x) for x in obs]
    g = "BG"
    words = (f"act: own {g[v[4]]}, recipient {g[v[3]]}" if v[0] == 0 else
             f"assess: donor {g[v[1]]}, action {'DC'[v[2]]}, recipient {g[v[3]]}, own {g[v[4]]}")
    return f"{v} ({words})"


def _call(func: Callable, obs: np.ndarray, name: str) -> np.ndarray:
    """``func(obs)`` as (n,) float64 in [0, 1], or a one-line ``ValueError`` saying what came
    back for which observation."""
    n = obs.shape[0]
    try:
        out = func(obs.copy())  # a copy: a function that writes into its input changes nothing
    except Exception as err:
        phase = "act" if obs[0, 0] == 0 else "assess"
        message = " ".join(str(err).split())  # one line
        raise ValueError(f"{name} failed on the {n} {phase}-phase observations (shape "
                         f"{obs.shape}): {type(err).__name__}: {message}") from err
    if hasattr(out, "detach") and hasattr(out, "cpu"):  # a torch tensor
        out = out.detach().cpu().numpy()
    try:
        values = np.asarray(out)
    except Exception as err:
        raise ValueError(f"{name} returned a {type(out).__name__}, which is not an array of "
                         f"numbers ({' '.join(str(err).split())})") from None
    if not (np.issubdtype(values.dtype, np.integer) or np.issubdtype(values.dtype, np.floating)
            or values.dtype == bool):
        raise ValueError(f"{name} returned {type(out).__name__} of {values.dtype}, expected "
                         f"numbers (actions in {{0, 1}} or probabilities of 1) of shape ({n},)")
    if values.shape not in ((n,), (n, 1)):
        raise ValueError(f"{name} returned shape {values.shape} for observations of shape "
                         f"{obs.shape}; expected ({n},) or ({n}, 1): one action or probability "
                         "of 1 per observation")
    values = values.reshape(n).astype(np.float64)
    bad = ~np.isfinite(values) | (values < 0) | (values > 1)
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        what = "not a finite number" if not np.isfinite(values[k]) else "outside [0, 1]"
        raise ValueError(f"{name} returned {float(values[k])!r} ({what}) for the observation "
                         f"{_describe(obs[k])}; expected an action in {{0, 1}} or a "
                         "probability of 1")
    return values


def policy_tables(func: Callable, *, name: str | None = None
                  ) -> tuple[np.ndarray, np.ndarray]:
    """The tables of a policy over PettingZoo observations.

    ``func`` is called on the 4 act-phase observations (``[0, x, 0, y, x]``, action context
    ``2x + y``) and on the 16 assess-phase observations (``[1, x, a, y, own]``: 8 signal contexts
    ``4x + 2y + a`` for own = Bad, then own = Good), each batch twice: two different answers
    are refused (a policy must return probabilities, not sampled actions).

    Args:
        func: observations (n, 5) float32 -> actions in {0, 1} or probabilities of 1, shape
            (n,) or (n, 1) (NumPy, list or torch tensor).
        name: how ``func`` is named in errors (default: its qualified name).
    Returns:
        ``(action, signal)``: action (4,) P(C) in index order ``2x + y``; signal P(Good) in index
        order ``4x + 2y + a``, shape (8,) when it does not depend on the observer's own
        reputation, else (2, 8) with rows [own Bad, own Good].
    Raises:
        ValueError: one line naming the observation and what came back (wrong shape, not a
        number, NaN, outside [0, 1], a failure inside ``func``, not deterministic).
    """
    if not callable(func):
        raise ValueError(f"policy: {func!r} is not a function (it is of type "
                         f"{type(func).__name__}); expected a function of the observations")
    name = name or policy_name(func)
    act = observations(np.arange(4), 0, np.arange(4) >> 1)                 # (4, 5)
    assess = observations(np.tile(np.arange(8), 2), 1, np.repeat([0, 1], 8))  # (16, 5)
    tables = []
    for obs in (act, assess):
        first, second = _call(func, obs, name), _call(func, obs, name)
        if not np.array_equal(first, second):
            k = int(np.flatnonzero(first != second)[0])
            raise ValueError(f"{name} is not deterministic: return probabilities, not sampled "
                             f"actions (two calls gave {first[k]:g} and {second[k]:g} for "
                             f"{_describe(obs[k])})")
        tables.append(first)
    action, signal = tables[0], tables[1].reshape(2, 8)
    return action, signal[0] if np.array_equal(signal[0], signal[1]) else signal


def load_reference(source: str | Path | dict, what: str = "--reference") -> dict:
    """A reference as a dict: given as one, or read from a reference.json or a folder holding
    one (a ``ValueError`` naming ``what`` when missing or not a reference)."""
    if isinstance(source, dict):
        missing = [k for k in REFERENCE_KEYS if k not in source]
        if missing:
            raise ValueError(f"{what}: the reference lacks {missing} (not a reference.json)")
        return source
    path = Path(source)
    if not path.exists():
        raise ValueError(f"{what}: no such file or folder {str(path)!r}")
    if path.is_dir():
        path = path / "reference.json"
    return read_json(path, what, required=REFERENCE_KEYS)


def check_reference(scenario: str | Path | Scenario, ref: dict, *,
                    eval_rounds: int | None = None) -> None:
    """Refuse a reference of another scenario (id or contents) or of another long-run window
    than ``eval_rounds`` (a one-line ``ValueError``)."""
    scenario = get_scenario(scenario)
    check_comparable({"scenario": scenario.id, "scenario_hash": scenario.content_hash()}, ref)
    window = ref["protocol"]["window"]
    if eval_rounds is not None and eval_rounds != window:
        raise ValueError(f"the reference's long-run window is {window} rounds, eval_rounds asks "
                         f"for {eval_rounds}: payoffs would not be comparable (leave "
                         f"eval_rounds out, or compute the reference with {eval_rounds} rounds)")


def _algo_name(func: Callable) -> str:
    name = getattr(func, "__name__", "")
    return name if name.isidentifier() else OWN_ALGO


def evaluate_policy(scenario: str | Path | Scenario, policy: Callable | str, *,
                    eval_envs: int | None = None, eval_rounds: int | None = None,
                    reference: str | Path | dict | None = None,
                    progress: bool = False) -> dict:
    """Evaluate a policy over PettingZoo observations on a scenario by the protocol.

    Every focal slot of the scenario follows ``policy``. Its tables (:func:`policy_tables`) are
    played on the core by the protocol of a training run's evaluation
    (:func:`reciprocity.evaluation.evaluate_tables`): ``eval_envs`` games from the scenario's
    initial reputations, a burn-in, then the long-run window, on the games of the reference's
    confirmation stage (common random numbers), and scored against the reference
    (:func:`reciprocity.evaluation.evaluate_run`).

    Args:
        scenario: a scenario id, file or :class:`~reciprocity.envs.scenarios.Scenario`.
        policy: the function, or its locator ``"path/to/file.py:FUNC"`` / ``"module:FUNC"``.
        eval_envs: evaluation games (at least 2; default: the given reference's, else 256, and
            the computed reference then confirms on as many).
        eval_rounds: rounds of the long-run window (default: the given reference's, else the
            scenario's ``max_rounds``).
        reference: the scenario's reference (a dict, a reference.json or a folder holding one,
            for this scenario and protocol); default: computed
            (:func:`reciprocity.evaluation.reference`, exhaustive for one focal slot).
        progress: show a progress bar of the stages.
    Returns:
        The content of evaluation.json: ``scenario``, ``scenario_hash``, ``policy`` (locator or
        qualified name), ``algo``, ``seed`` (0), ``per_interaction_payoff`` (long run, payoff
        per round = per interaction, mean over focal slots) and ``per_interaction_payoff_ci95``
        (over games), ``episode_payoff`` (+ ``_ci95``), ``per_agent_payoff``,
        ``reference_payoff``, ``reference_performance`` (payoff / reference payoff; NaN when
        the reference is <= 0), ``adherence``, ``heads`` (per agent, head diagnosis),
        ``policies`` (metrics schema; ``signal_by_own_reputation`` when the signals depend on
        the observer's reputation), ``tables`` (index order), ``protocol``, ``reference`` (its
        summary), ``evaluation`` (everything :func:`~reciprocity.evaluation.evaluate_run`
        gives), ``config`` and what :func:`reciprocity.records.build_record` reads of a
        training run: ``rounds`` and ``interactions`` (None: not known here), ``wall_seconds``
        (0.0: the training time is not known here; ``evaluation_seconds`` is this call's).
    """
    start = time.perf_counter()
    scenario = get_scenario(scenario)
    env_config = scenario.env_config
    if scenario.num_focal == 0:
        raise ValueError(f"scenario {scenario.id!r} has no focal slot: there is no one for the "
                         "policy to play")
    for option, value in (("eval_envs", eval_envs), ("eval_rounds", eval_rounds)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                  or value < (2 if option == "eval_envs" else 1)):
            raise ValueError(f"{option} must be an integer >= "
                             f"{2 if option == 'eval_envs' else 1}, got {value!r}")
    if isinstance(policy, str):
        label, func = policy, load_policy(policy)
    else:
        if not callable(policy):
            raise ValueError(f"policy: {policy!r} is not a function (it is of type "
                             f"{type(policy).__name__}); expected a function or a locator, "
                             "path/to/file.py:FUNC or module:FUNC")
        label, func = policy_name(policy), policy
    bar = tqdm(total=3, desc="evaluate policy", disable=not progress, unit="stage")
    try:
        bar.set_postfix_str("tables")
        action, signal = policy_tables(func, name=label)
        bar.update()
        if reference is None:
            bar.set_postfix_str("reference")
            ref = compute_reference(scenario, confirm_envs=eval_envs or EVALUATION_ENVS,
                                    rounds=eval_rounds)
        else:
            ref = load_reference(reference)
            check_reference(scenario, ref, eval_rounds=eval_rounds)
        bar.update()
        bar.set_postfix_str("evaluation")
        paired = ref["protocol"]
        protocol = protocol_for(env_config, num_envs=eval_envs or paired["num_envs"],
                                window=paired["window"], burn_in=paired["burn_in"],
                                seed=paired["seed"])
        f = env_config.focal_slots.size
        evaluated = evaluate_tables(env_config, np.tile(action, (1, f, 1)),
                                    np.tile(signal, (1, f) + (1,) * signal.ndim), protocol)[0]
        algo = _algo_name(func)
        metrics = {
            "scenario": scenario.id, "scenario_hash": scenario.content_hash(), "algo": algo,
            "seed": 0, **evaluated, "policy": label,
            "tables": {"action": action.tolist(), "signal": signal.tolist()},
            "rounds": None, "interactions": None, "wall_seconds": 0.0,
            "config": {"algo": {"name": algo, "policy": OWN_POLICY_CLASS, "locator": label},
                       "evaluate": {"eval_envs": protocol.num_envs,
                                    "eval_rounds": protocol.window},
                       "scenario": scenario.to_dict()},
        }
        evaluation = evaluate_run(metrics, ref)  # refuses another game or protocol
        bar.update()
    finally:
        bar.close()
    metrics.update({k: evaluation[k] for k in ("reference_payoff", "reference_performance",
                                               "adherence", "heads")},
                   evaluation=evaluation,
                   reference={"scenario": ref["scenario"], "scenario_hash": ref["scenario_hash"],
                              **{k: ref[k] for k in REFERENCE_SUMMARY if k in ref}},
                   evaluation_seconds=time.perf_counter() - start)
    return metrics


def record_from_evaluations(evaluations: list[dict], reference: dict, *, name: str,
                            budget: int | None = None, interactions: int | None = None,
                            wall_seconds: float | None = None) -> dict:
    """One results.json record from evaluations of policies trained elsewhere.

    Args:
        evaluations: evaluation.json dicts (:func:`evaluate_policy`) of one scenario, one per
            seed of the user's training; seeds that repeat (every evaluation says seed 0) are
            numbered 0, 1, ... in the order given. Not modified.
        reference: the scenario's reference (dict); every evaluation must be comparable with it.
        name: the record's ``algo`` (how the policy is named in tables).
        budget: the training budget in rounds per game, if known; default None.
        interactions: interactions per seed of the training (rounds x games), if known: the
            x position on the sample-efficiency curves, which cannot place the record without
            it (``interactions_per_seed`` None).
        wall_seconds: training wall-clock time per run, if known (default 0.0: unknown).
    Returns:
        The record :func:`reciprocity.records.build_record` makes for the library's learners,
        with ``policy_class`` ``"own"``, ``budget`` and ``locators`` (each seed's policy).
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"name: expected a non-empty string, got {name!r}")
    if not evaluations:
        raise ValueError("evaluations: need at least one evaluation.json")
    required = ("scenario", "scenario_hash", "seed", "per_interaction_payoff", "policies",
                "protocol", "rounds", "interactions", "wall_seconds")
    for k, e in enumerate(evaluations):
        missing = [key for key in required if not isinstance(e, dict) or key not in e]
        if missing:
            raise ValueError(f"evaluations[{k}] lacks {missing} (not an evaluation.json of "
                             "reciprocity evaluate --policy)")
    scenarios = {(e["scenario"], e["scenario_hash"]) for e in evaluations}
    if len(scenarios) > 1:
        raise ValueError(f"evaluations: one record is one scenario, got "
                         f"{sorted(s for s, _ in scenarios)} (or one id with different contents)")
    reference = load_reference(reference, "reference")
    metrics = copy.deepcopy(list(evaluations))  # build_record adds each seed's evaluation
    seeds = [m["seed"] for m in metrics]
    if len(set(seeds)) < len(seeds):
        for k, m in enumerate(metrics):
            m["seed"] = k
    for m in metrics:
        m.setdefault("config", {}).setdefault("algo", {})["policy"] = OWN_POLICY_CLASS
    record = build_record(metrics[0]["scenario"], name, metrics, reference)
    record.update(policy_class=OWN_POLICY_CLASS, budget=budget,
                  locators=[m.get("policy") for m in metrics])
    if interactions is not None:
        record["interactions_per_seed"] = interactions
    if wall_seconds is not None:
        record["wall_seconds"] = float(wall_seconds)
    return record

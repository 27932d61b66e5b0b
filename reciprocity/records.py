"""Results records: one per (scenario, algorithm[, policy class, budget]) over its seeds.

Shared by ``reciprocity benchmark`` and ``reciprocity sweep`` (the ``results.json`` schema).
Every seed is evaluated against the scenario's reference
(:func:`reciprocity.evaluation.evaluate_run`); the record holds the intervals over seeds —
Student t for payoffs, percentile bootstrap for bounded metrics (reference performance,
adherence, shares of seeds) — the head diagnosis of every seed with its learned probabilities,
and the reference's own diagnosis.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .evaluation import HEAD_DIAGNOSES, evaluate_run, head_diagnoses
from .runfolder import write_json
from .stats import interval

__all__ = ["HEADS", "build_record", "regime_group", "seed_heads"]

HEADS = ("action", "signal")


def regime_group(ref: dict) -> str:
    """``"degenerate"``, ``"discriminative"`` (one learner) or ``"multi-learner"``."""
    return "multi-learner" if ref["kind"] == "ideal_discriminator" else ref["regime"]


def seed_heads(evaluation: dict, metrics: dict) -> dict:
    """Per focal agent and head: the diagnosis (``diagnosis``, ``side``) and the learned
    probabilities (``probs``, display-order context keys)."""
    return {agent: {head: {**evaluation["heads"][agent][head],
                           "probs": dict(metrics["policies"][agent][head])}
                    for head in HEADS}
            for agent in metrics["policies"]}


def build_record(scenario: str, algo: str, metrics: list[dict], ref: dict,
                 params: Mapping[str, Any] | None = None,
                 run_dir: Path | None = None) -> dict:
    """One results.json record for (scenario, algorithm) over its seeds; ``params`` are the
    hyper-parameters that differ from the defaults. Adds each seed's evaluation to its metrics
    (and rewrites its metrics.json when ``run_dir`` is given).

    ``heads[head][diagnosis]`` is the share of runs (seeds; with several focal learners, the
    share of learners within each seed) whose head has that diagnosis; ``collapsed[head]`` the
    share whose head is constant where the reference's head is context-sensitive.
    """
    evals = [evaluate_run(m, ref) for m in metrics]
    for m, e in zip(metrics, evals, strict=True):
        m["evaluation"] = e
        if run_dir is not None:
            seed_dir = run_dir / (f"seed_{m['seed']}" if len(metrics) > 1 else "")
            seed_dir.mkdir(parents=True, exist_ok=True)
            write_json(seed_dir / "metrics.json", m)
    reference_heads = head_diagnoses(ref["policy"], ref)
    per_seed = [{"seed": m["seed"], "per_interaction_payoff": m["per_interaction_payoff"],
                 "episode_payoff": m.get("episode_payoff"),
                 "reference_performance": e["reference_performance"],
                 "adherence": e["adherence"], "heads": seed_heads(e, m)}
                for m, e in zip(metrics, evals, strict=True)]

    def share(head: str, test) -> dict:
        return interval([np.mean([test(h[head]) for h in s["heads"].values()])
                         for s in per_seed], bounded=True)

    def collapsed(h: dict, head: str) -> bool:
        return (reference_heads[head]["diagnosis"] == "context-sensitive"
                and h["diagnosis"] == "constant")

    record = {
        "scenario": scenario, "algo": algo,
        "policy_class": metrics[0].get("config", {}).get("algo", {}).get("policy", "tabular"),
        "regime": ref["regime"], "group": regime_group(ref),
        "seeds": [m["seed"] for m in metrics],
        "per_interaction_payoff": interval([m["per_interaction_payoff"] for m in metrics],
                                           bounded=False),
        "reference_payoff": ref["reference_payoff"],
        "reference_kind": ref["kind"],
        "full_cooperation_payoff": ref["full_cooperation_payoff"],
        "reference_performance": interval([e["reference_performance"] for e in evals],
                                          bounded=True),
        "adherence": interval([e["adherence"] for e in evals], bounded=True),
        "heads": {head: {d: share(head, lambda h, d=d: h["diagnosis"] == d)
                         for d in HEAD_DIAGNOSES} for head in HEADS},
        "collapsed": {head: share(head, lambda h, head=head: collapsed(h, head))
                      for head in HEADS},
        "reference_heads": reference_heads,
        "rounds": metrics[0]["rounds"], "interactions_per_seed": metrics[0]["interactions"],
        "wall_seconds": metrics[0]["wall_seconds"],
        "params": dict(params or {}),
        "per_seed": per_seed,
    }
    if all(m.get("episode_payoff") is not None for m in metrics):
        record["episode_payoff"] = interval([m["episode_payoff"] for m in metrics],
                                            bounded=False)
        record["reference_episode_payoff"] = ref.get("episode_payoff")
    if "burn_in" in ref:
        record["burn_in"] = ref["burn_in"]
    return record

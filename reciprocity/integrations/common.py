"""What every integration shares: the observation of each context and the policy read-out.

A trained model of any library is read the same way: feed it the observation of every action
and signal context and report its probability of output 1 (cooperate / Good) in the library's
metrics schema (the ``"policy"`` entry of ``metrics.json``). Plain NumPy: no RL library needed.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..envs import ACTION_CONTEXTS, SIGNAL_CONTEXTS

__all__ = ["context_observations", "context_table"]


def context_observations(own_reputation: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The observations of every context, in display order (``ACTION_CONTEXTS`` /
    ``SIGNAL_CONTEXTS``: G = 1 first).

    Returns ``(act, assess)``: ``act`` has shape ``(4, 5)``, row k is ``[0, x, 0, y, x]`` for
    action context ``ACTION_CONTEXTS[k]`` = (x, y); ``assess`` has shape ``(R, 8, 5)``, row
    ``[r, k]`` is ``[1, x, a, y, own]`` for signal context ``SIGNAL_CONTEXTS[k]`` = (x, y, a).
    The observer's own reputation is not part of a context: with ``own_reputation=None`` both
    values are listed (R = 2, own = 0 then 1), otherwise only the given one (R = 1).
    """
    good = {"G": 1.0, "B": 0.0, "C": 1.0, "D": 0.0}
    act = np.array([[0.0, good[c[0]], 0.0, good[c[1]], good[c[0]]] for c in ACTION_CONTEXTS],
                   dtype=np.float32)
    if own_reputation is None:
        owns = (0.0, 1.0)
    elif own_reputation in (0, 1):
        owns = (float(own_reputation),)
    else:
        raise ValueError(f"own_reputation must be 0, 1 or None, got {own_reputation!r}")
    assess = np.array([[[1.0, good[c[0]], good[c[2]], good[c[1]], own] for c in SIGNAL_CONTEXTS]
                       for own in owns], dtype=np.float32)
    return act, assess


def context_table(prob_one: Callable[[np.ndarray], np.ndarray], *,
                  own_reputation: int | None = None,
                  greedy: bool = False) -> dict[str, dict[str, float]]:
    """A policy's output per context, in the metrics schema.

    ``prob_one`` maps observations (K, 5) float32 to the probability of output 1, (K,).
    Returns ``{"action": {"GG", "GB", "BG", "BB"}, "signal": {"GGC", ..., "BBD"}}``: P(cooperate
    | own x, recipient y) and P(signal Good | donor x, recipient y, action a). Signal
    probabilities average over the observer's own reputation (``own_reputation=None``) or use
    the given one (0 or 1). ``greedy=True`` gives 1.0 where the probability is above 0.5, else 0.
    """
    act, assess = context_observations(own_reputation)
    p_act = np.asarray(prob_one(act), dtype=np.float64).reshape(-1)
    p_sig = np.asarray(prob_one(assess.reshape(-1, 5)), dtype=np.float64)
    p_sig = p_sig.reshape(assess.shape[:2]).mean(axis=0)
    if greedy:
        p_act, p_sig = (p_act > 0.5).astype(float), (p_sig > 0.5).astype(float)
    return {"action": dict(zip(ACTION_CONTEXTS, map(float, p_act), strict=True)),
            "signal": dict(zip(SIGNAL_CONTEXTS, map(float, p_sig), strict=True))}

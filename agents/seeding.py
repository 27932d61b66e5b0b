"""Per-seed randomness of batched learners: a seed's run does not depend on the other seeds.

A learner object trains ``batch_shape = (S, F)`` learners at once, one row per training seed.
Everything random in row s is drawn from seed s alone: its parameter initialisation (here), its
games and decisions (:class:`~reciprocity.envs.vector.VectorGame` with one stream per seed,
:func:`~reciprocity.agents.rollout.collect` with one generator per seed) and any shuffling inside
an update (PPO's minibatches: one generator per seed). So seed s trained alone and seed s
trained inside ``seeds=(..., s, ...)`` give the same numbers, bit for bit.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from numbers import Integral

import torch
from torch import nn

__all__ = ["per_row", "row_seeds"]


def row_seeds(seed: int | Sequence[int], rows: int) -> tuple[int, ...]:
    """One seed per row: a sequence of ``rows`` seeds as given, or an int ``seed`` ->
    ``(seed, seed + 1, ..., seed + rows - 1)``."""
    if isinstance(seed, Integral) and not isinstance(seed, bool):
        return tuple(int(seed) + k for k in range(rows))
    seeds = tuple(seed)
    if len(seeds) != rows or not all(isinstance(s, Integral) and not isinstance(s, bool)
                                     for s in seeds):
        raise ValueError(f"seed must be an integer or {rows} integers (one per seed row of "
                         f"batch_shape), got {seed!r}")
    return tuple(int(s) for s in seeds)


def per_row(factory: Callable[[tuple, int], nn.Module], batch_shape: Sequence[int],
            seeds: Sequence[int]) -> nn.Module:
    """A batched module whose row s starts exactly as ``factory((1, *rest), seeds[s])``.

    ``factory(batch_shape, seed)`` builds a module whose batched parameters and buffers have the
    leading dimension ``batch_shape[0]`` (shared ones, e.g. constant features, do not). The
    module is built once for the whole batch, then every batched tensor's row s is overwritten
    with the same tensor of a one-row module built with ``seeds[s]``.
    """
    batch_shape = tuple(batch_shape)
    module = factory(batch_shape, seeds[0])
    if len(seeds) == 1:
        return module
    singles = [factory((1, *batch_shape[1:]), s).state_dict() for s in seeds]
    with torch.no_grad():
        for name, value in module.state_dict().items():
            rows = [single[name] for single in singles]
            if value.shape[:1] == (len(seeds),) and rows[0].shape == (1, *value.shape[1:]):
                value.copy_(torch.cat(rows))
    return module

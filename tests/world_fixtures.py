"""A learned world model filled as if fitted, for tests of the model with per-learner numbers."""

import numpy as np


def fill_learned_world(world, seed: int = 0, observers: int = 1) -> None:
    """Give a :class:`~reciprocity.agents.world.LearnedWorld` random per-learner estimates:
    b in [2, 4], c in [0.5, 1.5] (exact least squares), every rate from 200 trials."""
    rng = np.random.default_rng(seed)
    moments = world.moments
    moments[..., 0] = moments[..., 2] = 1.0                        # xx = yy = 1, xy = 0
    moments[..., 3] = -rng.uniform(0.5, 1.5, moments.shape[:-1])   # c = -xr
    moments[..., 4] = rng.uniform(2.0, 4.0, moments.shape[:-1])    # b = yr
    for counts in world.counts.values():
        counts[..., 1] = 200.0
        counts[..., 0] = np.round(rng.uniform(0.02, 0.98, counts.shape[:-1]) * 200.0)
    world.observers = observers

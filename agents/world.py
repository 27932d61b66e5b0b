"""What RG's model knows of the game's numbers: given (the oracle) or learned from experience.

RG's differentiable model (:mod:`reciprocity.agents.model`) needs the numbers of the game: the
benefit b and cost c of a donation, the execution error e, the assessment error mu, the update
probability u and, under an institution, the audit rate v and the number of observers k of an
interaction. The *structure* of the game is public (spec §7, §8): who is matched with whom at
random, that signals are assessed by observers, whether an audit exists and by which norm.

* :class:`OracleWorld` hands the model the scenario's true numbers (what RG used to be given).
* :class:`LearnedWorld` estimates every number from what a participant sees (spec §8), per
  learner (seed x focal slot), with a stated uncertainty:

  - b and c from its own payoffs: a round's payoff is ``b y - c x``, x = 1 where its own donation
    was executed as C, y = 1 where its donor's was (both public), so least squares on
    (x, y) -> payoff recovers both exactly once the learner has both given and received, and c
    alone once it has given (b alone once it has received) while the other never happened;
  - e from its own intended actions (private to it) and their executions (public): the share of
    intended C executed as D;
  - mu from its own intended signals and their published versions (public): the share flipped;
  - u from the public record: among the donors whose verdict differed from their reputation (and
    who were not flagged by an audit), the share whose reputation took the verdict;
  - v from the public record's audits (where the scenario has an audit), k from the number of
    published signals per interaction;
  - the matching: the model takes recipients as uniform among the other agents (the public
    structure); the record checks it — ``matching`` is the largest deviation of any donor's
    recipient frequencies from 1 / (N - 1), with the binomial standard deviation of such a
    frequency as its uncertainty (a deviation of a few uncertainties is chance).

  A rate is the posterior mean under a uniform Beta(1, 1) prior and its uncertainty the posterior
  standard deviation; b and c are exact (to the float32 precision of the recorded payoffs) once
  identified (uncertainty 0; until then the prior b = 1, c = 0 with an uncertainty of 1: a
  learner that has never given thinks giving free, which its first donations correct). Counts
  are kept for the whole run (the numbers of a game do not drift).
* :class:`MisspecifiedWorld` is the oracle with chosen numbers multiplied (a study of how much RG
  depends on knowing the game).

A world's :meth:`numbers` are what :meth:`reciprocity.agents.rg.ReciprocityGradient.objective`
uses: plain floats for the oracle (the objective is then exactly the one RG always computed), or
per-learner tensors of shape (S, F).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ..envs.config import EnvConfig

__all__ = ["ESTIMATED", "WORLD_MODELS", "LearnedWorld", "MisspecifiedWorld", "ModelNumbers",
           "OracleWorld", "make_world"]

#: The values of RGConfig.world_model.
WORLD_MODELS = ("oracle", "learned")
#: The numbers a learned world estimates (observers_per_interaction is counted, not estimated).
ESTIMATED = ("benefit", "cost", "execution_error", "assessment_error", "update_probability",
             "signal_audit")


@dataclass(frozen=True)
class ModelNumbers:
    """The numbers of the game as RG's model uses them: floats (one game for all learners) or
    tensors of shape (S, F) (one per learner)."""

    benefit: float | torch.Tensor
    cost: float | torch.Tensor
    execution_error: float | torch.Tensor
    assessment_error: float | torch.Tensor
    update_probability: float | torch.Tensor
    signal_audit: float | torch.Tensor
    observers_per_interaction: int
    audited: bool  # whether the game has an audit (public structure)


class OracleWorld:
    """The scenario's true numbers."""

    def __init__(self, env_config: EnvConfig):
        p = env_config.params
        self._numbers = ModelNumbers(p.benefit, p.cost, p.execution_error, p.assessment_error,
                                     p.update_probability, p.signal_audit,
                                     p.observers_per_interaction, p.signal_audit > 0)

    def update(self, rollout) -> None:
        pass

    def numbers(self, device=None) -> ModelNumbers:
        return self._numbers

    def report(self) -> dict[str, float]:
        return {}

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


class MisspecifiedWorld(OracleWorld):
    """The oracle with some numbers multiplied by factors (rates capped at their range)."""

    def __init__(self, env_config: EnvConfig, factors: dict[str, float]):
        super().__init__(env_config)
        unknown = sorted(set(factors) - set(ESTIMATED))
        if unknown:
            raise ValueError(f"world_factors: unknown number(s) {unknown}; known: "
                             f"{list(ESTIMATED)}")
        values = {}
        for name, factor in factors.items():
            if isinstance(factor, bool) or not isinstance(factor, int | float) or \
                    not math.isfinite(factor) or factor < 0:
                raise ValueError(f"world_factors.{name} must be a number >= 0, got {factor!r}")
            value = getattr(self._numbers, name) * factor
            high = {"assessment_error": 0.5, "execution_error": 0.999}.get(name, 1.0) \
                if name not in ("benefit", "cost") else math.inf
            values[name] = float(min(value, high))
        self._numbers = ModelNumbers(**{**self._numbers.__dict__, **values})


class LearnedWorld:
    """Estimates of the game's numbers for ``batch_shape = (S, F)`` learners (module doc).

    Args:
        env_config: read for the public structure only: N, the focal slots, whether an audit
            exists; none of its numbers.
        batch_shape: (S, F), seeds x focal slots; rollouts come from
            :func:`~reciprocity.agents.rollout.collect` with ``num_seeds = S``.
    """

    def __init__(self, env_config: EnvConfig, batch_shape):
        self.num_seeds, self.num_focal = batch_shape
        self.focal = np.asarray(env_config.focal_slots)
        self.audited = env_config.params.signal_audit > 0
        shape = (self.num_seeds, self.num_focal)
        # least squares of payoff on (x, y): sums of x x, x y, y y, x r, y r
        self.moments = np.zeros((*shape, 5))
        # rates: (successes, trials) per learner
        self.counts = {name: np.zeros((*shape, 2)) for name in
                       ("execution_error", "assessment_error", "update_probability",
                        "signal_audit")}
        self.observers = None
        n = env_config.num_agents
        self.pairs = np.zeros((self.num_seeds, n, n))  # how often donor d gave to recipient r

    # -- counting ------------------------------------------------------------------------------
    def _per_learner(self, values: np.ndarray) -> np.ndarray:
        """(T, G, F) -> (S, F) sums over rounds and each seed's games."""
        t, g, f = values.shape
        return values.reshape(t, self.num_seeds, g // self.num_seeds, f).sum(axis=(0, 2))

    def update(self, rollout) -> None:
        """Count what the rollout shows each learner (its own decisions and payoffs, the public
        record of its games)."""
        pub = rollout.public
        actions = pub["actions"].astype(np.float64)                          # (T, G, N)
        t, g, n = actions.shape
        focal = self.focal
        x = actions[..., focal]                                               # own donation
        donors = np.argsort(pub["recipients"], axis=-1)                       # donor of r
        y = np.take_along_axis(actions, donors, axis=-1)[..., focal]         # received C
        reward = _game_layout(rollout.rewards)                                # (T, G, F)
        for k, term in enumerate((x * x, x * y, y * y, x * reward, y * reward)):
            self.moments[..., k] += self._per_learner(term)
        intended = _game_layout(rollout.actions).astype(np.float64)
        self._add("execution_error", intended * (1 - x), intended)
        self._count_signals(rollout, pub)
        self._count_updates(pub)
        if self.audited:
            audits = pub["audits"].astype(np.float64)                         # (T, G, N)
            self._add("signal_audit", audits.sum(axis=-1, keepdims=True).repeat(len(focal), -1),
                      np.full((t, g, len(focal)), float(n)))
        signals = pub["signals"]
        self.observers = 1 if signals.ndim == 3 else signals.shape[2]
        seeds = np.repeat(np.arange(self.num_seeds), g // self.num_seeds)   # (G,) seed of a game
        donors_of_games = np.broadcast_to(np.arange(n), pub["recipients"].shape)
        np.add.at(self.pairs, (np.broadcast_to(seeds[None, :, None], pub["recipients"].shape),
                               donors_of_games, pub["recipients"]), 1.0)

    def _add(self, name: str, successes: np.ndarray, trials: np.ndarray) -> None:
        self.counts[name][..., 0] += self._per_learner(successes)
        self.counts[name][..., 1] += self._per_learner(trials)

    def _count_signals(self, rollout, pub) -> None:
        """Own signals flipped on publication: the learner knows what it signalled."""
        observers, published = pub["observers"], pub["signals"]
        if observers.ndim == 3:  # one assess phase
            observers, published = observers[:, :, None], published[:, :, None]
        t, g, k, _ = observers.shape
        emitted = _game_layout(rollout.signals).reshape(t, k, g, -1).transpose(0, 2, 1, 3)
        flips = np.zeros((t, g, len(self.focal)))
        for j, slot in enumerate(self.focal):
            watched = np.argmax(observers == slot, axis=-1)                   # (T, G, k) donor
            seen = np.take_along_axis(published, watched[..., None], axis=-1)[..., 0]
            flips[..., j] = (seen != emitted[..., j]).sum(axis=-1)
        self._add("assessment_error", flips, np.full(flips.shape, float(k)))

    def _count_updates(self, pub) -> None:
        """Donors whose verdict differed from their reputation and who were not flagged: did
        their reputation take the verdict?"""
        before, after, verdicts = pub["reputation_before"], pub["reputation_after"], \
            pub["verdicts"]
        observers, flags = pub["observers"], pub["flags"]
        if observers.ndim == 3:  # one assess phase
            observers, flags = observers[:, :, None], flags[:, :, None]
        flagged = np.zeros(before.shape, dtype=bool)   # observers an audit set Bad
        t, g, k, d = np.nonzero(flags)
        flagged[t, g, observers[t, g, k, d]] = True
        observed = (verdicts != before) & ~flagged
        took = observed & (after == verdicts)
        focal = len(self.focal)
        self._add("update_probability",
                  took.sum(axis=-1, keepdims=True).repeat(focal, -1).astype(np.float64),
                  observed.sum(axis=-1, keepdims=True).repeat(focal, -1).astype(np.float64))

    # -- estimates -----------------------------------------------------------------------------
    def estimates(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """name -> (estimate (S, F), uncertainty (S, F)); see the module docstring."""
        out = {}
        xx, xy, yy, xr, yr = np.moveaxis(self.moments, -1, 0)
        det = xx * yy - xy * xy
        both = det > 1e-9
        # one of them alone where the learner has only given (never received: nobody helps
        # it, e.g. among unconditional defectors) or only received (never given)
        gave = ~both & (xx > 0.5) & (yy < 0.5)
        received = ~both & (yy > 0.5) & (xx < 0.5)
        with np.errstate(divide="ignore", invalid="ignore"):
            c = np.where(both, -(xr * yy - yr * xy) / det, np.where(gave, -xr / xx, 0.0))
            b = np.where(both, (yr * xx - xr * xy) / det, np.where(received, yr / yy, 1.0))
        # exact once identified; before, the prior's scale
        out["benefit"] = (b, np.where(both | received, 0.0, 1.0))
        out["cost"] = (c, np.where(both | gave, 0.0, 1.0))
        for name, counts in self.counts.items():
            s, n = counts[..., 0], counts[..., 1]
            a, bb = 1 + s, 1 + n - s
            mean = a / (a + bb)
            std = np.sqrt(a * bb / ((a + bb) ** 2 * (a + bb + 1)))
            out[name] = (mean, std)
        if not self.audited:
            zero = np.zeros((self.num_seeds, self.num_focal))
            out["signal_audit"] = (zero, zero)
        n = self.pairs.shape[-1]
        given = self.pairs.sum(axis=-1, keepdims=True)                      # (S, N, 1)
        with np.errstate(invalid="ignore", divide="ignore"):
            freq = np.where(given > 0, self.pairs / given, 1 / (n - 1))
            sd = np.sqrt((1 / (n - 1)) * (1 - 1 / (n - 1)) / np.maximum(given.max(axis=(1, 2)),
                                                                         1))
        off = ~np.eye(n, dtype=bool)
        deviation = np.abs(freq - 1 / (n - 1))[:, off].max(axis=-1)          # (S,)
        out["matching"] = tuple(np.repeat(v[:, None], self.num_focal, axis=1)
                                for v in (deviation, sd))
        return out

    def numbers(self, device=None) -> ModelNumbers:
        """The estimates as (S, F) tensors (the audit rate 0.0 where the game has no audit)."""
        est = self.estimates()

        def tensor(name):
            return torch.as_tensor(est[name][0], dtype=torch.float32, device=device)

        return ModelNumbers(
            benefit=tensor("benefit"), cost=tensor("cost"),
            execution_error=tensor("execution_error"),
            assessment_error=tensor("assessment_error"),
            update_probability=tensor("update_probability"),
            signal_audit=tensor("signal_audit") if self.audited else 0.0,
            observers_per_interaction=self.observers or 1, audited=self.audited)

    def report(self) -> dict[str, np.ndarray]:
        """Each estimate and its uncertainty, mean over a seed's learners (S,), for
        progress.csv."""
        out = {}
        for name, (mean, std) in self.estimates().items():
            out[f"world/{name}"] = mean.mean(axis=1)
            out[f"world/{name}_sd"] = std.mean(axis=1)
        return out

    def per_learner(self) -> dict[str, dict[str, list]]:
        """Every learner's estimates and uncertainties, (S, F) lists, for metrics.json."""
        return {name: {"estimate": mean.tolist(), "uncertainty": std.tolist()}
                for name, (mean, std) in self.estimates().items()}

    def state_dict(self) -> dict:
        return {"moments": torch.as_tensor(self.moments),
                "counts": {k: torch.as_tensor(v) for k, v in self.counts.items()},
                "pairs": torch.as_tensor(self.pairs), "observers": self.observers or 0}

    def load_state_dict(self, state: dict) -> None:
        self.moments = np.asarray(state["moments"], dtype=np.float64)
        self.counts = {k: np.asarray(v, dtype=np.float64) for k, v in state["counts"].items()}
        self.pairs = np.asarray(state["pairs"], dtype=np.float64)
        self.observers = int(state["observers"]) or None


def _game_layout(values: torch.Tensor) -> np.ndarray:
    """(T, S, F, B) learner tensors -> (T, G, F) arrays, G = S B (game g = s B + b)."""
    v = values.cpu().numpy()
    t, s, f, b = v.shape
    return v.transpose(0, 1, 3, 2).reshape(t, s * b, f)


def make_world(kind: str, env_config: EnvConfig, batch_shape, factors=None):
    """The world RG's config names: ``"oracle"``, ``"learned"``, or the oracle misspecified by
    ``factors`` (a mapping number -> factor)."""
    if factors:
        if kind != "oracle":
            raise ValueError("world_factors misspecify the oracle: use world_model='oracle'")
        return MisspecifiedWorld(env_config, dict(factors))
    if kind == "oracle":
        return OracleWorld(env_config)
    if kind == "learned":
        return LearnedWorld(env_config, batch_shape)
    raise ValueError(f"world_model must be one of {list(WORLD_MODELS)}, got {kind!r}")

"""The batched game core: the one place where the rules of the game live.

B independent games of N agents step in lock-step. A round (spec §1) is

1. matching: a uniformly random derangement ``recipients`` (donor d gives to ``recipients[d]``)
   and an independent one ``observers`` (interaction d is watched by ``observers[d]``);
2. act: donor d intends C with probability p_d(g_d, g_recipient); an intended C is executed as D
   with probability ``execution_error``; donor pays ``cost``, recipient gains ``benefit``;
3. assess: observer o(d) emits a signal about d from (g_d, executed a_d, g_recipient), with the
   reputations as they were at the start of the round; the published signal is flipped with
   probability ``assessment_error``;
4. update: with probability ``update_probability`` g_d <- published signal, all at once.

Everything here is vectorised over (B, N); scripted strategies are table look-ups. The
PettingZoo environments, :func:`reciprocity.envs.simulate`, the reference search and the learners
are thin shells around :class:`BatchedGame`. A round is split into ``begin_round`` / ``act`` /
``assess`` so that a shell can let outside controllers (focal agents) decide between the phases;
``play_round`` does all three for fully table-driven populations.

All randomness of a round is drawn up front into a :class:`RoundNoise` in a fixed order, so the
same seed gives the same trajectory, and common random numbers across differently-behaving
games are a matter of passing the same noise (see :meth:`RoundNoise.tile`).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, fields
from numbers import Real

import numpy as np

from .norms import NUM_ACTION_CONTEXTS, NUM_SIGNAL_CONTEXTS

__all__ = [
    "BatchedGame",
    "GameParams",
    "RoundNoise",
    "RoundRecord",
    "random_derangements",
    "sample_round_noise",
]


def _check_real(name: str, value, low: float, high: float, *, low_open=False, high_open=False):
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    too_low = value <= low if low_open else value < low
    too_high = value >= high if high_open else value > high
    if too_low or too_high:
        lo, hi = ("(" if low_open else "["), (")" if high_open else "]")
        raise ValueError(f"{name} must lie in {lo}{low:g}, {high:g}{hi}, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class GameParams:
    """The institution: public rules of the game, shared by every agent.

    Attributes:
        num_agents: N >= 2.
        benefit: b > 0, gained by a recipient per executed cooperation.
        cost: c >= 0, paid by a donor per executed cooperation.
        execution_error: e in [0, 1), probability that an intended C is executed as D.
        assessment_error: mu in [0, 0.5], probability that a published signal is flipped.
        update_probability: u in [0, 1], probability that a donor's reputation is replaced by the
            published signal about it at the end of the round.
        initial_reputation: ``"good"``, ``"bad"`` or p0 in [0, 1] (each agent Good w.p. p0).
    """

    num_agents: int
    benefit: float
    cost: float
    execution_error: float = 0.0
    assessment_error: float = 0.0
    update_probability: float = 1.0
    initial_reputation: str | float = "good"

    def __post_init__(self):
        n = self.num_agents
        if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 2:
            raise ValueError(f"population: needs at least 2 agents, got num_agents={n!r}")
        _check_real("benefit", self.benefit, 0.0, math.inf, low_open=True, high_open=True)
        _check_real("cost", self.cost, 0.0, math.inf, high_open=True)
        _check_real("execution_error", self.execution_error, 0.0, 1.0, high_open=True)
        _check_real("assessment_error", self.assessment_error, 0.0, 0.5)
        _check_real("update_probability", self.update_probability, 0.0, 1.0)
        init = self.initial_reputation
        if isinstance(init, str):
            if init not in ("good", "bad"):
                raise ValueError(
                    f"initial_reputation must be 'good', 'bad' or a probability, got {init!r}"
                )
        else:
            _check_real("initial_reputation", init, 0.0, 1.0)


@dataclass
class RoundNoise:
    """Every random draw of one round, arrays of shape (B, N) indexed by donor.

    ``recipients`` and ``observers`` are derangements (int64); the ``*_u`` fields are uniforms
    in [0, 1): ``intent_u`` resolves stochastic action rules, ``execution_u`` execution errors,
    ``signal_u`` stochastic assessment rules, ``assessment_u`` assessment errors (flip), and
    ``update_u`` whether the reputation update happens.
    """

    recipients: np.ndarray
    observers: np.ndarray
    intent_u: np.ndarray
    execution_u: np.ndarray
    signal_u: np.ndarray
    assessment_u: np.ndarray
    update_u: np.ndarray

    def tile(self, reps: int) -> RoundNoise:
        """Common random numbers: repeat the B games ``reps`` times -> batch ``reps * B``.

        Game ``k * B + r`` of the result uses the draws of game ``r``.
        """
        return RoundNoise(**{f.name: np.tile(getattr(self, f.name), (reps, 1))
                             for f in fields(self)})


@dataclass
class RoundRecord:
    """What happened in one round, arrays of shape (B, N) indexed by donor.

    Public (spec §1): ``recipients``, ``observers``, ``reputation_before``, ``actions``
    (executed), ``signals`` (published, about the donor), ``reputation_after``.
    ``payoffs`` (per agent, this round) follow from the public record; ``intents`` (intended
    actions) are private and are never exposed to other agents by the shells.
    """

    recipients: np.ndarray
    observers: np.ndarray
    reputation_before: np.ndarray
    actions: np.ndarray
    signals: np.ndarray
    reputation_after: np.ndarray
    payoffs: np.ndarray
    intents: np.ndarray

    PUBLIC_FIELDS = ("recipients", "observers", "reputation_before", "actions", "signals",
                     "reputation_after")

    def public(self, game: int | None = None) -> dict[str, np.ndarray]:
        """The public record as plain numpy arrays (of one game if ``game`` is given)."""
        if game is None:
            return {k: getattr(self, k) for k in self.PUBLIC_FIELDS}
        out = {k: getattr(self, k)[game].copy() for k in self.PUBLIC_FIELDS}
        for arr in out.values():
            arr.flags.writeable = False  # the same record is handed to every agent
        return out


#: Batches of at least this many entries with N <= ``_PACKED_MAX_N`` rank packed integer keys
#: (:func:`_packed_derangements`); smaller ones (the PettingZoo shells) argsort uniforms.
_PACKED_MIN_SIZE = 4096
_PACKED_MAX_N = 256  # 32-bit keys keep >= 24 random bits: key ties (rejected) stay below 0.2 %
_BLOCK = 1 << 16  # entries per block of candidates (a block stays in L2 cache)
_U64_MAX = np.iinfo(np.uint64).max


@functools.cache
def _derangement_fraction(n: int) -> float:
    """D_n / n!, the probability that a uniform permutation of n items is a derangement."""
    return sum((-1) ** k / math.factorial(k) for k in range(min(n, 30) + 1))


def _packed_derangements(rng: np.random.Generator, m: int, n: int, need: int) -> np.ndarray:
    """At most ``need`` iid uniform derangements of ``range(n)`` out of ``m`` candidates.

    Candidate i ranks n iid uniform 32-bit keys (two per 64-bit draw) whose low bits are
    replaced by the column index, so one value sort (SIMD; several times faster than
    ``argsort``) ranks the keys and carries the permutation along. Candidates are scanned in
    order; one is accepted iff it has no fixed point and no tie among its keys (conditional on
    no tie, the ranking of iid keys is exactly uniform over permutations, by exchangeability).
    The scan stops at the ``need``-th fixed-point-free candidate, a decision that depends only
    on earlier candidates, so the accepted rows are iid and exactly uniform over derangements.
    """
    shift = (n - 1).bit_length()
    low = np.uint32((1 << shift) - 1)
    size = m * n
    keys = rng.integers(0, _U64_MAX, size=(size + 1) // 2, dtype=np.uint64, endpoint=True)
    keys = keys.view(np.uint32)[:size].reshape(m, n)
    keys &= ~low
    keys |= np.arange(n, dtype=np.uint32)
    keys.sort(axis=1)
    perm = keys & low
    rows = np.flatnonzero(~(perm == np.arange(n, dtype=np.uint32)).any(axis=1))[:need]
    high = keys[rows] >> np.uint32(shift)
    tie = (high[:, 1:] == high[:, :-1]).any(axis=1)
    return perm[rows[~tie]]


def random_derangements(rng: np.random.Generator, batch: int, n: int) -> np.ndarray:
    """``batch`` independent uniformly random derangements of ``range(n)``, shape (batch, n).

    Rejection sampling from uniform permutations: exact, about e ~ 2.72 candidates per row.
    Candidates are drawn in blocks and the first ``batch`` accepted rows are kept (the accepted
    rows of an iid sequence are iid, each uniform over derangements), so a call needs about one
    pass instead of a loop over ever fewer rejected rows. Large batches rank packed integer keys
    (:func:`_packed_derangements`), small ones (the PettingZoo shells) argsort uniforms.
    """
    if n < 2:
        raise ValueError(f"a derangement needs n >= 2, got n={n}")
    packed = batch * n >= _PACKED_MIN_SIZE and n <= _PACKED_MAX_N
    identity = np.arange(n)
    out = np.empty((batch, n), dtype=np.int64)
    filled = 0
    while filled < batch:
        need = batch - filled
        mean = need / _derangement_fraction(n)
        m = min(int(mean + 3.0 * math.sqrt(mean)) + 1, max(1, _BLOCK // n))
        if packed:
            accepted = _packed_derangements(rng, m, n, need)
        else:
            perm = np.argsort(rng.random((m, n)), axis=1)
            accepted = perm[~(perm == identity).any(axis=1)][:need]
        out[filled:filled + len(accepted)] = accepted
        filled += len(accepted)
    return out


def sample_round_noise(rng: np.random.Generator, batch: int, n: int) -> RoundNoise:
    """Draw all randomness of one round for ``batch`` games of ``n`` agents (fixed order)."""
    matchings = random_derangements(rng, 2 * batch, n)  # one call: recipients, then observers
    recipients, observers = matchings[:batch], matchings[batch:]
    u = rng.random((5, batch, n))
    return RoundNoise(recipients, observers, u[0], u[1], u[2], u[3], u[4])


class BatchedGame:
    """B games x N agents in lock-step.

    Args:
        params: the institution (:class:`GameParams`).
        action_table: P(intend C | action context), shape (N, 4) or (B, N, 4), index order.
        assess_table: P(signal Good | signal context), shape (N, 8) or (B, N, 8), index order.
            Rows of externally controlled (focal) slots are ignored whenever the caller passes
            their decisions to :meth:`act` / :meth:`assess`.
        batch: B, the number of games.
        seed: seed or ``np.random.Generator``.
        table_groups: optional (B,) ints; then tables have shape (P, N, K) and game g uses
            table ``table_groups[g]`` (many games sharing few tables without copying them).

    State: ``reputation`` (B, N) int8, ``round`` (completed rounds).
    """

    def __init__(self, params: GameParams, action_table, assess_table, batch: int = 1,
                 seed: int | np.random.Generator | None = None, table_groups=None):
        self.params = params
        n = params.num_agents
        if isinstance(batch, bool) or not isinstance(batch, int | np.integer) or batch < 1:
            raise ValueError(f"num_envs must be a positive integer, got {batch!r}")
        self.batch = int(batch)
        self._grouped = table_groups is not None
        if table_groups is None:
            self._groups = np.arange(self.batch)[:, None]
            self._num_tables = self.batch
        else:
            groups = np.asarray(table_groups)
            if groups.shape != (self.batch,) or not np.issubdtype(groups.dtype, np.integer) \
                    or groups.min() < 0:
                raise ValueError(f"table_groups must be {self.batch} non-negative integers")
            self._groups = groups[:, None]
            self._num_tables = int(groups.max()) + 1
        self.action_table = self._check_table(action_table, NUM_ACTION_CONTEXTS, "action_table")
        self.assess_table = self._check_table(assess_table, NUM_SIGNAL_CONTEXTS, "assess_table")
        self._agents = np.arange(n)
        self._row_offsets = np.arange(self.batch)[:, None] * n  # flat index of (game, slot 0)
        self.reset(seed)

    def _check_table(self, table, k: int, name: str) -> np.ndarray:
        table = np.asarray(table, dtype=np.float64)
        n = self.params.num_agents
        if table.ndim == 3:
            rows_ok = (table.shape[0] >= self._num_tables if self._grouped
                       else table.shape[0] == self.batch)
            bad_shape = not rows_ok or table.shape[1:] != (n, k)
        else:
            bad_shape = table.shape != (n, k)
        if bad_shape:
            raise ValueError(f"{name} must have shape ({n}, {k}) or ({self._num_tables}, {n}, "
                             f"{k}), got {table.shape}")
        if np.any(~np.isfinite(table)) or np.any(table < 0) or np.any(table > 1):
            raise ValueError(f"{name} entries must be probabilities in [0, 1]")
        return table

    # -- state ---------------------------------------------------------------------------------
    def reset(self, seed: int | np.random.Generator | None = None) -> np.ndarray:
        """Start new games: fresh RNG (if ``seed`` given) and initial reputations, shape (B, N)."""
        if seed is not None or not hasattr(self, "rng"):
            self.rng = seed if isinstance(seed, np.random.Generator) else \
                np.random.default_rng(seed)
        init = self.params.initial_reputation
        shape = (self.batch, self.params.num_agents)
        if init == "good":
            self.reputation = np.ones(shape, dtype=np.int8)
        elif init == "bad":
            self.reputation = np.zeros(shape, dtype=np.int8)
        else:
            self.reputation = (self.rng.random(shape) < init).astype(np.int8)
        self.round = 0
        self.noise: RoundNoise | None = None
        self._pending: dict | None = None
        return self.reputation

    # -- one round, in three phases ------------------------------------------------------------
    def begin_round(self, noise: RoundNoise | None = None) -> RoundNoise:
        """Draw (or accept) the round's matching and noise. Returns it."""
        if self._pending is not None:
            raise RuntimeError("begin_round called twice without finishing the round")
        n = self.params.num_agents
        if noise is None:
            noise = sample_round_noise(self.rng, self.batch, n)
        elif noise.recipients.shape != (self.batch, n):
            raise ValueError(f"noise has shape {noise.recipients.shape}, "
                             f"expected ({self.batch}, {n})")
        self.noise = noise
        self._flat_recipients = noise.recipients + self._row_offsets
        self._pending = {"phase": "act"}
        return noise

    def action_contexts(self) -> np.ndarray:
        """Action context ``2 g_d + g_recipient`` of every donor this round, shape (B, N)."""
        rep = self.reputation
        return 2 * rep + rep.take(self._flat_recipients)

    def act(self, focal_slots=None, focal_intents=None) -> tuple[np.ndarray, np.ndarray]:
        """Resolve donations. Returns executed actions (B, N) int8 and payoffs (B, N) float.

        ``focal_slots`` (F,) are slot indices whose intended actions are given by
        ``focal_intents`` (B, F) in {0, 1}; every other slot follows its action-table row.
        """
        if self._pending is None or self._pending["phase"] != "act":
            raise RuntimeError("act must follow begin_round")
        p = self.params
        noise = self.noise
        ctx = self.action_contexts()
        prob = self._rows(self.action_table, ctx)
        intents = (noise.intent_u < prob).view(np.int8)
        if focal_slots is not None and len(focal_slots):
            intents[:, focal_slots] = focal_intents
        actions = intents & (noise.execution_u >= p.execution_error)
        coop = actions.astype(np.float64)
        payoffs = -p.cost * coop
        # recipients are a permutation in every game, so each slot receives exactly once
        flat = self._flat_recipients
        np.put(payoffs, flat, payoffs.take(flat) + p.benefit * coop)
        self._pending = {"phase": "assess", "intents": intents, "actions": actions,
                         "payoffs": payoffs}
        return actions, payoffs

    def observed_donors(self) -> np.ndarray:
        """For every agent j, the donor whose interaction j observes this round, shape (B, N)."""
        inverse = np.empty(self.noise.observers.shape, dtype=self.noise.observers.dtype)
        # inverse[g, observers[g, d]] = d (np.put repeats the N values game after game)
        np.put(inverse, self.noise.observers + self._row_offsets, self._agents)
        return inverse

    def signal_contexts(self) -> np.ndarray:
        """Signal context ``4 g_d + 2 g_recipient + a_d`` of every interaction (by donor)."""
        if self._pending is None or self._pending["phase"] != "assess":
            raise RuntimeError("signal contexts exist only after act")
        rep = self.reputation
        rec = rep.take(self._flat_recipients)
        return 4 * rep + 2 * rec + self._pending["actions"]

    def assess(self, focal_slots=None, focal_signals=None) -> RoundRecord:
        """Resolve assessments and the reputation update; ends the round.

        ``focal_signals`` (B, F) are the signals emitted by the focal slots (as observers) about
        the interaction each observes (see :meth:`observed_donors`). Returns the round record.
        """
        if self._pending is None or self._pending["phase"] != "assess":
            raise RuntimeError("assess must follow act")
        p = self.params
        noise = self.noise
        ctx = self.signal_contexts()
        prob = self._rows(self.assess_table, ctx, by=noise.observers)
        signals = (noise.signal_u < prob).view(np.int8)
        if focal_slots is not None and len(focal_slots):
            donors = self.observed_donors()[:, focal_slots] + self._row_offsets
            np.put(signals, donors, np.asarray(focal_signals, dtype=np.int8))
        published = signals ^ (noise.assessment_u < p.assessment_error)
        before = self.reputation
        after = np.where(noise.update_u < p.update_probability, published,
                         before).astype(np.int8, copy=False)
        record = RoundRecord(
            recipients=noise.recipients, observers=noise.observers, reputation_before=before,
            actions=self._pending["actions"], signals=published,
            reputation_after=after, payoffs=self._pending["payoffs"],
            intents=self._pending["intents"],
        )
        self.reputation = after
        self.round += 1
        self._pending = None
        return record

    def play_round(self, noise: RoundNoise | None = None) -> RoundRecord:
        """A whole round with every slot following its tables."""
        self.begin_round(noise)
        self.act()
        return self.assess()

    def _rows(self, table: np.ndarray, contexts: np.ndarray, by: np.ndarray | None = None):
        """table[agent, context] per (game, slot); agent = the slot or ``by[game, slot]``."""
        n, k = table.shape[-2:]
        index = contexts + (self._agents if by is None else by) * k
        if table.ndim == 3:
            index += self._groups * (n * k)
        return table.take(index)

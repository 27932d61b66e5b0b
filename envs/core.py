"""The batched game core: the one place where the rules of the game live.

B independent games of N agents step in lock-step. A round (spec §1, with the institutions of
spec §7) is

1. matching: a uniformly random derangement ``recipients`` (donor d gives to ``recipients[d]``)
   and an independent one ``observers`` (interaction d is watched by ``observers[d]``); with
   k = ``observers_per_interaction`` > 1, k derangements (one per assess phase) conditioned on
   the k observers of every interaction being distinct;
2. act: donor d intends C with probability p_d(g_d, g_recipient); an intended C is executed as D
   with probability ``execution_error``; donor pays ``cost``, recipient gains ``benefit``;
3. assess: every observer of interaction d emits a signal about d from (g_d, executed a_d,
   g_recipient), with the reputations as they were at the start of the round; each published
   signal is flipped with probability ``assessment_error``; the published *verdict* about d is
   the majority of its k published signals (k = 1: the signal itself). Signal audit: each
   interaction is audited with probability ``signal_audit``; an observer whose published signal
   differs from the verdict of ``audit_norm`` on (g_d, a_d, g_recipient) is *flagged*;
4. update: with probability ``update_probability`` g_d <- the verdict about d, all at once; then
   every flagged observer's reputation is set to Bad (whatever ``update_probability``).

With the defaults (no audit, one observer) this is exactly the plain game of spec §1, drawing
the same random numbers. Everything here is vectorised over (B, N); scripted strategies are table
look-ups. The PettingZoo environments, :func:`reciprocity.envs.simulate`, the reference search
and the learners are thin shells around :class:`BatchedGame`. A round is split into
``begin_round`` / ``act`` / ``assess`` so that a shell can let outside controllers (focal agents)
decide between the phases; ``play_round`` does all three for fully table-driven populations.

All randomness of a round is drawn up front into a :class:`RoundNoise` in a fixed order, so the
same seed gives the same trajectory, and common random numbers across differently-behaving
games are a matter of passing the same noise (see :meth:`RoundNoise.tile`).
"""

from __future__ import annotations

import functools
import math
from collections import OrderedDict
from dataclasses import dataclass, fields
from numbers import Real

import numpy as np

from .norms import (
    NUM_ACTION_CONTEXTS,
    NUM_SIGNAL_CONTEXTS,
    from_display_order,
    parse_assessment_rule,
    to_display_order,
)

__all__ = [
    "BatchedGame",
    "GameParams",
    "RoundNoise",
    "RoundRecord",
    "random_derangements",
    "random_observer_panels",
    "sample_round_noise",
]

#: Largest supported number of observers per interaction: panels are sampled exactly by rejection,
#: about e^{k(k-1)/2} candidates per panel (k = 3: ~30, k = 5: 10^4 - 10^5, k = 7: ~10^9).
MAX_OBSERVERS_PER_INTERACTION = 5


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
            published verdict about it at the end of the round.
        initial_reputation: ``"good"``, ``"bad"`` or p0 in [0, 1] (each agent Good w.p. p0).
        signal_audit: v in [0, 1], probability that an interaction is audited (spec §7).
        audit_norm: the assessment rule the audit judges by (a name or 8 values 0/1 in display
            order); stored as a tuple of its 8 verdicts in display order (GGC ... BBD; index
            order: :attr:`audit_table`). Required when ``signal_audit > 0``.
        observers_per_interaction: k, odd, 1 <= k < N (and k <= 5): distinct observers of every
            interaction; the verdict is the majority of their published signals.
    """

    num_agents: int
    benefit: float
    cost: float
    execution_error: float = 0.0
    assessment_error: float = 0.0
    update_probability: float = 1.0
    initial_reputation: str | float = "good"
    signal_audit: float = 0.0
    audit_norm: tuple[int, ...] | None = None
    observers_per_interaction: int = 1

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
        _check_real("signal_audit", self.signal_audit, 0.0, 1.0)
        if self.audit_norm is not None:
            object.__setattr__(self, "audit_norm", audit_verdicts(self.audit_norm))
        elif self.signal_audit > 0:
            raise ValueError(f"audit_norm: signal_audit = {self.signal_audit:g} needs a norm to "
                             "audit by (an assessment rule, e.g. 'L6')")
        k = self.observers_per_interaction
        if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
            raise ValueError(f"observers_per_interaction must be a positive odd integer, "
                             f"got {k!r}")
        if k % 2 == 0:
            raise ValueError(f"observers_per_interaction must be odd (the verdict is the "
                             f"majority of k signals, so there are no ties), got {k}")
        if k >= n:
            raise ValueError(f"observers_per_interaction must be smaller than the number of "
                             f"agents N = {n} (k distinct observers other than the donor), "
                             f"got {k}")
        if k > MAX_OBSERVERS_PER_INTERACTION:
            raise ValueError(f"observers_per_interaction: at most "
                             f"{MAX_OBSERVERS_PER_INTERACTION} are supported (exact sampling of "
                             f"k distinct observers takes about e^(k(k-1)/2) draws), got {k}")

    def noise_options(self) -> dict:
        """Keywords of :func:`sample_round_noise` that draw this institution's randomness."""
        return {"observers_per_interaction": self.observers_per_interaction,
                "audit": self.signal_audit > 0}

    @property
    def audit_table(self) -> np.ndarray:
        """The audit norm's verdicts, (8,) float in index order ``4 x + 2 y + a`` (zeros when
        there is none)."""
        if self.audit_norm is None:
            return np.zeros(NUM_SIGNAL_CONTEXTS)
        return from_display_order(self.audit_norm)


def audit_verdicts(norm, field: str = "audit_norm") -> tuple[int, ...]:
    """An audit norm (an assessment rule name, or 8 values 0/1 in display order GGC ... BBD) ->
    its verdicts, a tuple of 8 ints in display order (so parsing it again gives it back)."""
    _, table = parse_assessment_rule(list(norm) if isinstance(norm, tuple) else norm,
                                     field=field)
    if not np.isin(table, (0.0, 1.0)).all():
        raise ValueError(f"{field}: the audit's verdict must be deterministic (every entry 0 or "
                         f"1), got {norm!r}")
    return tuple(int(v) for v in to_display_order(table))


@dataclass
class RoundNoise:
    """Every random draw of one round, arrays of shape (B, N) indexed by donor.

    ``recipients`` and ``observers`` are derangements (int64); the ``*_u`` fields are uniforms
    in [0, 1): ``intent_u`` resolves stochastic action rules, ``execution_u`` execution errors,
    ``signal_u`` stochastic assessment rules, ``assessment_u`` assessment errors (flip),
    ``update_u`` whether the reputation update happens, and ``audit_u`` whether the interaction is
    audited (``None`` when drawn without audits). With k > 1 observers per interaction,
    ``observers``, ``signal_u`` and ``assessment_u`` have shape (B, k, N): axis 1 is the assess
    phase (one observer of every interaction per phase).
    """

    recipients: np.ndarray
    observers: np.ndarray
    intent_u: np.ndarray
    execution_u: np.ndarray
    signal_u: np.ndarray
    assessment_u: np.ndarray
    update_u: np.ndarray
    audit_u: np.ndarray | None = None

    @property
    def observers_per_interaction(self) -> int:
        return 1 if self.observers.ndim == 2 else self.observers.shape[1]

    def tile(self, reps: int) -> RoundNoise:
        """Common random numbers: repeat the B games ``reps`` times -> batch ``reps * B``.

        Game ``k * B + r`` of the result uses the draws of game ``r``.
        """
        def repeat(values):
            if values is None:
                return None
            return np.tile(values, (reps,) + (1,) * (values.ndim - 1))

        return RoundNoise(**{f.name: repeat(getattr(self, f.name)) for f in fields(self)})


@dataclass
class RoundRecord:
    """What happened in one round, arrays of shape (B, N) indexed by donor.

    Public (spec §1, §7): ``recipients``, ``observers``, ``reputation_before``, ``actions``
    (executed), ``signals`` (published, about the donor), ``reputation_after``, ``verdicts``
    (the majority of the published signals about the donor, which is what updates it),
    ``audits`` (1 where the interaction was audited) and ``flags`` (1 where a published signal
    was audited and contradicted the audit norm: its observer was set Bad). With k > 1 observers
    per interaction, ``observers``, ``signals`` and ``flags`` have shape (B, k, N), axis 1 the
    assess phase. ``payoffs`` (per agent, this round) follow from the public record; ``intents``
    (intended actions) are private and are never exposed to other agents by the shells.
    """

    recipients: np.ndarray
    observers: np.ndarray
    reputation_before: np.ndarray
    actions: np.ndarray
    signals: np.ndarray
    reputation_after: np.ndarray
    payoffs: np.ndarray
    intents: np.ndarray
    verdicts: np.ndarray
    audits: np.ndarray
    flags: np.ndarray

    PUBLIC_FIELDS = ("recipients", "observers", "reputation_before", "actions", "signals",
                     "reputation_after", "verdicts", "audits", "flags")

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


#: Panels already drawn, by the generator state they were drawn from (see
#: :func:`random_observer_panels`); least recently used first, at most _PANEL_MEMO_BYTES.
_PANEL_MEMO: OrderedDict = OrderedDict()
_PANEL_MEMO_BYTES = 64 << 20
_panel_memo_size = 0


def _generator_key(rng: np.random.Generator) -> tuple | None:
    """The complete state of a PCG64 generator (numpy's default) as a hashable key, else None."""
    state = rng.bit_generator.state
    if state.get("bit_generator") != "PCG64":
        return None
    return (state["state"]["state"], state["state"]["inc"], state["has_uint32"],
            state["uinteger"])


def random_observer_panels(rng: np.random.Generator, batch: int, n: int, k: int) -> np.ndarray:
    """``batch`` panels of k observers for every interaction, shape (batch, k, n).

    Panel row j (assess phase j) is a derangement: ``panel[j, d] != d`` observes interaction d.
    The k derangements are independent uniform ones conditioned on the k observers of every
    interaction being distinct (spec §7), sampled exactly by rejection: whole candidate panels are
    drawn and the first ``batch`` valid ones kept (accepted rows of an iid sequence are iid, each
    uniform over valid panels). About 1 in e^{k(k-1)/2} candidates is valid (k = 3: 2-5 %), which
    makes a round with k = 3 about 16 times slower than with one observer.

    Evaluations replay the same random numbers (common random numbers: every policy of a
    scenario is evaluated on the same games), so the panels drawn from a generator state are
    remembered (up to 64 MB, least recently used dropped first): the same state gives the same
    panels and leaves the generator in the same state as drawing them again would, bit for bit.
    """
    global _panel_memo_size
    key = _generator_key(rng)
    if key is not None:
        key = (batch, n, k, *key)
        hit = _PANEL_MEMO.get(key)
        if hit is not None:
            _PANEL_MEMO.move_to_end(key)
            panels, state = hit
            rng.bit_generator.state = state
            return panels.astype(np.int64)
    out = _draw_observer_panels(rng, batch, n, k)
    if key is not None:
        small = out.astype(np.min_scalar_type(n - 1))
        _PANEL_MEMO[key] = (small, rng.bit_generator.state)
        _panel_memo_size += small.nbytes
        while _panel_memo_size > _PANEL_MEMO_BYTES and _PANEL_MEMO:
            _panel_memo_size -= _PANEL_MEMO.popitem(last=False)[1][0].nbytes
    return out


def _draw_observer_panels(rng: np.random.Generator, batch: int, n: int, k: int) -> np.ndarray:
    """:func:`random_observer_panels` without the memory: rejection sampling."""
    out = np.empty((batch, k, n), dtype=np.int64)
    filled = 0
    while filled < batch:
        need = batch - filled
        m = min(need * int(math.exp(k * (k - 1) / 2) + 1) + 16, max(16, _BLOCK // (k * n)))
        candidates = random_derangements(rng, m * k, n).reshape(m, k, n)
        ordered = np.sort(candidates, axis=1)
        distinct = (ordered[:, 1:] != ordered[:, :-1]).all(axis=(1, 2))
        accepted = candidates[np.flatnonzero(distinct)[:need]]
        out[filled:filled + len(accepted)] = accepted
        filled += len(accepted)
    return out


def sample_round_noise(rng: np.random.Generator, batch: int, n: int, *,
                       observers_per_interaction: int = 1, audit: bool = False) -> RoundNoise:
    """Draw all randomness of one round for ``batch`` games of ``n`` agents (fixed order).

    ``observers_per_interaction`` (k) and ``audit`` (draw audits) must match the institution the
    noise is used with (:meth:`GameParams.noise_options`); the defaults draw the plain game's
    numbers, and an audit adds its draws after all the others.
    """
    k = observers_per_interaction
    if k == 1:  # the plain game's draws
        matchings = random_derangements(rng, 2 * batch, n)  # one call: recipients, then observers
        recipients, observers = matchings[:batch], matchings[batch:]
        intent_u, execution_u, signal_u, assessment_u, update_u = rng.random((5, batch, n))
    else:
        recipients = random_derangements(rng, batch, n)
        observers = random_observer_panels(rng, batch, n, k)
        intent_u, execution_u = rng.random((2, batch, n))
        signal_u, assessment_u = rng.random((2, batch, k, n))
        update_u = rng.random((batch, n))
    audit_u = rng.random((batch, n)) if audit else None
    return RoundNoise(recipients, observers, intent_u, execution_u, signal_u, assessment_u,
                      update_u, audit_u)


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
        k = params.observers_per_interaction
        self._noise_options = params.noise_options()
        # flat index of (game, assess phase, slot 0) in (B, k, N) panel arrays
        self._panel_offsets = np.arange(self.batch * k).reshape(self.batch, k, 1) * n
        # the record's audits and flags when nothing is audited (shared, read-only)
        self._no_audits = np.zeros((self.batch, n), dtype=np.int8)
        self._no_flags = np.zeros((self.batch, k, n), dtype=np.int8)
        for zeros in (self._no_audits, self._no_flags):
            zeros.flags.writeable = False
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
        p = self.params
        n = p.num_agents
        if noise is None:
            noise = sample_round_noise(self.rng, self.batch, n, **self._noise_options)
        elif noise.recipients.shape != (self.batch, n):
            raise ValueError(f"noise has shape {noise.recipients.shape}, "
                             f"expected ({self.batch}, {n})")
        elif noise.observers_per_interaction != p.observers_per_interaction or \
                (p.signal_audit > 0 and noise.audit_u is None):
            raise ValueError(f"noise was drawn for another institution (observers per "
                             f"interaction {noise.observers_per_interaction}, audit draws "
                             f"{noise.audit_u is not None}); draw it with sample_round_noise(rng, "
                             f"batch, n, **params.noise_options())")
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

    def observed_donors(self, phase: int | None = None) -> np.ndarray:
        """For every agent j, the donor whose interaction j observes this round, shape (B, N).

        With k > 1 observers per interaction every agent observes one interaction per assess
        phase: ``phase`` in 0 .. k-1 selects one, ``None`` gives all of them, (B, k, N).
        """
        observers = self.noise.observers
        if phase is not None:
            if not 0 <= phase < self.params.observers_per_interaction:
                raise ValueError(f"phase must lie in 0 .. "
                                 f"{self.params.observers_per_interaction - 1}, got {phase!r}")
            if observers.ndim == 3:
                observers = observers[:, phase]
        inverse = np.empty(observers.shape, dtype=observers.dtype)
        rows = self._row_offsets if observers.ndim == 2 else self._panel_offsets
        # inverse[..., observers[..., d]] = d (np.put repeats the N values row after row)
        np.put(inverse, observers + rows, self._agents)
        return inverse

    def signal_contexts(self) -> np.ndarray:
        """Signal context ``4 g_d + 2 g_recipient + a_d`` of every interaction (by donor)."""
        if self._pending is None or self._pending["phase"] != "assess":
            raise RuntimeError("signal contexts exist only after act")
        rep = self.reputation
        rec = rep.take(self._flat_recipients)
        return 4 * rep + 2 * rec + self._pending["actions"]

    def assess(self, focal_slots=None, focal_signals=None) -> RoundRecord:
        """Resolve assessments, the institution and the reputation update; ends the round.

        ``focal_signals`` (B, F) are the signals emitted by the focal slots (as observers) about
        the interaction each observes (see :meth:`observed_donors`); with k > 1 observers per
        interaction, (B, k, F): one signal per assess phase. Returns the round record.
        """
        if self._pending is None or self._pending["phase"] != "assess":
            raise RuntimeError("assess must follow act")
        p = self.params
        noise = self.noise
        k = p.observers_per_interaction
        ctx = self.signal_contexts()
        # 3. assess: every seat of every panel, (B, k, N): seat j of interaction d is
        # observers[:, j, d] (k = 1: one seat)
        observers, signal_u, assessment_u = (noise.observers, noise.signal_u, noise.assessment_u)
        if k == 1:
            observers, signal_u, assessment_u = (x[:, None] for x in (observers, signal_u,
                                                                      assessment_u))
        prob = self._rows(self.assess_table, ctx[:, None], by=observers)
        signals = (signal_u < prob).view(np.int8)
        if focal_slots is not None and len(focal_slots):
            donors = self.observed_donors()[..., focal_slots].reshape(self.batch, k, -1)
            np.put(signals, donors + self._panel_offsets, np.asarray(focal_signals, dtype=np.int8))
        published = signals ^ (assessment_u < p.assessment_error)
        # the published verdict about each donor: the majority of its k published signals
        verdicts = published[:, 0] if k == 1 else \
            (published.sum(axis=1, dtype=np.int8) > k // 2).view(np.int8)
        # signal audit: an audited interaction's published signals are judged by the audit norm
        flags, audits = self._no_flags, self._no_audits
        if p.signal_audit > 0:
            audits = (noise.audit_u < p.signal_audit).view(np.int8)
            contradicts = published != p.audit_table.astype(np.int8).take(ctx)[:, None]
            flags = (contradicts & audits.astype(bool)[:, None]).view(np.int8)
        # 4. update: donors take their verdict w.p. u, then flagged observers are set Bad
        before = self.reputation
        after = np.where(noise.update_u < p.update_probability, verdicts,
                         before).astype(np.int8, copy=False)
        if p.signal_audit > 0:
            rows = self._row_offsets[:, :, None]  # the observers' (game, slot) in (B, N)
            after.put((observers + rows)[flags.astype(bool)], 0)
        record = RoundRecord(
            recipients=noise.recipients, observers=noise.observers, reputation_before=before,
            actions=self._pending["actions"], signals=published[:, 0] if k == 1 else published,
            reputation_after=after, payoffs=self._pending["payoffs"],
            intents=self._pending["intents"], verdicts=verdicts, audits=audits,
            flags=flags[:, 0] if k == 1 else flags,
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
        """table[agent, context] per (game, slot); agent = the slot or ``by[game, ..., slot]``."""
        n, k = table.shape[-2:]
        index = contexts + (self._agents if by is None else by) * k
        if table.ndim == 3:
            index += self._groups.reshape(self.batch, *(1,) * (index.ndim - 1)) * (n * k)
        return table.take(index)

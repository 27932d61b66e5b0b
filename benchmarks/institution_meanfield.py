"""Does a signal audit make honest signalling pay among learners? The mean-field check.

    python benchmarks/institution_meanfield.py [--audits 0 0.1 0.2 0.3 1] [--rounds 3000]

Population of ``many-learners-v0``: 7 learners + 3 defectors (ALLD assessing by L6), b = 3,
c = 0.75, e = mu = 0.02, here under a signal audit v by stern judging (L6). Every learner starts
as an ideal discriminator (DISC acting, L6 assessing: tabular policy at probabilities 0.05 / 0.95,
as ``train --init disc+L6``) and follows the *exact* reciprocity gradient of its own payoff: RG's
objective (:meth:`ReciprocityGradient.objective`, H = 50, gamma = 0.99, the audit in the model)
with the other agents' true observed tables in place of estimators, so nothing is sampled. As in
RG's training loop, the shared reputation state advances 10 model rounds between updates of 5
Adam steps (lr 0.1), all learners simultaneously.

Reported per v: the learners' long-run payoff per round (model, 400 rounds from all Good with the
final policies, mean of the last 100) against the same measure for the ideal discriminators
(exact 0/1 tables), the learners' cooperation with Good recipients, and how honest their signal
heads stayed (mean |P(Good) - L6| over the contexts of Good and Bad recipients with the action
L6 expects). Prints a table and a final JSON line; asserts nothing.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from reciprocity.agents.model import round_step
from reciprocity.agents.rg import ReciprocityGradient, RGConfig
from reciprocity.envs import EnvConfig, get_scenario, parse_strategy
from reciprocity.envs.config import strategy_tables

ROUNDS_PER_UPDATE, STEPS_PER_UPDATE = 10, 5
#: signal contexts 4 x + 2 y + a that honest L6 assessment meets most: a Good or Bad donor
#: helping a Good recipient (GGC, BGC) or refusing a Bad one (GBD, BBD)
HONESTY_CONTEXTS = [7, 3, 4, 0]


def world_tables(env_config: EnvConfig, own_action: torch.Tensor, own_signal: torch.Tensor):
    """Observed tables of all N agents (S = 1): learners' policies through e and mu."""
    p = env_config.params
    action, assess = (torch.tensor(t) for t in strategy_tables(env_config.strategies))
    focal = torch.as_tensor(env_config.focal_slots)
    action[focal], assess[focal] = own_action.double(), own_signal.double()
    return (action * (1 - p.execution_error))[None], \
        (p.assessment_error + (1 - 2 * p.assessment_error) * assess)[None]


def long_run(env_config: EnvConfig, action: torch.Tensor, signal: torch.Tensor):
    """(learners' payoff per round, mean Good fraction) after 400 model rounds from all Good."""
    p = env_config.params
    rep = torch.ones(env_config.num_agents, dtype=torch.float64)
    focal = torch.as_tensor(env_config.focal_slots)
    payoffs, good = [], []
    for t in range(400):
        rep, payoff = round_step(rep, action[0], signal[0], benefit=p.benefit, cost=p.cost,
                                 update_probability=p.update_probability,
                                 signal_audit=p.signal_audit,
                                 audit_norm=torch.tensor(p.audit_table))
        if t >= 300:
            payoffs.append(payoff[focal].mean().item())
            good.append(rep.mean().item())
    return float(np.mean(payoffs)), float(np.mean(good))


def run(audit: float, rounds: int) -> dict:
    torch.set_num_threads(1)
    base = get_scenario("many-learners-v0").config()
    env_config = EnvConfig.from_kwargs(**{**base, "signal_audit": audit, "audit_norm": "L6"})
    f = env_config.focal_slots.size
    rg = ReciprocityGradient(RGConfig(), env_config, (1, f))
    disc = parse_strategy("disc+L6")
    rg.policy.set_tables(disc.action, disc.assess)
    ideal = long_run(env_config, *world_tables(env_config,
                                               torch.tensor(disc.action).expand(f, 4),
                                               torch.tensor(disc.assess).expand(f, 8)))
    rep = torch.ones(1, 1, env_config.num_agents, dtype=torch.float64)
    p = env_config.params
    for _ in range(rounds // ROUNDS_PER_UPDATE):
        own_action, own_signal = (t[0] for t in rg.policy.tables())
        action, signal = world_tables(env_config, own_action, own_signal)
        for _ in range(ROUNDS_PER_UPDATE):   # the public reputations move on
            state, _ = round_step(rep[0, 0], action[0], signal[0], benefit=p.benefit,
                                  cost=p.cost, update_probability=p.update_probability,
                                  signal_audit=p.signal_audit,
                                  audit_norm=torch.tensor(p.audit_table))
            rep = state.view(1, 1, -1)
        for _ in range(STEPS_PER_UPDATE):
            value = rg.objective(rep, action, signal,
                                 rg.policy.action_probs().double(),
                                 rg.policy.signal_probs().double())
            rg.optimizer.zero_grad()
            (-value.sum()).backward()
            rg.optimizer.step()
    own_action, own_signal = (t[0] for t in rg.policy.tables())
    payoff, good = long_run(env_config, *world_tables(env_config, own_action, own_signal))
    l6 = torch.tensor(parse_strategy("L6").assess)
    honesty = (own_signal.double() - l6).abs()[:, HONESTY_CONTEXTS].mean().item()
    return {"signal_audit": audit, "rounds": rounds, "learner_payoff": payoff,
            "ideal_payoff": ideal[0], "ratio": payoff / ideal[0], "good_fraction": good,
            "cooperation_with_good": own_action[:, 3].mean().item(),
            "signal_dishonesty": honesty}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--audits", type=float, nargs="+", default=[0.0, 0.1, 0.2, 0.3, 1.0])
    parser.add_argument("--rounds", type=int, default=3000)
    args = parser.parse_args()
    rows = [run(v, args.rounds) for v in args.audits]
    print(f"{'v':>5} {'learners':>9} {'ideal':>7} {'ratio':>6} {'Good':>6} {'P(C|GG)':>8} "
          f"{'|S - L6|':>9}")
    for r in rows:
        print(f"{r['signal_audit']:5.2f} {r['learner_payoff']:9.3f} {r['ideal_payoff']:7.3f} "
              f"{r['ratio']:6.3f} {r['good_fraction']:6.3f} {r['cooperation_with_good']:8.3f} "
              f"{r['signal_dishonesty']:9.3f}")
    print(json.dumps(rows))


if __name__ == "__main__":
    main()

"""Influence attribution (agents/attribution.py, reciprocity/attribution_report.py).

The decomposition is checked against independent references: the learner's own gradient
(backward through the objective RG trains on, and in parameter space for tabular and MLP
policies), finite differences of the model with the tables perturbed in one round only (the
delay grouping), closed forms of the cost paid and of what recipients receive (computed here by
hand), and the structure the theory dictates (a signal never pays in the round it is given; the
cost is paid at once; the recipient's receipt is not in the learner's objective).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from world_fixtures import fill_learned_world

from reciprocity.agents.attribution import attribute, channels
from reciprocity.agents.model import advance, discount_weights, payoffs_by_round, prepare
from reciprocity.agents.rg import ReciprocityGradient, RGConfig
from reciprocity.attribution_report import (
    QUICK_PLAN,
    SECTION_END,
    SECTION_START,
    write_section,
)
from reciprocity.cli import main
from reciprocity.envs import EnvConfig, get_scenario, scenarios
from reciprocity.train import TrainConfig, train

torch.set_num_threads(1)

#: scenarios with and without institutions, u < 1, one and seven learners
AUDIT_AND_MAJORITY = EnvConfig.from_kwargs(
    population=["focal", "focal"] + ["L6"] * 5 + ["alld+L6"] * 2, benefit=3.0, cost=1.0,
    execution_error=0.05, assessment_error=0.03, update_probability=0.7, signal_audit=0.5,
    audit_norm="L6", observers_per_interaction=3)
CASES = {
    "flagship": get_scenario("discriminators-vs-defectors-v0").env_config,
    "slow": get_scenario("L6-slow-v0").env_config,
    "many-learners-audit": get_scenario("many-learners-audit-v0").env_config,
    "many-learners-majority": get_scenario("many-learners-majority-v0").env_config,
    "audit-and-majority": AUDIT_AND_MAJORITY,
}


def random_learner(env_config, kind="tabular", horizon=12, gamma=0.95, seeds=2, games=3,
                   seed=0, world="oracle", tail=0):
    """A float64 RG learner with a random policy, random estimators and a random start; with
    ``world="learned"`` its world model holds random per-learner estimates of the numbers."""
    f, n = env_config.focal_slots.size, env_config.num_agents
    learner = ReciprocityGradient(RGConfig(horizon=horizon, gamma=gamma, policy=kind,
                                           hidden=8, world_model=world, tail_rounds=tail),
                                  env_config,
                                  (seeds, f), seed=seed)
    learner.policy.double()
    if world == "learned":  # as if fitted: per-learner estimates of every number
        fill_learned_world(learner.world, seed, env_config.params.observers_per_interaction)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in learner.policy.parameters():
            p.add_(torch.randn(p.shape, generator=gen, dtype=p.dtype))
    est_a = torch.rand(seeds, n, 4, generator=gen, dtype=torch.float64)
    est_s = torch.rand(seeds, n, 8, generator=gen, dtype=torch.float64)
    start = torch.rand(seeds, games, n, generator=gen, dtype=torch.float64)
    start[:, 0] = (start[:, 0] > 0.3).double()  # one start of known (0/1) reputations
    return learner, start, est_a, est_s


# ----------------------------------------------------------------------------------------------
# The parts sum to the learner's gradient
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("world", ["oracle", "learned"])
@pytest.mark.parametrize("kind", ["tabular", "mlp"])
@pytest.mark.parametrize("case", list(CASES))
def test_parts_sum_to_the_learners_gradient(case, kind, world):
    """Sum over channels and delays = dJ/dP of RG's objective (both heads), and, mapped to the
    policy's parameters, = the gradient RG's own backward() leaves in .grad; the value is the
    objective's. With a learned world the attribution uses the learner's own (per-learner)
    estimates of the numbers, as its objective does."""
    learner, start, est_a, est_s = random_learner(CASES[case], kind, world=world)
    att = attribute(learner, start, est_a, est_s)
    objective = learner.objective(start, est_a, est_s)
    np.testing.assert_allclose(att.value, objective.detach().numpy(), rtol=0, atol=1e-12)
    for head in ("action", "signal"):
        np.testing.assert_allclose(att.total(head), att.model_gradient[head], rtol=0, atol=1e-6)
        assert np.abs(att.model_gradient[head]).max() > 1e-4  # a non-trivial gradient
    learner.policy.zero_grad()
    objective.sum().backward()
    params = list(learner.policy.parameters())
    for i, param in enumerate(params):
        summed = sum(att.parameter_gradient[c.name][i] for c in att.channels)
        np.testing.assert_allclose(summed.numpy(), param.grad.numpy(), rtol=0, atol=1e-6)
    assert att.sum_error() < 1e-6


@pytest.mark.parametrize("case", ["slow", "audit-and-majority"])
def test_parts_sum_to_the_learners_gradient_with_a_tail(case):
    """With a tail (the rounds after the horizon valued as K more model rounds) the tail's
    rounds are delays H..H+K-1, and the parts still sum to the objective's gradient."""
    learner, start, est_a, est_s = random_learner(CASES[case], horizon=6, tail=3)
    att = attribute(learner, start, est_a, est_s)
    objective = learner.objective(start, est_a, est_s)
    np.testing.assert_allclose(att.value, objective.detach().numpy(), rtol=0, atol=1e-12)
    for head in ("action", "signal"):
        assert att.gradient[att.head_channels(head)[0].name].shape[-2] == 6 + 3
        np.testing.assert_allclose(att.total(head), att.model_gradient[head], rtol=0, atol=1e-6)
    assert att.sum_error() < 1e-6
    # the tail matters: without it the same learner's value is another
    plain, *inputs = random_learner(CASES[case], horizon=6)
    assert np.abs(att.value - plain.objective(*inputs).detach().numpy()).max() > 1e-3


def test_delays_match_finite_differences_of_one_round():
    """Perturb the learner's tables in round s only (the model's own shared tables, no site
    copies): the central difference of w_t payoff_t, summed over s = t - d, is the delay-d part
    summed over channels."""
    env_config = CASES["audit-and-majority"]
    horizon = 5
    learner, start, est_a, est_s = random_learner(env_config, horizon=horizon, gamma=0.9,
                                                  seeds=1, games=2)
    att = attribute(learner, start, est_a, est_s)
    params = learner.params
    own = {"action": learner.policy.action_probs().detach(),
           "signal": learner.policy.signal_probs().detach()}
    weights, norm = discount_weights(horizon, 0.9)
    audit = learner.audit_norm

    def own_payoffs(perturbed_round, head, context, eps):
        tables = []
        for r in range(horizon):
            mine = {h: t.clone() for h, t in own.items()}
            if r == perturbed_round:
                mine[head][..., context] += eps
            action, signal = (x[:, :, None] for x in learner_tables(learner, mine, est_a, est_s))
            tables.append(prepare(action, signal,
                                  observers_per_interaction=params.observers_per_interaction,
                                  audit_norm=audit))
        payoffs = payoffs_by_round(start[:, None], tables, benefit=params.benefit,
                                   cost=params.cost,
                                   update_probability=params.update_probability,
                                   signal_audit=params.signal_audit)
        return [w / norm * learner.own_entry(x).mean(-1)
                for w, x in zip(weights, payoffs, strict=True)]

    eps = 1e-6
    for head, size in (("action", 4), ("signal", 8)):
        by_delay = sum(att.gradient[c.name] for c in att.head_channels(head))  # (1, F, H, K)
        for context in range(size):
            fd = np.zeros((env_config.focal_slots.size, horizon))
            for s in range(horizon):
                plus = own_payoffs(s, head, context, eps)
                minus = own_payoffs(s, head, context, -eps)
                for t in range(s, horizon):
                    fd[:, t - s] += ((plus[t] - minus[t]) / (2 * eps))[0].numpy()
            np.testing.assert_allclose(by_delay[0, :, :, context], fd, rtol=1e-6, atol=1e-9)


def learner_tables(learner, own, est_a, est_s):
    from reciprocity.agents.model import learner_tables as tables

    p = learner.params
    return tables(own["action"], own["signal"], est_a[:, None], est_s[:, None],
                  learner.slot_mask, execution_error=p.execution_error,
                  assessment_error=p.assessment_error)


# ----------------------------------------------------------------------------------------------
# What the theory says about channels and delays
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("case", ["flagship", "audit-and-majority"])
def test_channels_reach_the_payoff_when_the_rules_say(case):
    """The cost is paid in the round of the donation (delay 0 only); a reputation changes at the
    end of the round, so every other channel is exactly zero at delay 0 — in particular a signal
    never pays in the round it is given; what the recipient receives is not in the learner's
    objective (exactly zero)."""
    learner, start, est_a, est_s = random_learner(CASES[case], horizon=8)
    att = attribute(learner, start, est_a, est_s)
    names = {c.name for c in att.channels}
    expected = {"own_donation", "self_assessment", "recipient_receipt"}
    if case == "flagship":
        assert names == expected | {"donors_assessment"}
    else:
        assert names == expected | {"observers_audit", "majority_verdict", "own_audit"}
    for c in att.channels:
        g = att.gradient[c.name]
        if c.name == "own_donation":
            assert np.all(g[..., 1:, :] == 0) and np.abs(g[..., 0, :]).max() > 1e-3
        elif c.name == "recipient_receipt":
            assert np.all(g == 0)
        else:
            assert np.all(g[..., 0, :] == 0)
            assert np.abs(g).max() > 1e-6, c.name  # the channel is alive at longer delays


def test_one_round_horizon_leaves_only_the_cost():
    """With H = 1 nothing the learner does can come back: the whole gradient is the cost, and it
    equals the closed form -c (1 - e) P(x, y) for a donor of reputation x meeting a recipient of
    reputation y (known reputations, averaged over the starts)."""
    env_config = CASES["many-learners-audit"]
    learner, start, est_a, est_s = random_learner(env_config, horizon=1, games=4)
    start = (start > 0.5).double()
    att = attribute(learner, start, est_a, est_s)
    for c in att.channels:
        if c.name != "own_donation":
            assert np.all(att.gradient[c.name] == 0)
    p = learner.params
    n = env_config.num_agents
    rep = start.numpy()                                                    # (S, B, N)
    expected = np.zeros((*att.gradient["own_donation"].shape[:2], 4))
    for j, slot in enumerate(env_config.focal_slots):
        x = rep[..., slot]
        q = (rep.sum(-1) - x) / (n - 1)                                    # recipient Good
        for ctx, (rx, ry) in enumerate([(0, 0), (0, 1), (1, 0), (1, 1)]):
            px = x if rx else 1 - x
            py = q if ry else 1 - q
            expected[:, j, ctx] = -p.cost * (1 - p.execution_error) * (px * py).mean(-1)
    np.testing.assert_allclose(att.gradient["own_donation"][..., 0, :], expected, rtol=1e-12,
                               atol=1e-15)
    np.testing.assert_allclose(att.model_gradient["signal"], 0, atol=0)


def test_the_receipt_site_moves_the_recipients_payoffs():
    """The recipient's-receipt channel is zero for the learner because the receipt belongs to
    others, not because the copy is disconnected: through that site alone, the others' payoffs
    move by b / (N - 1) P(x) sum_{r != i} P_r(y) per unit of executed-C probability."""
    n, slot, benefit = 5, 2, 3.0
    gen = torch.Generator().manual_seed(4)
    p = torch.rand(n, generator=gen, dtype=torch.float64)
    action = torch.rand(n, 4, generator=gen, dtype=torch.float64)
    signal = torch.rand(n, 8, generator=gen, dtype=torch.float64)
    copy = action.clone().requires_grad_(True)
    tables = prepare(action, signal, sites={"receipt": copy})
    _, payoff = advance(p, tables, benefit=benefit, cost=1.0, update_probability=1.0)
    others = torch.arange(n) != slot
    grad_others = torch.autograd.grad(payoff[others].sum(), copy, retain_graph=True)[0][slot]
    w = torch.stack((1 - p, p), dim=-1)
    expected = benefit / (n - 1) * w[slot][:, None] * w[others].sum(0)[None, :]
    np.testing.assert_allclose(grad_others.numpy(), expected.flatten().numpy(), rtol=1e-12)
    grad_own = torch.autograd.grad(payoff[slot], copy)[0][slot]
    assert torch.all(grad_own == 0)


def test_unknown_site_is_a_named_error():
    with pytest.raises(ValueError, match="sites: unknown site"):
        prepare(torch.rand(3, 4), torch.rand(3, 8), sites={"gossip": torch.rand(3, 8)})


# ----------------------------------------------------------------------------------------------
# Shares
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["tabular", "mlp"])
def test_value_change_shares_predict_a_small_step(kind):
    """The value-change parts sum to |g|^2 (first order), their shares to 1, and a measured step
    of length eps along g changes J by eps |g| up to O(eps^2); the gradient shares of each head
    sum to 1."""
    learner, start, est_a, est_s = random_learner(CASES["many-learners-audit"], kind)
    att = attribute(learner, start, est_a, est_s, step_length=1e-4)
    squared = sum((g**2).reshape(*g.shape[:2], -1).sum(-1)
                  for g in att.model_parameter_gradient).numpy()
    change = att.value_change()
    np.testing.assert_allclose(sum(v.sum(-1) for v in change.values()), squared, rtol=1e-10)
    shares = att.value_change_share()
    np.testing.assert_allclose(sum(v.sum(-1) for v in shares.values()), 1.0, rtol=1e-10)
    np.testing.assert_allclose(att.measured_value_change, 1e-4 * np.sqrt(squared), rtol=1e-2)
    for head in ("action", "signal"):
        np.testing.assert_allclose(att.gradient_share(head).sum(axis=(-1, -2)), 1.0, rtol=1e-10)
        np.testing.assert_allclose(att.cumulative_share(head)[..., -1], 1.0, rtol=1e-10)


def test_bad_inputs_are_named_errors():
    learner, start, est_a, est_s = random_learner(CASES["flagship"], horizon=3)
    with pytest.raises(ValueError, match="est_action: expected shape"):
        attribute(learner, start, est_a[:, :4], est_s)
    with pytest.raises(ValueError, match="start: expected shape"):
        attribute(learner, start[0], est_a, est_s)
    with pytest.raises(ValueError, match="est_signal: probabilities"):
        attribute(learner, start, est_a, est_s + 1)
    with pytest.raises(ValueError, match="step_length"):
        attribute(learner, start, est_a, est_s, step_length=0.0)
    learner.config.horizon = 0
    with pytest.raises(ValueError, match="horizon must be a positive integer"):
        attribute(learner, start, est_a, est_s)


# ----------------------------------------------------------------------------------------------
# The command
# ----------------------------------------------------------------------------------------------

def attribute_cli(*args) -> int:
    return main(["attribute", *map(str, args), "--quiet"])


@pytest.mark.parametrize("algo, tail", [("rg", 0), ("ppo", 0), ("rg", 3)])
def test_attribute_a_trained_run(tmp_path, algo, tail):
    """A run folder (two seeds for RG) -> attribution.json with every learner, the parts summing
    to the gradient, both figures' file; an RG run keeps its horizon (and its tail, whose
    rounds are delays after the horizon), others get RG's."""
    seeds = (0, 1) if algo == "rg" else (0,)
    run = tmp_path / "run"
    train(TrainConfig("discriminators-vs-defectors-v0", algo=algo, seeds=seeds, rounds=20,
                      num_envs=2, eval_envs=4, eval_rounds=5,
                      algo_config={"horizon": 7, "tail_rounds": tail} if algo == "rg" else {}),
          run, progress=False)
    assert attribute_cli("--run", run, "--out", tmp_path / "att", "--games", 2) == 0
    record = json.loads((tmp_path / "att" / "attribution.json").read_text())
    assert (tmp_path / "att" / "attribution.png").stat().st_size > 0
    assert record["model"]["horizon"] == (7 if algo == "rg" else RGConfig().horizon)
    assert [entry["seed"] for entry in record["learners"]] == list(seeds)
    assert record["sum_error"] < 1e-6
    learner = record["learners"][0]
    metrics = json.loads(next(run.glob("**/metrics.json")).read_text())
    assert learner["policy"] == metrics["policies"]["agent_0"]
    for head in ("action", "signal"):
        channels_ = learner["heads"][head]["channels"]
        summed = np.sum([c["gradient"] for c in channels_.values()], axis=0)
        np.testing.assert_allclose(summed, learner["heads"][head]["model_gradient"], atol=1e-6)
        assert len(record["summary"][head]["cumulative_share_by_delay"]) == \
            record["model"]["horizon"] + tail
    assert record["model"].get("tail_rounds", 0) == tail
    assert record["summary"]["signal"]["largest_gradient_at_delay_0"] == 0.0


def test_attribute_works_on_every_catalogue_scenario(tmp_path):
    """--scenario ID --policy SPEC on every registered scenario (short horizon and record; the
    figure is drawn by the other tests)."""
    for sid in scenarios():
        out = tmp_path / sid
        assert attribute_cli("--scenario", sid, "--policy", "disc+L6", "--out", out,
                             "--horizon", 3, "--games", 2, "--rounds", 3, "--no-figure") == 0, sid
        assert not (out / "attribution.png").exists()
        record = json.loads((out / "attribution.json").read_text())
        assert record["sum_error"] < 1e-6
        env_config = get_scenario(sid).env_config
        assert len(record["learners"]) == env_config.focal_slots.size
        assert [c["name"] for c in record["channels"]] == \
            [c.name for c in channels(env_config.params)]


@pytest.mark.parametrize("args, message", [
    (["--scenario", "nope-v0", "--policy", "L6"], "scenario: unknown id 'nope-v0'"),
    (["--scenario", "L6-v0"], "attribute needs --run DIR, --scenario ID --policy SPEC"),
    (["--scenario", "L6-v0", "--policy", "L99"], "policy"),
    (["--scenario", "L6-v0", "--policy", "L6", "--horizon", "0"],
     "horizon must be at least 1, got 0"),
    (["--scenario", "L6-v0", "--policy", "L6", "--horizon", "-2"],
     "horizon must be at least 1, got -2"),
    (["--scenario", "L6-v0", "--policy", "L6", "--gamma", "1.5"],
     "gamma must lie in [0, 1], got 1.5"),
    (["--scenario", "L6-v0", "--policy", "L6", "--games", "0"], "games must be a positive"),
    (["--scenario", "L6-v0", "--policy", "L6", "--quick"], "--doc and --quick go with --report"),
    (["--run", ".", "--policy", "L6"], "--policy goes with --scenario"),
])
def test_bad_command_lines_are_one_line_errors(tmp_path, capsys, args, message):
    assert attribute_cli(*args, "--out", tmp_path) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1
    assert not (tmp_path / "attribution.json").exists()


def test_run_folders_without_a_policy_are_one_line_errors(tmp_path, capsys):
    """No metrics.json; a metrics.json without the resolved scenario; one without policy tables
    (e.g. a run of another library); a table with a missing context or a value outside [0, 1]."""
    scenario = get_scenario("L6-v0").to_dict()
    good = {"algo": "ppo", "seed": 0, "config": {"scenario": scenario},
            "policies": {"agent_0": {"action": {"GG": 1.0, "GB": 0.0, "BG": 1.0, "BB": 0.0},
                                     "signal": {c: 0.5 for c in ("GGC", "GGD", "GBC", "GBD",
                                                                 "BGC", "BGD", "BBC", "BBD")}}}}
    missing_context = json.loads(json.dumps(good))
    del missing_context["policies"]["agent_0"]["signal"]["BBD"]
    outside = json.loads(json.dumps(good))
    outside["policies"]["agent_0"]["action"]["GG"] = 1.5
    cases = [(None, "no metrics.json"),
             ({"algo": "rg", "policies": good["policies"]}, "no config.scenario"),
             ({**good, "policies": {}}, "no RG-compatible policy for agent_0"),
             (missing_context, "no RG-compatible policy for agent_0 (signal head)"),
             (outside, "not a table of probabilities in [0, 1]")]
    for i, (metrics, message) in enumerate(cases):
        run = tmp_path / f"run{i}"
        run.mkdir()
        if metrics is not None:
            (run / "metrics.json").write_text(json.dumps(metrics))
        assert attribute_cli("--run", run, "--out", tmp_path / f"out{i}") == 2
        err = capsys.readouterr().err
        assert err.startswith("error: run: ") and message in err and err.count("\n") == 1
    # the same folder with a good policy works
    run = tmp_path / "good"
    run.mkdir()
    (run / "metrics.json").write_text(json.dumps(good))
    assert attribute_cli("--run", run, "--out", tmp_path / "ok", "--horizon", 3, "--games", 2,
                         "--rounds", 3) == 0


def test_quick_report_writes_records_figures_and_the_section(tmp_path):
    """The CI quick path of the results section: tiny budgets, a copy of the doc."""
    doc = tmp_path / "results.md"
    doc.write_text(f"# Results\n\nbefore\n\n{SECTION_START}\nold\n{SECTION_END}\n\nafter\n")
    assert main(["attribute", "--report", "--quick", "--out", str(tmp_path / "attribution"),
                 "--doc", str(doc), "--quiet"]) == 0
    text = doc.read_text()
    assert "before" in text and "after" in text and "old" not in text
    assert text.count(SECTION_START) == 1 and text.count(SECTION_END) == 1
    for name, *_ in QUICK_PLAN["entries"]:
        record = json.loads((tmp_path / "attribution" / name / "attribution.json").read_text())
        assert record["sum_error"] < 1e-6
        assert f"attribution/{name}/attribution.png" in text
    assert (tmp_path / "attribution" / "overview.png").stat().st_size > 0


def test_section_is_appended_when_the_markers_are_missing(tmp_path):
    doc = tmp_path / "results.md"
    doc.write_text("# Results\n")
    write_section(doc, "table")
    write_section(doc, "new table")
    text = doc.read_text()
    assert text == f"# Results\n\n{SECTION_START}\nnew table\n{SECTION_END}\n"


def test_overview_and_entry_figures_are_readable(tmp_path, monkeypatch):
    """The overview of the report's records (those of the results page, docs/attribution) is
    four panels, not a row of three per entry, with no text below 7 pt, nothing cut off or
    overlapping; every cumulative-share axis says why a share may leave [0, 1]."""
    from pathlib import Path

    from figure_checks import captured_figures, clipped, overlapping
    from matplotlib.text import Text

    from reciprocity import attribution_report

    folder = Path(__file__).resolve().parents[1] / "docs" / "attribution"
    records = [json.loads(p.read_text()) for p in sorted(folder.glob("*/attribution.json"))]
    assert len(records) >= 7
    with captured_figures(monkeypatch, attribution_report) as figures:
        attribution_report.plot_overview(records, tmp_path / "overview.png")
        attribution_report.plot_record(records[0], tmp_path / "attribution.png")
    overview, _entry = figures
    panels = [ax for ax in overview.axes if ax.get_label() != "<colorbar>"]
    assert len(panels) == 4
    sizes = [t.get_fontsize() for t in overview.findobj(Text) if t.get_text().strip()]
    assert min(sizes) >= 7
    for fig in figures:
        assert clipped(fig) == [] and overlapping(fig) == []
    cumulative = [ax for fig in figures for ax in fig.axes if "reached by delay" in ax.get_ylabel()]
    assert len(cumulative) == 3
    assert all("opposite sign cancel" in ax.get_ylabel() for ax in cumulative)


def test_the_report_fits_the_learned_world_to_its_record():
    """RG's default model learns the game's numbers: the report fits them to the record it
    attributes on, so that the attribution is the oracle's to within the estimates' error — not
    the priors' (c = 0 would zero the cost channel, mu = 0.5 every signal's effect)."""
    from dataclasses import replace

    from reciprocity.attribution_report import attribute_subject, from_policy

    subject = from_policy("L6-v0", "disc+L6")
    assert subject.config.world_model == "learned"
    learned, _ = attribute_subject(subject, horizon=10, games=8, rounds=60)
    oracle, _ = attribute_subject(replace(subject, config=replace(subject.config,
                                                                  world_model="oracle")),
                                  horizon=10, games=8, rounds=60)
    for head in ("action", "signal"):
        reference = oracle.model_gradient[head]
        assert np.abs(reference).max() > 1e-3   # both heads have a gradient here
        np.testing.assert_allclose(learned.model_gradient[head], reference,
                                   atol=0.05 * np.abs(reference).max())
    cost = [c.name for c in learned.channels if c.site == "donation"]
    assert cost and np.abs(learned.gradient[cost[0]]).sum() > 1e-3

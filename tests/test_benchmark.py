"""The results benchmark on its ``--quick`` settings: every output is produced, consistent with
the runs it reports, and the claim map and tables say what the records say."""

import dataclasses
import json
import math

import numpy as np
import pytest

from reciprocity.benchmark import TABLE_END, TABLE_START, quick_config, run_benchmark
from reciprocity.cli import main
from reciprocity.curves import curve_points
from reciprocity.learners import get_algorithm
from reciprocity.runfolder import to_json_text
from reciprocity.tuning import TABLE_END as TUNING_END
from reciprocity.tuning import TABLE_START as TUNING_START
from reciprocity.tuning import TuningConfig, candidates, search_space, selected_params


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench")
    out = root / "results"
    (root / "results.md").write_text(f"# Results\n\nintro\n\n{TABLE_START}\nold\n{TABLE_END}\n\n"
                                     "## Discussion\nkept text\n")
    (root / "agents.md").write_text(f"# Learners\n\n{TUNING_START}\nold\n{TUNING_END}\nafter\n")
    cfg = quick_config()
    results = run_benchmark(cfg, out, tuning_doc=root / "agents.md", progress=False,
                            command="reciprocity benchmark --quick --out results")
    return cfg, root, out, results


def test_every_cell_and_output_is_produced(quick):
    cfg, _root, out, results = quick
    saved = json.loads((out / "results.json").read_text())
    assert saved == json.loads(to_json_text(results))  # undefined values (NaN) as null
    records = results["records"]
    assert {(r["scenario"], r["algo"], r["policy_class"], r["budget"]) for r in records} == {
        (s, a, p, b) for s in cfg.scenarios for a in cfg.algos for p in cfg.policies
        for b in cfg.budgets}
    for png in ("curves_discriminative.png", "curves_degenerate.png",
                "curves_multi-learner.png", "policy_heatmaps.png", "learning_curves.png",
                *(f"{s}.png" for s in cfg.scenarios)):
        assert (out / png).stat().st_size > 1000
    for s in cfg.scenarios:
        ref = json.loads((out / "references" / f"{s}.json").read_text())
        assert ref["burn_in"] >= 0 and "episode_payoff" in ref
    tuning = json.loads((out / "tuning.json").read_text())
    assert set(tuning["selected"]) == set(cfg.algos)
    # stage 5: the institutions study, in its own run folder, with its own block of the page
    study = json.loads((out / "institutions" / "results.json").read_text())
    icfg = cfg.institutions
    added = [i for i in icfg.institutions if i in icfg.added_institutions]
    assert len(study["records"]) == len(icfg.institutions) * 3 * 3 + len(added) * (
        3 * len(icfg.added_algos) + 2 * len(icfg.shared_algos))  # shared: not after a warm-up
    assert len(study["basin"]) == len(icfg.basin_mixes) * len(icfg.basin_institutions) * \
        len(icfg.basin_algos)
    assert study["command"] == "reciprocity benchmark --quick --out results"
    assert "<!-- institutions:start -->" in (out.parent / "results.md").read_text()
    # stage 6: what RG must know of the game, on the single-learner scenarios
    world = json.loads((out / "world" / "results.json").read_text())
    single = ["all-cooperators-v0", "L6-v0"]
    assert world["config"]["scenarios"] == single and world["config"]["rounds"] == cfg.main_budget
    assert {(r["model"], r["scenario"]) for r in world["records"]} == \
        {(m, s) for m in world["config"]["models"] for s in single}
    learned = next(r for r in world["records"] if (r["model"], r["scenario"]) ==
                   ("learned", "L6-v0"))
    metrics = json.loads((out / "world" / learned["run"] / "seed_0" / "metrics.json").read_text())
    assert metrics["config"]["algo"]["world_model"] == "learned"
    assert set(metrics["learner"]["world_model"]) >= {"benefit", "execution_error", "matching"}
    wrong = next(r for r in world["records"] if r["model"] == "norm-wrong")
    assert wrong["model_options"] == {"world_model": "oracle", "others_norm": "image_scoring"}
    oracle = {r["scenario"]: r for r in world["records"] if r["model"] == "oracle"}
    assert world["relative"]["learned"]["L6-v0"] == pytest.approx(
        learned["per_interaction_payoff"]["mean"]
        / oracle["L6-v0"]["per_interaction_payoff"]["mean"])
    page = (out.parent / "results.md").read_text()
    block = page[page.index("<!-- world-model:start -->"):page.index("<!-- world-model:end -->")]
    assert "| learned from experience (the default) |" in block
    assert "Target (the learned model" in block
    # stage 7: wall time to the reference at tuned settings, each seed alone
    walltime = json.loads((out / "walltime" / "results.json").read_text())
    assert walltime["config"]["scenarios"] == ["L6-v0"]  # the discriminative single learner
    assert {(r["algo"], r["seed"]) for r in walltime["runs"]} == \
        {(a, s) for a in cfg.algos for s in range(cfg.seeds)}
    for r in walltime["runs"]:  # one run per group of budgets with the same tuned settings
        tuned = [selected_params(json.loads((out / "tuning.json").read_text()), r["algo"],
                                 "tabular", b) for b in r["budgets"]]
        assert all(t == r["params"] for t in tuned)
    assert set(walltime["summary"]) == set(cfg.algos)
    assert "<!-- walltime:start -->" in page


def test_records_hold_every_seed_and_respect_ranges(quick):
    cfg, _, out, results = quick
    for r in results["records"]:
        assert r["seeds"] == list(range(cfg.seeds)) and len(r["per_seed"]) == cfg.seeds
        assert r["rounds"] == r["budget"] and r["interactions_per_seed"] == r["budget"] * 4
        for key in ("adherence", "reference_performance"):
            stat = r[key]
            if stat["mean"] == stat["mean"]:
                assert stat["low"] <= stat["mean"] <= stat["high"]
        assert 0 <= r["adherence"]["low"] and r["adherence"]["high"] <= 1
        for head in ("action", "signal"):
            shares = [r["heads"][head][d]["mean"] for d in r["heads"][head]]
            assert sum(shares) == pytest.approx(1.0)
        for seed in r["per_seed"]:
            for heads in seed["heads"].values():
                assert len(heads["action"]["probs"]) == 4 and len(heads["signal"]["probs"]) == 8
        # the record is the run's own evaluation at that budget: same payoffs, same protocol
        metrics = json.loads((out / r["run"] / "seed_0" / "metrics.json").read_text())
        entry = next(e for e in metrics["budgets"] if e["rounds"] == r["budget"])
        assert entry["per_interaction_payoff"] == r["per_seed"][0]["per_interaction_payoff"]
        assert entry["protocol"]["burn_in"] == r["burn_in"]
        assert metrics["config"]["algo"]["policy"] == r["policy_class"]
    groups = {r["scenario"]: r["group"] for r in results["records"]}
    assert groups == {"all-cooperators-v0": "degenerate", "L6-v0": "discriminative",
                      "many-learners-v0": "multi-learner"}


def test_runs_use_the_tuned_hyper_parameters_and_are_shared_along_a_curve(quick):
    _cfg, _, out, results = quick
    tuning = json.loads((out / "tuning.json").read_text())
    runs = {}
    for r in results["records"]:
        expected = selected_params(tuning, r["algo"], r["policy_class"], r["budget"])
        assert r["params"] == expected
        runs.setdefault(r["run"], set()).add(json.dumps(r["params"], sort_keys=True))
    assert all(len(p) == 1 for p in runs.values())  # one configuration per run
    for run in runs:  # a run plays its largest budget and serves every budget it holds
        metrics = json.loads((out / run / "seed_0" / "metrics.json").read_text())
        assert metrics["rounds"] == max(e["rounds"] for e in metrics["budgets"])


def test_tuning_gives_every_algorithm_the_same_effort():
    cfg = TuningConfig()
    counts = {(a, p): len(candidates(a, p, cfg)) for a in cfg.algos for p in cfg.policies}
    assert set(counts.values()) == {cfg.configurations}
    for a in cfg.algos:
        for p in cfg.policies:
            grid = candidates(a, p, cfg)
            assert len({json.dumps(c, sort_keys=True) for c in grid}) == len(grid)
            for c in grid:  # every searched rounds_per_update divides every budget
                assert all(b % c["rounds_per_update"] == 0 for b in cfg.budgets)
    assert not set(cfg.seeds) & set(range(5))  # tuning seeds are not reported seeds
    # spaces of equal size: every algorithm's draws are equally dense
    sizes = {(a, p): math.prod(len(v) for v in search_space(a, p, TuningConfig(
        budgets=(50, 100, 200, 400, 1000, 2000))).values())
        for a in cfg.algos for p in cfg.policies}
    assert set(sizes.values()) == {720}, sizes
    # defaults treated alike: by default no algorithm's hand-set default is put among its
    # candidates (they are the first distinct draws of the seeded permutation of its grid); with
    # include_defaults every algorithm's projected default comes first
    import itertools

    import numpy as np

    for a in cfg.algos:
        algorithm = get_algorithm(a)
        for p in cfg.policies:
            space = search_space(a, p, cfg)
            grid = [dict(zip(space, v, strict=True)) for v in itertools.product(*space.values())]
            rng = np.random.default_rng([cfg.search_seed, algorithm.search_key(),
                                         ("tabular", "mlp").index(p)])
            drawn = [grid[k] for k in rng.permutation(len(grid))[:cfg.configurations]]
            assert candidates(a, p, cfg) == drawn
            with_defaults = candidates(a, p, dataclasses.replace(cfg, include_defaults=True))
            defaults = algorithm.defaults()
            assert all(with_defaults[0][k] == getattr(defaults, k) or
                       getattr(defaults, k) not in space[k] for k in space)
            assert with_defaults[1:] == [c for c in drawn if c != with_defaults[0]][
                :cfg.configurations - 1]


def test_curve_points_average_the_scenarios_seed_by_seed():
    """Two scenarios, two seeds: the fraction of the reference is the mean over scenarios of
    each seed's fraction (a scenario with reference 0 is left out), then bootstrapped."""
    def record(scenario, reference, fractions, diagnoses):
        return {"group": "discriminative", "algo": "ppo", "policy_class": "tabular",
                "budget": 100, "interactions_per_seed": 1600, "scenario": scenario,
                "reference_payoff": reference, "wall_seconds": 2.0,
                "reference_heads": {"action": {"diagnosis": "context-sensitive"},
                                    "signal": {"diagnosis": "constant"}},
                "per_seed": [{"reference_performance": f,
                              "heads": {"agent_0": {"action": {"diagnosis": d},
                                                    "signal": {"diagnosis": "undecided"}}}}
                             for f, d in zip(fractions, diagnoses, strict=True)]}
    records = [record("a", 2.0, [0.5, 0.7], ["constant", "context-sensitive"]),
               record("b", 1.0, [0.9, 1.0], ["constant", "constant"]),
               record("c", 0.0, [np.nan, np.nan], ["undecided", "undecided"])]
    (point,) = curve_points(records)
    assert point["fraction_of_reference"]["mean"] == pytest.approx((0.7 + 0.85) / 2)
    assert (point["fraction_of_reference"]["low"], point["fraction_of_reference"]["high"]) == \
        pytest.approx((0.7, 0.85))
    assert point["heads"]["action"]["constant"]["mean"] == pytest.approx(3 / 6)
    assert point["collapsed"]["action"]["mean"] == pytest.approx(3 / 6)
    assert point["collapsed"]["signal"]["mean"] != point["collapsed"]["signal"]["mean"]  # nan


def test_results_and_tuning_blocks_are_refreshed(quick):
    _cfg, root, _out, _results = quick
    text = (root / "results.md").read_text()
    assert "kept text" in text and "intro" in text and "\nold\n" not in text
    assert "Generated by `reciprocity benchmark --quick --out results`" in text
    assert "### Claim map" in text and "| discriminative | 10 | tabular |" in text
    assert "| L6-v0 | discriminative | rg | tabular | 20 |" in text
    for group in ("discriminative", "degenerate", "multi-learner"):
        assert f"curves_{group}.png" in text
    agents = (root / "agents.md").read_text()
    assert "after" in agents and "\nold\n" not in agents
    assert "Generated by `reciprocity benchmark --quick --out results`" in agents
    assert "| rg | tabular | 10 |" in agents
    # the tuning table states each search space's size
    size = math.prod(len(v) for v in search_space("rg", "tabular", _cfg.tuning).values())
    row = next(line for line in agents.splitlines() if line.startswith("| rg (tabular) |"))
    assert row.endswith(f"| {size} |") and "| points in the space |" in agents


def test_flagship_command_prints_a_table(tmp_path, capsys):
    assert main(["flagship", "--out", str(tmp_path / "f"), "--seeds", "1", "--rounds", "50",
                 "--workers", "1", "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "| discriminators-vs-defectors-v0 | discriminative | rg | tabular | 50 |" in printed
    assert (tmp_path / "f" / "discriminators-vs-defectors-v0.png").is_file()


def test_figures_fit_and_tell_policy_classes_apart(quick, tmp_path, monkeypatch):
    """Nothing is cut off or overlaps in the benchmark's figures, also with one policy class and
    one scenario (as the flagship draws them) or many scenarios (the results page); the tabular
    and MLP lines of an algorithm differ in colour and marker; wall-clock is in seconds."""
    from figure_checks import captured_figures, clipped, overlapping
    from matplotlib.colors import to_rgba

    from reciprocity import benchmark, curves

    cfg, _root, out, results = quick
    refs = {s: json.loads((out / "references" / f"{s}.json").read_text()) for s in cfg.scenarios}
    records = results["records"]
    main = [r for r in records if r["budget"] == cfg.main_budget]
    with captured_figures(monkeypatch, benchmark, curves) as figures:
        curves.plot_curves(tmp_path, [p for p in results["curves"]
                                      if p["policy_class"] == "tabular"], "discriminative",
                           cfg.seeds)  # one column, as the flagship's
        benchmark.plot_policy_heatmaps(tmp_path, ["L6-v0"], [
            r for r in main if r["policy_class"] == "tabular"], refs)  # one panel
        benchmark.plot_policy_heatmaps(tmp_path, list(cfg.scenarios) * 7, main, refs)  # 21
        benchmark.plot_scenario(tmp_path, "L6-v0", [r for r in records
                                                   if r["scenario"] == "L6-v0"],
                                refs["L6-v0"], cfg.main_budget)
    for fig in figures:
        assert clipped(fig) == [] and overlapping(fig) == [], fig.axes[0].get_title()
    clock = figures[0].axes[1]
    labels = [t.get_text() for t in clock.get_yticklabels() if t.get_text()]
    assert labels and all(t.endswith(" s") for t in labels), labels
    lines = {line.get_label(): line for line in figures[-1].axes[0].lines}
    tabular, mlp = lines["rg (tabular)"], lines["rg (mlp)"]
    assert to_rgba(tabular.get_color()) != to_rgba(mlp.get_color())
    assert tabular.get_marker() != mlp.get_marker()


def test_quick_benchmark_states_one_duration(capsys):
    """The --quick help and the README's command line say the same (measured on 2 busy cores:
    73 s for the curves and the institutions, 2.6 min with the later stages of the page)."""
    from pathlib import Path

    with pytest.raises(SystemExit):
        main(["benchmark", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "paths in 1-3 minutes on 2 cores" in help_text
    assert "OUT/results.md" in help_text
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    line = next(x for x in readme.splitlines() if "benchmark --quick" in x)
    assert "1-3 minutes" in line and "runs/quick/results.md" in line


def test_benchmark_command_errors_are_one_line(tmp_path, capsys):
    assert main(["benchmark", "--quick", "--out", str(tmp_path), "--tuning",
                 str(tmp_path / "missing.json")]) == 2
    assert "error: --tuning" in capsys.readouterr().err


def test_default_curves_cover_the_catalogue_but_the_large_many_learner_variant():
    from reciprocity.benchmark import CURVES_EXCLUDED, BenchmarkConfig
    from reciprocity.envs.scenarios import scenarios

    chosen = BenchmarkConfig().scenarios
    assert set(chosen) | set(CURVES_EXCLUDED) == set(scenarios())
    assert "many-learners-audit-large-v0" not in chosen
    assert {"many-learners-v0", "many-learners-audit-v0", "L6-v0"} <= set(chosen)

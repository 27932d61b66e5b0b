"""The institutions study (a stage of ``reciprocity benchmark``): every cell is run and recorded
as its runs say, the honesty measure matches hand computations, the section and figure are
written, and the stage alone leaves the rest of the benchmark's folder as it is."""

from __future__ import annotations

import json

import pytest
import torch

from reciprocity.cli import main
from reciprocity.envs import get_scenario
from reciprocity.institutions import (
    SECTION_END,
    SECTION_START,
    InstitutionsConfig,
    honesty,
    institution_scenario,
    run_institutions,
)
from reciprocity.runfolder import open_run, to_json_text

torch.set_num_threads(1)

TINY = dict(institutions=("plain", "audit-0.1"), seeds=2, rounds=20, warmup=10, num_envs=2,
            eval_envs=8, large="audit-1.0", large_starts=("warmup",), large_rounds=10,
            large_warmup=5, large_num_envs=2, added_institutions=("audit-0.1",),
            shared_algos=("rg",), basin_mixes=(0.0, 0.5, 1.0),
            basin_institutions=("audit-0.1",), basin_algos=("rg", "ppo"), basin_rounds=10)


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("institutions")
    doc = root / "results.md"
    doc.write_text(f"# Results\n\nintro\n\n{SECTION_START}\nold\n{SECTION_END}\n\nkept text\n")
    cfg = InstitutionsConfig(**TINY)
    results = run_institutions(cfg, root / "results" / "institutions", doc=doc, progress=False,
                               command="reciprocity benchmark --stages institutions")
    return cfg, root, results


def test_every_cell_is_run_and_recorded(study):
    cfg, root, results = study
    out = root / "results" / "institutions"
    assert json.loads((out / "results.json").read_text()) == json.loads(to_json_text(results))
    # rg-la, rg-kant: rows under the added institutions
    assert cfg.added_algos == ("rg-la", "rg-kant")
    cells = [(r["institution"], r["start"], r["algo"], r["shared"]) for r in results["records"]]
    expected = [(i, s, a, False) for i in cfg.institutions for s in cfg.starts
                for a in cfg.algos]
    added = [("audit-0.1", s, a, False) for s in cfg.starts for a in cfg.added_algos]
    shared = [("audit-0.1", s, "rg", True) for s in ("scratch", "ideal")]
    assert cells == [*expected, *added, *shared, ("audit-1.0", "warmup", "rg", False)]
    for r in results["records"]:
        # a shared policy: every learner of a seed has the same tables
        for s in r["per_seed"]:
            m = json.loads((out / r["run"] / f"seed_{s['seed']}" / "metrics.json").read_text())
            assert m["config"]["train"]["algo_config"].get("share_policy", False) == r["shared"]
            tables = [json.dumps(p, sort_keys=True) for p in m["policies"].values()]
            assert (len(set(tables)) == 1) == r["shared"]
        large = r["institution"] == "audit-1.0"
        assert r["seeds"] == [0, 1] and len(r["per_seed"]) == 2
        assert r["rounds"] == (10 if large else 20)  # the warm-up is part of the budget
        assert r["warmup"] == ((5 if large else 10) if r["start"] == "warmup" else 0)
        assert r["init_policy"] == ("disc+L6" if r["start"] == "ideal" else None)
        assert r["reference_kind"] == "ideal_discriminator"
        # the record says what the run folder says
        for s in r["per_seed"]:
            m = json.loads((out / r["run"] / f"seed_{s['seed']}" / "metrics.json").read_text())
            assert m["per_interaction_payoff"] == s["per_interaction_payoff"]
            assert m["config"]["train"]["init_policy"] == r["init_policy"]
            assert m["config"]["train"]["warmup"] == r["warmup"]
            assert s["reference_performance"] == pytest.approx(
                m["per_interaction_payoff"] / r["reference_payoff"])
        assert r["worst_seed_performance"] == min(s["reference_performance"]
                                                  for s in r["per_seed"])
        assert 0.0 <= r["honesty"]["low"] <= r["honesty"]["mean"] <= r["honesty"]["high"] <= 1.0
    assert (out / "institutions.png").stat().st_size > 10_000


def test_the_basin_map_starts_every_learner_at_its_mix(study):
    cfg, root, results = study
    out = root / "results" / "institutions"
    cells = [(r["institution"], r["algo"], r["mix"]) for r in results["basin"]]
    assert cells == [("audit-0.1", a, m) for a in cfg.basin_algos for m in cfg.basin_mixes]
    for r in results["basin"]:
        assert r["rounds"] == 10 and r["warmup"] == 0 and r["start"] == "mix"
        assert r["init_policy"] == (None if r["mix"] == 0 else "disc+L6")
        for s in r["per_seed"]:
            m = json.loads((out / r["run"] / f"seed_{s['seed']}" / "metrics.json").read_text())
            train = m["config"]["train"]
            assert train["init_policy"] == r["init_policy"]
            assert train.get("init_mix", 1.0) == (r["mix"] if r["mix"] else 1.0)
    assert (out / "basin.png").stat().st_size > 10_000


def test_each_institution_is_its_scenario_with_its_audit(study):
    _, root, _ = study
    base = get_scenario("many-learners-audit-v0").to_dict()
    for institution, v in (("audit-0.1", 0.1), ("audit-1.0", 1.0)):
        scenario = institution_scenario(institution)
        data = scenario.to_dict()
        assert scenario.id == f"many-learners-audit-{v:.1f}-v0" and data["signal_audit"] == v
        assert {k: x for k, x in data.items() if k not in ("id", "description",
                                                           "signal_audit")} == \
            {k: x for k, x in base.items() if k not in ("id", "description", "signal_audit")}
        ref = json.loads((root / "results" / "institutions" / "references" /
                          f"{scenario.id}.json").read_text())
        assert ref["scenario_hash"] == scenario.content_hash() and ref["norm"] == "L6"
    assert institution_scenario("plain") is get_scenario("many-learners-v0")
    assert institution_scenario("majority-3").observers_per_interaction == 3


def test_the_section_is_written_between_its_markers(study):
    _, root, results = study
    text = (root / "results.md").read_text()
    assert text.startswith("# Results\n\nintro\n\n") and text.endswith("\n\nkept text\n")
    block = text.split(SECTION_START)[1].split(SECTION_END)[0]
    assert "old" not in block.split("\n")
    assert "Generated by `reciprocity benchmark --stages institutions`" in block
    assert "![institutions](results/institutions/institutions.png)" in block
    main, basin = block.split("**How much of the answer each learner needs**")
    rows = [line for line in main.splitlines() if line.startswith("| ")]
    assert len(rows) == 2 + len(results["records"])  # header, separator, one per record
    assert "| audit v = 0.1 | from scratch | rg, shared policy |" in main
    assert "| audit v = 0.1 | warm-up | rg-la |" in main
    basin_rows = [line for line in basin.splitlines() if line.startswith("| ")]
    assert len(basin_rows) == 2 + len(results["config"]["basin_algos"])
    assert basin_rows[0].count("λ = ") == 3
    for r in results["basin"]:   # every cell: seeds at >= 90% / mean fraction
        f = [s["reference_performance"] for s in r["per_seed"]]
        mean = f"{sum(f) / 2:.2f}".replace("-0.00", "0.00")
        assert f"{sum(x >= 0.9 for x in f)}/2 · {mean}" in basin
    assert "-0.00" not in basin and "default hyper-parameters" in basin
    assert "![basin of attraction](results/institutions/basin.png)" in basin
    assert "| audit v = 0.1 | warm-up | rg |" in block
    targets = [line for line in block.splitlines() if line.startswith("- Target")]
    assert len(targets) == 2  # RG with an audit and a warm-up: v = 0.1 and the larger variant
    for line, r in zip(targets, [r for r in results["records"] if r["algo"] == "rg" and
                                 r["start"] == "warmup" and r["institution"] != "plain"],
                       strict=True):
        assert f"{r['worst_seed_performance']:.1%}" in line
        assert line.endswith("not met.") == (r["worst_seed_performance"] < 0.95)


# -- honesty -------------------------------------------------------------------------------------
L6 = {"GGC": 1, "GGD": 0, "GBC": 0, "GBD": 1, "BGC": 1, "BGD": 0, "BBC": 0, "BBD": 1}


def reference(weights: dict) -> dict:
    return {"policy": {"signal": {k: float(v) for k, v in L6.items()}},
            "visit_share": {"signal": weights}}


def signal_policy(probs: dict) -> dict:
    return {"signal": probs}


def test_honesty_by_hand():
    weights = {"GGC": 0.5, "GGD": 0.1, "GBC": 0.0, "GBD": 0.3, "BGC": 0.05, "BGD": 0.05,
               "BBC": 0.0, "BBD": 0.0}
    ref = reference(weights)
    norm = {k: float(v) for k, v in L6.items()}
    assert honesty(signal_policy(norm), ref) == pytest.approx(1.0)
    assert honesty(signal_policy({k: 1 - v for k, v in norm.items()}), ref) == pytest.approx(0.0)
    assert honesty(signal_policy({k: 0.5 for k in L6}), ref) == pytest.approx(0.5)
    # always Bad: right exactly where stern judging says Bad (GGD, GBC, BGD, BBC)
    assert honesty(signal_policy({k: 0.0 for k in L6}), ref) == pytest.approx(0.1 + 0.05)
    # the ideal start is clipped to 0.95 / 0.05: 95% honest wherever it is met
    clipped = {k: 0.95 if v else 0.05 for k, v in L6.items()}
    assert honesty(signal_policy(clipped), ref) == pytest.approx(0.95)
    # contexts never met do not count
    wrong_unmet = {**norm, "GBC": 1.0, "BBC": 1.0, "BBD": 0.0}
    assert honesty(signal_policy(wrong_unmet), ref) == pytest.approx(1.0)


def test_ideal_start_learners_with_learning_off_are_95_percent_honest(tmp_path):
    """lr = 0 for every algorithm: the learners keep the ideal start, whose signal head is the
    norm clipped to 0.95, so honesty is 0.95 whatever the weights."""
    cfg = InstitutionsConfig(institutions=("audit-0.1",), starts=("ideal",), seeds=2,
                             rounds=10, warmup=5, num_envs=2, eval_envs=8, large=None,
                             added_institutions=("audit-0.1",), basin_mixes=())
    from reciprocity import institutions as module

    cells = module.institution_cells(cfg, {"selected": {}, "candidates": {}})
    for cell in cells:
        assert cell.config.init_policy == "disc+L6"
        assert cell.meta["params"] == ({"share_policy": True} if cell.meta["shared"] else {})
    results = run_institutions(cfg, tmp_path / "run", progress=False, tuning={
        "selected": {a: {"tabular": {"10": 0}} for a in (*cfg.algos, *cfg.added_algos)},
        "candidates": {a: {"tabular": [{"params": {"lr": 0.0}}]}
                       for a in (*cfg.algos, *cfg.added_algos)}})
    assert {r["algo"] for r in results["records"]} == {*cfg.algos, *cfg.added_algos}
    # rg-la untuned: RG's selection for the hyper-parameters they share
    tuning = {"selected": {"rg": {"tabular": {"10": 0}}},
              "candidates": {"rg": {"tabular": [{"params": {"lr": 0.3, "horizon": 10}}]}}}
    rg_la = [c for c in module.institution_cells(cfg, tuning) if c.meta["algo"] == "rg-la"]
    assert rg_la and all(c.meta["params"] == {"lr": 0.3, "horizon": 10} for c in rg_la)
    assert rg_la[0].config.learner_config().lookahead_lr == 4.0
    assert any(r["shared"] for r in results["records"])
    for r in results["records"]:
        assert r["params"] == ({"lr": 0.0, "share_policy": True} if r["shared"] else
                               {"lr": 0.0})
        for s in r["per_seed"]:
            assert s["honesty"] == pytest.approx(0.95, abs=1e-6)
    assert results["tuning"] == "tuned (tuning.json)"


# -- configuration, command line, folders ------------------------------------------------------
@pytest.mark.parametrize("kwargs,needle", [
    ({"institutions": ("audit-0.5",)}, r"^institutions.institutions: unknown \['audit-0.5'\]"),
    ({"starts": ("late",)}, r"^institutions.starts: unknown \['late'\]"),
    ({"algos": ("dqn",)}, r"^institutions.algos: unknown"),
    ({"warmup": 1000}, r"^institutions.warmup must be below rounds \(1000\), got 1000"),
    ({"large_warmup": 0}, r"^institutions.large_warmup must be at least 1"),
    ({"large": "huge"}, r"^institutions.large: unknown 'huge'"),
    ({"seeds": 0}, r"^institutions.seeds must be at least 1"),
    ({"basin_mixes": (0.5, 1.5)}, r"^institutions.basin_mixes must"),
    ({"basin_institutions": ("audit-0.5",)}, r"^institutions.basin_institutions: unknown"),
    ({"shared_algos": ("dqn",)}, r"^institutions.algos: unknown"),
    ({"added_institutions": ("x",)}, r"^institutions.added_institutions: unknown"),
])
def test_bad_configurations_are_named(kwargs, needle):
    with pytest.raises(ValueError, match=needle):
        InstitutionsConfig(**kwargs)


def test_the_stage_alone_leaves_the_benchmark_s_files(tmp_path, capsys):
    out = tmp_path / "results"
    with open_run(out, "benchmark", {"x": 1}) as folder:  # a benchmark's folder
        (out / "results.json").write_text('{"records": []}')
        folder.complete()
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    argv = ["benchmark", "--quick", "--stages", "institutions", "--algos", "rg", "--seeds", "1",
            "--out", str(out), "--quiet"]
    assert main(argv) == 0
    after = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    # the benchmark's files as they were (its list of written files gains the page)
    assert {k: after[k] for k in before if k != ".files"} == \
        {k: v for k, v in before.items() if k != ".files"}
    saved = json.loads((out / "institutions" / "results.json").read_text())
    assert {r["algo"] for r in saved["records"]} == {"rg"} and saved["config"]["seeds"] == 1
    # the command as it was run (no --overwrite was given)
    assert saved["command"] == ("reciprocity benchmark --out " + out.as_posix() + " --quick "
                                "--stages institutions --algos rg --seeds 1")
    # --quick keeps its page inside --out, the figure linked relative to it
    assert sorted(after) == sorted({*before, "results.md"})
    page = (out / "results.md").read_text()
    assert SECTION_START in page and "![institutions](institutions/institutions.png)" in page
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results"]
    capsys.readouterr()
    # again: the same run is replaced; another one needs --overwrite
    assert main(argv) == 0
    assert main([*argv[:-1], "--seeds", "2", "--quiet"]) == 2
    assert "holds a different institutions run" in capsys.readouterr().err
    # a whole benchmark with --overwrite replaces a folder where only the stage has run
    (out / "run.json").unlink()
    (out / "results.json").unlink()
    with open_run(out, "benchmark", {"x": 2}, overwrite=True):
        assert not (out / "institutions").exists()


def test_benchmark_stage_errors_are_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["benchmark", "--stages", "tables", "--out", str(tmp_path)])
    assert "argument --stages: invalid choice: 'tables'" in capsys.readouterr().err


def test_the_figure_marks_cells_not_run_and_shows_zeros(tmp_path, monkeypatch):
    """A cell that was not run is labelled n/r (an empty slot would read as a zero bar), and a
    zero is drawn: a line of the algorithm's colour at 0."""
    from figure_checks import captured_figures, clipped, overlapping
    from matplotlib.colors import to_rgba

    from reciprocity import institutions
    from reciprocity.learners import colour

    def record(institution, algo, value):
        return {"start": "warmup", "institution": institution, "algo": algo,
                "per_seed": [{"reference_performance": value, "honesty": value}] * 2}

    records = [record("plain", "rg", 0.0), record("plain", "ppo", 0.5),
               record("audit-0.3-large", "rg", 1.0)]  # ppo did not run the larger variant
    with captured_figures(monkeypatch, institutions) as figures:
        institutions.plot_institutions(tmp_path / "institutions.png", records)
    (fig,) = figures
    assert clipped(fig) == [] and overlapping(fig) == []
    for ax in fig.axes:  # both rows: the payoff and the honesty
        labels = [t for t in ax.texts if t.get_text() == institutions.NOT_RUN]
        assert len(labels) == 1 and labels[0].get_position()[0] > 1  # ppo's slot of the 2nd group
        zero = [line for line in ax.lines if list(line.get_ydata()) == [0.0, 0.0]
                and to_rgba(line.get_color()) == to_rgba(colour("rg"))]
        assert len(zero) == 1 and ax.get_ylim()[0] < 0  # drawn, above the axis' edge
    assert institutions.NOT_RUN in fig._suptitle.get_text()


# -- the from-scratch target ---------------------------------------------------------------------
def _seed(performance: float, gg: float, gb: float, diagnosis: str = "context-sensitive") -> dict:
    head = {"action": {"diagnosis": diagnosis, "probs": {"GG": gg, "GB": gb, "BG": 0.5,
                                                         "BB": 0.5}}}
    return {"reference_performance": performance, "heads": {"agent_0": head, "agent_1": head}}


def test_the_scratch_target_counts_discriminating_seeds_only():
    from reciprocity.institutions import _scratch_targets, discriminates

    assert discriminates(_seed(1.0, 0.99, 0.01))
    assert not discriminates(_seed(1.0, 0.01, 0.99))           # another code: helps the Bad
    assert not discriminates(_seed(1.0, 0.99, 0.99, "constant"))
    seeds = [_seed(1.0, 0.99, 0.01), _seed(0.99, 0.98, 0.02), _seed(0.97, 0.1, 0.95),
             _seed(0.96, 0.9, 0.1), _seed(0.5, 0.9, 0.1)]     # 3 discriminate at >= 95%
    record = {"start": "scratch", "institution": "audit-0.3", "algo": "rg-kant",
              "per_seed": seeds}
    others = [{**record, "start": "warmup"}, {**record, "institution": "plain"}]
    (line,) = _scratch_targets([record, *others])
    assert "rg-kant from scratch, audit v = 0.3" in line
    assert "3 of 5 seeds; 1 more at >= 95% with another code — not met." in line
    record["per_seed"][2] = _seed(0.97, 0.9, 0.05)
    (line,) = _scratch_targets([record])
    assert "4 of 5 seeds — met." in line
    # the study's own records: what the evaluation's head diagnosis writes is what is counted
    from reciprocity.evaluation import HEAD_DIAGNOSES, diagnose_head

    policy = {"GG": 0.99, "GB": 0.01, "BG": 0.99, "BB": 0.01}
    every = [True] * 4
    diagnosis = diagnose_head(list(policy.values()), every, every)["diagnosis"]
    assert diagnosis == HEAD_DIAGNOSES[0]
    assert discriminates({"heads": {"agent_0": {"action": {"diagnosis": diagnosis,
                                                           "probs": policy}}}})

"""Smoke run of the results benchmark on a tiny budget: every output is produced and sane."""

import json

from reciprocity.benchmark import TABLE_END, TABLE_START, BenchmarkConfig, run_benchmark
from reciprocity.cli import main


def test_benchmark_smoke(tmp_path):
    out = tmp_path / "results"
    md = tmp_path / "results.md"
    md.write_text(f"# Results\n\nintro\n\n{TABLE_START}\nold\n{TABLE_END}\n\n## Discussion\n"
                  "kept text\n")
    cfg = BenchmarkConfig(scenarios=("all-cooperators-v0", "many-learners-v0"),
                          algos=("rg", "ppo", "reinforce"), seeds=2, rounds=50, num_envs=2,
                          eval_envs=16, search_envs=2, confirm_envs=16, workers=1,
                          algo_config={"ppo": {"rounds_per_update": 25},
                                       "reinforce": {"rounds_per_update": 25}})
    records = run_benchmark(cfg, out, progress=False)
    saved = json.loads((out / "results.json").read_text())
    assert saved == json.loads(json.dumps(records))
    assert {(r["scenario"], r["algo"]) for r in records} == {
        (s, a) for s in cfg.scenarios for a in cfg.algos}
    for r in records:
        assert r["seeds"] == [0, 1]
        for key in ("per_interaction_payoff", "reference_performance", "adherence"):
            assert set(r[key]) == {"mean", "ci95"}
        assert 0.0 <= r["constant_output"] <= 1.0
        assert r["regime"] in ("degenerate", "discriminative")
        assert r["rounds"] == 50
    assert {r["regime"] for r in records if r["scenario"] == "all-cooperators-v0"} == \
        {"degenerate"}
    for png in ("learning_curves.png", "policy_heatmaps.png", "many-learners-v0.png"):
        assert (out / png).stat().st_size > 1000
    text = md.read_text()
    assert "kept text" in text and "intro" in text and "old" not in text
    assert "| all-cooperators-v0 | degenerate | rg |" in text
    assert "reciprocity benchmark --out" in text


def test_flagship_command_prints_a_table(tmp_path, capsys):
    assert main(["flagship", "--out", str(tmp_path / "f"), "--seeds", "1", "--rounds", "20",
                 "--workers", "1", "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "| discriminators-vs-defectors-v0 | discriminative | rg |" in printed
    assert (tmp_path / "f" / "discriminators-vs-defectors-v0.png").is_file()

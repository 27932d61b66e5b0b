"""What users meet after the first hour (issue 19, speed and progress): the burn-in is computed
once per scenario and kept on disk, the reference search, the evaluation after training and the
attribution show progress, and the command runs torch on one thread."""

import json
import os
import subprocess
import sys

import pytest

from reciprocity import evaluation
from reciprocity.envs import get_scenario


@pytest.fixture
def cache(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv("RECIPROCITY_CACHE", str(folder))
    monkeypatch.setattr(evaluation, "_BURN_IN_CACHE", {})
    return folder


def test_the_burn_in_is_kept_on_disk_and_read_back_without_recomputing(cache, monkeypatch):
    env = get_scenario("L6-v0").env_config
    first = evaluation.burn_in_rounds(env, 40)
    [stored] = list((cache / "burn-in").glob("*.json"))
    assert json.loads(stored.read_text()) == first
    # a new process (an empty in-process cache) reads it instead of running the model
    monkeypatch.setattr(evaluation, "_BURN_IN_CACHE", {})
    import reciprocity.agents.model as model

    def no_model(*args, **kwargs):
        raise AssertionError("the burn-in was recomputed")

    monkeypatch.setattr(model, "advance", no_model)
    assert evaluation.burn_in_rounds(env, 40) == first
    # another window or game is another entry
    monkeypatch.undo()
    monkeypatch.setenv("RECIPROCITY_CACHE", str(cache))
    monkeypatch.setattr(evaluation, "_BURN_IN_CACHE", {})
    evaluation.burn_in_rounds(env, 50)
    assert len(list((cache / "burn-in").glob("*.json"))) == 2


def test_a_damaged_cache_entry_is_recomputed_and_an_empty_setting_keeps_nothing(
        cache, monkeypatch, tmp_path):
    env = get_scenario("L6-v0").env_config
    first = evaluation.burn_in_rounds(env, 40)
    [stored] = list((cache / "burn-in").glob("*.json"))
    for damage in ("{not json", json.dumps({"burn_in": 3})):
        stored.write_text(damage)
        monkeypatch.setattr(evaluation, "_BURN_IN_CACHE", {})
        assert evaluation.burn_in_rounds(env, 40) == first
        assert json.loads(stored.read_text()) == first  # and rewritten whole
    monkeypatch.setenv("RECIPROCITY_CACHE", "")
    monkeypatch.setattr(evaluation, "_BURN_IN_CACHE", {})
    assert evaluation.cache_dir() is None
    assert evaluation.burn_in_rounds(env, 30)["window"] == 30
    assert len(list((cache / "burn-in").glob("*.json"))) == 1
    # an unwritable cache folder is skipped, not an error
    (tmp_path / "file").write_text("")
    monkeypatch.setenv("RECIPROCITY_CACHE", str(tmp_path / "file"))
    monkeypatch.setattr(evaluation, "_BURN_IN_CACHE", {})
    assert evaluation.burn_in_rounds(env, 40) == first


def test_reference_evaluation_and_attribution_show_progress(cache, capsys, tmp_path):
    from reciprocity.cli import main

    assert main(["reference", "--scenario", "L6-v0", "--search-envs", "2", "--confirm-envs",
                 "4", "--rounds", "20", "--out", str(tmp_path / "ref")]) == 0
    err = capsys.readouterr().err
    for stage in ("burn-in (model)", "reference search (4096 policies)",
                  "reference: the best and its flips"):
        assert stage in err
    assert main(["train", "--scenario", "L6-v0", "--rounds", "20", "--num-envs", "2",
                 "--eval-envs", "4", "--eval-rounds", "10", "--out", str(tmp_path / "run")]) == 0
    assert "evaluation (long run)" in capsys.readouterr().err
    assert main(["attribute", "--run", str(tmp_path / "run"), "--out", str(tmp_path / "att"),
                 "--horizon", "4", "--games", "2", "--rounds", "5", "--no-figure"]) == 0
    assert "attribute rg" in capsys.readouterr().err


def test_the_command_runs_torch_on_one_thread_unless_told_otherwise(tmp_path):
    code = ("from reciprocity import cli; "  # torch is imported after run() has set things up
            "cli.main = lambda: print(__import__('torch').get_num_threads()) or 0; cli.run()")
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.stdout.strip() == "1", out.stderr
    out = subprocess.run([sys.executable, "-c", code], env={**env, "OMP_NUM_THREADS": "2"},
                         capture_output=True, text=True)
    assert out.stdout.strip() == "2", out.stderr


def test_the_reference_command_keeps_its_result_and_reads_it_back(cache, capsys, tmp_path,
                                                                   monkeypatch):
    """`reciprocity reference` a second time (same scenario and protocol) reads the reference
    from the disk cache instead of searching again, and writes the same reference.json; another
    protocol is another entry."""
    from reciprocity.cli import main

    argv = ["reference", "--scenario", "L6-v0", "--search-envs", "2", "--confirm-envs", "4",
            "--rounds", "20", "--out"]
    assert main([*argv, str(tmp_path / "a")]) == 0
    first = json.loads((tmp_path / "a" / "reference.json").read_text())
    assert len(list((cache / "reference").glob("*.json"))) == 1
    capsys.readouterr()

    def no_search(*args, **kwargs):
        raise AssertionError("the reference was searched again")

    monkeypatch.setattr(evaluation, "evaluate_focal_tables", no_search)
    assert main([*argv, str(tmp_path / "b")]) == 0
    assert json.loads((tmp_path / "b" / "reference.json").read_text()) == first
    assert "reference: read from the cache" in capsys.readouterr().err
    monkeypatch.undo()
    monkeypatch.setenv("RECIPROCITY_CACHE", str(cache))
    assert main([*argv[:-2], "25", "--out", str(tmp_path / "c")]) == 0
    assert len(list((cache / "reference").glob("*.json"))) == 2

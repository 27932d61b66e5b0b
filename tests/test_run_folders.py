"""Run folders keep a list of the files the package wrote (``.files``), and clearing a folder
(``--overwrite``, or the same run again) removes exactly those: a user's figure, notes or data
folder beside a run — or a folder written before the list existed — is never deleted; the
clearing is refused naming the file. Study folders (a benchmark's nested runs and references,
an attribution report's entries written by worker processes) are covered the same way.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from reciprocity import attribution_report
from reciprocity.benchmark import BenchmarkConfig, run_benchmark
from reciprocity.cli import main
from reciprocity.engine import Engine
from reciprocity.runfolder import (
    clear_run_folder,
    listed_files,
    open_run,
    write_json,
    write_text,
)

torch.set_num_threads(1)

TINY = ["--rounds", "20", "--num-envs", "2", "--eval-envs", "4", "--quiet"]


def tree(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` and its bytes (the lock aside: it is empty)."""
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != ".lock"}


def unlisted(folder: Path) -> list[str]:
    """Files under a run folder that its list (or a nested run folder's) does not name."""
    leftover = folder.parent / (folder.name + "-cleared")
    shutil.copytree(folder, leftover)
    clear_run_folder(leftover)  # refuses (raises) at the first file that is not listed
    rest = sorted(p.relative_to(leftover).as_posix() for p in leftover.rglob("*")
                  if p != leftover / ".lock")  # clearing keeps the lock (it is held meanwhile)
    shutil.rmtree(leftover)
    return rest


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return err


def test_overwrite_of_a_folder_without_a_run_deletes_nothing(tmp_path, capsys):
    """Issue 19: --overwrite into a folder with no run.json deleted a user's myfigure.png and
    seed_data/ (any *.png, any seed_*)."""
    mine = tmp_path / "mine"
    (mine / "seed_data").mkdir(parents=True)
    (mine / "myfigure.png").write_bytes(b"\x89PNG a figure of mine")
    (mine / "seed_data" / "a.csv").write_text("1,2\n")
    before = tree(mine)
    assert main(["train", "--scenario", "L6-v0", "--out", str(mine), "--overwrite", *TINY]) == 2
    err = one_line_error(capsys)
    assert f"--out {mine} holds myfigure.png, which reciprocity did not write there" in err
    assert "move it out of the folder, or choose another --out" in err
    assert tree(mine) == before and sorted(p.name for p in mine.iterdir()) == \
        ["myfigure.png", "seed_data"]  # not even a lock is left behind
    # only a package file name, but no run: refused too
    (mine / "myfigure.png").unlink()
    shutil.rmtree(mine / "seed_data")
    (mine / "seed_0").mkdir()
    (mine / "seed_0" / "metrics.json").write_text("{}")
    assert main(["train", "--scenario", "L6-v0", "--out", str(mine), "--overwrite", *TINY]) == 2
    assert "holds seed_0/metrics.json" in one_line_error(capsys)
    assert (mine / "seed_0" / "metrics.json").read_text() == "{}"


def test_a_run_folder_is_cleared_of_its_own_files_only(tmp_path, capsys):
    """Issue 19: re-running the same options into a run folder deleted the user's notes.txt.
    Clearing removes the listed files and nothing else; a folder holding anything else is
    refused before anything is removed."""
    out = tmp_path / "run"
    args = ["train", "--scenario", "L6-v0", "--out", str(out), *TINY]
    assert main(args) == 0
    written = listed_files(out)
    assert {"run.json", "metrics.json", "progress.csv", "checkpoint.pt"} <= set(written)
    if (out / "tb").exists():  # TensorBoard's event files, named by TensorBoard, by pattern
        assert "tb/events.out.tfevents.*" in written
    assert unlisted(out) == []  # everything the run wrote is listed
    assert json.loads((out / "run.json").read_text())["files"] == written
    capsys.readouterr()
    (out / "notes.txt").write_text("my notes")
    before = tree(out)
    for again in (args, ["train", "--scenario", "L5-v0", "--out", str(out), "--overwrite",
                         *TINY]):
        assert main(again) == 2
        assert "holds notes.txt, which reciprocity did not write there (it is not in the " \
               "folder's list of files)" in one_line_error(capsys)
        assert tree(out) == before  # nothing removed, the run's files included
    # a file of the user's inside a folder the package wrote is found too
    (out / "notes.txt").unlink()
    seeds = ["train", "--scenario", "L6-v0", "--seeds", "0", "1", "--out", str(out),
             "--overwrite", *TINY]
    assert main(seeds) == 0
    (out / "seed_1" / "mine.txt").write_text("mine")
    assert main(seeds) == 2
    assert "holds seed_1/mine.txt" in one_line_error(capsys)
    (out / "seed_1" / "mine.txt").unlink()
    (out / "seed_data").mkdir()  # an empty folder of the user's is left alone
    assert main(seeds) == 0
    assert (out / "seed_data").is_dir() and unlisted(out) == ["seed_data"]


def test_a_folder_written_before_the_list_existed_is_not_cleared(tmp_path, capsys):
    """A run folder of an older version (run.json, no .files): nothing in it can be shown to be
    the package's, so clearing it is refused; the message says why and what to do."""
    out = tmp_path / "old"
    assert main(["train", "--scenario", "L6-v0", "--out", str(out), *TINY]) == 0
    (out / ".files").unlink()
    capsys.readouterr()
    before = tree(out)
    for args in (["train", "--scenario", "L6-v0", "--out", str(out), *TINY],
                 ["train", "--scenario", "L5-v0", "--out", str(out), "--overwrite", *TINY]):
        assert main(args) == 2
        err = one_line_error(capsys)
        assert "which reciprocity did not write there (the folder was written by an older " \
               "version of reciprocity, which kept no list of its files)" in err
    assert tree(out) == before
    # resuming it still works (nothing is cleared)
    assert main(["train", "--resume", str(out), "--quiet"]) == 0


def test_files_that_were_there_before_are_not_listed(tmp_path):
    """The package rewrites some files it did not create (a Markdown page whose generated block
    is refreshed): those are not listed, so clearing keeps them (and refuses)."""
    out = tmp_path / "run"
    with open_run(out, "demo", {"x": 1}) as folder:
        (out / "page.md").write_text("# my page\n")
        write_text(out / "page.md", "# my page\n\nrefreshed block\n")
        write_json(out / "demo.json", {})
        folder.complete()
    assert listed_files(out) == ["demo.json", "run.json"]
    with pytest.raises(ValueError, match=r"holds page\.md, which reciprocity did not write"):
        open_run(out, "demo", {"x": 2}, overwrite=True)
    assert (out / "page.md").exists() and (out / "demo.json").exists()
    # a damaged list is no list: nothing is cleared
    (out / "page.md").unlink()
    (out / ".files").write_text("garbage\n")
    with pytest.raises(ValueError, match=r"holds \.files, .*older version"):
        open_run(out, "demo", {"x": 2}, overwrite=True)


def test_a_study_lists_every_file_it_and_its_runs_write(tmp_path):
    """A benchmark: its references, records and figures, its nested training runs (written by
    worker processes, each with its own list) and the parameters written into them afterwards;
    clearing the folder leaves nothing, and a file of the user's deep inside is found first."""
    out = tmp_path / "bench"
    cfg = BenchmarkConfig(scenarios=("all-cooperators-v0",), algos=("reinforce",),
                          policies=("tabular",), seeds=1, budgets=(10,), main_budget=10,
                          num_envs=2, eval_envs=4, search_envs=2, confirm_envs=4, tuning=None,
                          institutions=None)
    run_benchmark(cfg, out, progress=False, write_table=False,
                  engine=Engine("local", 1, progress=False))
    written = set(listed_files(out))
    assert {"results.json", "benchmark.json", "references/all-cooperators-v0.json"} <= written
    runs = [p.parent for p in out.glob("runs/**/run.json")]
    assert runs and all("params.json" in listed_files(r) for r in runs)
    assert unlisted(out) == []
    (runs[0] / "analysis.ipynb").write_text("{}")
    before = tree(out)
    with pytest.raises(ValueError, match=r"holds runs/.*/analysis\.ipynb, which reciprocity"):
        open_run(out, "benchmark", {"other": 1}, overwrite=True)
    assert tree(out) == before
    (runs[0] / "analysis.ipynb").unlink()
    with open_run(out, "benchmark", {"other": 1}, overwrite=True):
        assert sorted(p.name for p in out.iterdir()) == [".files", ".lock", "run.json"]


def test_attribution_entries_written_by_workers_are_listed(tmp_path, monkeypatch):
    """The attribution report's entries are written by its jobs' worker processes into
    subfolders of the report's run folder: they are listed in its .files."""
    entry = next(e for e in attribution_report.QUICK_PLAN["entries"]
                 if e[0] == "many-learners-audit-disc")  # a strategy: nothing to train
    monkeypatch.setattr(attribution_report, "QUICK_PLAN",
                        {**attribution_report.QUICK_PLAN, "entries": (entry,)})
    out = tmp_path / "attribution"
    attribution_report.attribute_command(out=out, report=True, quick=True, progress=False,
                                         engine=Engine("local", 1, progress=False))
    assert {f"{entry[0]}/attribution.json", f"{entry[0]}/attribution.png",
            "overview.png"} <= set(listed_files(out))
    assert unlisted(out) == []


def test_a_run_that_stops_on_an_error_or_ctrl_c_says_so(tmp_path):
    """A study that fails inside its run folder leaves run.json "failed" (Ctrl-C:
    "interrupted"), not "running"; a complete run stays complete."""
    import json as _json

    from reciprocity.runfolder import open_run as _open_run

    for error, status in ((ValueError("result cannot be written"), "failed"),
                          (KeyboardInterrupt(), "interrupted")):
        out = tmp_path / status
        with pytest.raises(type(error)), _open_run(out, "benchmark", {"x": 1}):
            raise error
        assert _json.loads((out / "run.json").read_text())["status"] == status
    out = tmp_path / "done"
    with pytest.raises(ValueError), _open_run(out, "benchmark", {"x": 1}) as folder:
        folder.complete()
        raise ValueError("after the end")
    assert _json.loads((out / "run.json").read_text())["status"] == "complete"

"""Every ```python block in docs/*.md and README.md runs as is.

Each block is executed in a fresh namespace, in a temporary working directory (blocks that write
files write there), with a non-interactive matplotlib backend. Blocks that need an optional
extra are fenced as ```python requires=sb3 (or requires=torchrl, requires=tianshou,
requires=ray): they carry that pytest marker, so they run with the extra's tests (`make
test-sb3`, ...) and are deselected from the default run. Test ids name the file, the block
index and its line.
"""

from __future__ import annotations

import json
import re
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOC_FILES = sorted((ROOT / "docs").glob("*.md")) + [
    p for p in [ROOT / "README.md"] if p.is_file()
]

FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})[ \t]*(?P<info>[^`]*?)[ \t]*$")
#: fence flag -> (pytest marker, module that must import)
EXTRAS = {"requires=sb3": ("sb3", "stable_baselines3"), "requires=ray": ("ray", "ray.rllib"),
          "requires=torchrl": ("torchrl", "benchmarl"),  # the extra installs both
          "requires=tianshou": ("tianshou", "tianshou")}


@dataclass(frozen=True)
class Block:
    path: Path
    index: int  # index among the ```python blocks of the file
    line: int  # 1-based line of the opening fence
    flags: frozenset[str]
    code: str

    @property
    def id(self) -> str:
        return f"{self.path.relative_to(ROOT)}:block{self.index}:line{self.line}"


def python_blocks(path: Path) -> list[Block]:
    """The fenced blocks of ``path`` whose info string starts with ``python``."""
    blocks: list[Block] = []
    lines = path.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, fence, info = m["indent"], m["fence"], m["info"].split()
        body, j = [], i + 1
        while j < len(lines):
            close = FENCE.match(lines[j])
            if (close and close["fence"][0] == fence[0] and len(close["fence"]) >= len(fence)
                    and not close["info"]):
                break
            body.append(lines[j][len(indent):] if lines[j].startswith(indent) else lines[j])
            j += 1
        if info and info[0] == "python":
            blocks.append(Block(path, len(blocks), i + 1, frozenset(info[1:]),
                                "\n".join(body) + "\n"))
        i = j + 1
    return blocks


ALL_BLOCKS = [b for p in DOC_FILES for b in python_blocks(p)]


def test_docs_have_python_blocks():
    assert (ROOT / "docs" / "envs.md").is_file()
    assert sum(b.path.name == "envs.md" for b in ALL_BLOCKS) >= 6


def _param(block: Block):
    marks = [getattr(pytest.mark, EXTRAS[f][0]) for f in block.flags if f in EXTRAS]
    return pytest.param(block, marks=marks, id=block.id)


@pytest.mark.parametrize("block", [_param(b) for b in ALL_BLOCKS])
def test_python_block_runs(block: Block, tmp_path, monkeypatch):
    unknown = block.flags - set(EXTRAS)
    assert not unknown, f"{block.id}: unknown fence flag(s) {sorted(unknown)}"
    for flag in block.flags:
        pytest.importorskip(EXTRAS[flag][1])  # the extra's make target checks it is installed
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    code = compile(block.code, f"{block.path}:block{block.index}", "exec")
    namespace = {"__name__": "__main__", "__file__": str(tmp_path / "docs_block.py")}
    try:
        exec(code, namespace)
    finally:
        plt = sys.modules.get("matplotlib.pyplot")
        if plt is not None:
            plt.close("all")


def test_readme_quick_start_prints_what_the_readme_shows(tmp_path, monkeypatch, capsys):
    """The quick start prints every step's rewards and the mean payoff per round, as the
    ```text block after it shows (its first lines and its last)."""
    readme = ROOT / "README.md"
    block = python_blocks(readme)[0]
    monkeypatch.chdir(tmp_path)
    exec(compile(block.code, f"{readme}:block0", "exec"), {"__name__": "__main__"})
    printed = capsys.readouterr().out.splitlines()
    text = readme.read_text(encoding="utf-8")
    shown = text[text.index("```text", text.index("## Quick start")):].split("```")[1]
    shown = shown.splitlines()[1:]  # after the info string
    assert printed[:2] == shown[:2] and printed[-1] == shown[-1] and shown[2] == "..."
    assert "mean payoff per round" in printed[-1]


def _catalogue_rows() -> list[list[str]]:
    """Table rows built from envs/catalogue/*.json (not the registry, which tests may extend)."""
    from reciprocity.envs import Scenario

    found = [Scenario.from_dict(json.loads(f.read_text(encoding="utf-8")), source=f.name)
             for f in (ROOT / "envs" / "catalogue").glob("*.json")]
    rows = []
    for s in sorted(found, key=lambda s: s.id):
        counts = Counter(spec for spec in s.population if spec != "focal")
        background = ", ".join(f"{n} × {spec}" for spec, n in counts.items()) or "—"
        rows.append([f"`{s.id}`", str(len(s.population)), str(s.num_focal), background,
                     f"{s.benefit:g}", f"{s.cost:g}", f"{s.execution_error:g}",
                     f"{s.assessment_error:g}", f"{s.update_probability:g}",
                     f"{s.signal_audit:g}", str(s.observers_per_interaction), str(s.max_rounds)])
    return rows


def test_catalogue_table_matches_catalogue():
    """The scenario table in docs/envs.md is the catalogue (regenerate it from there)."""
    text = (ROOT / "docs" / "envs.md").read_text(encoding="utf-8")
    table = text.split("<!-- catalogue-table:start -->")[1].split("<!-- catalogue-table:end -->")[0]
    lines = [ln.strip() for ln in table.strip().splitlines()][2:]  # skip header and rule
    documented = [[c.strip() for c in ln.strip("|").split("|")] for ln in lines]
    assert documented == _catalogue_rows()

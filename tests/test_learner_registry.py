"""A learner defined here, registered once, runs through every study by the registry alone:
train, resume, tune, sweep, the benchmark (curves, claim map, institutions) and attribution;
and a learner in a file is named on the command line as ``path/to/file.py:Class``."""

import json
import textwrap
from dataclasses import dataclass

import pytest
import torch

from reciprocity.agents.policy import ReputationPolicy
from reciprocity.cli import main
from reciprocity.learners import (
    BUILTIN,
    algorithm_names,
    declare,
    get_algorithm,
    register,
)
from reciprocity.train import TrainConfig, train

torch.set_num_threads(1)


@dataclass
class BanditConfig:
    """Hyper-parameters of the toy learner."""

    rounds_per_update: int = 10
    lr: float = 0.5
    policy: str = "tabular"


class Bandit:
    """A toy sample-based learner: in every action context, the logit of C moves by ``lr``
    times the difference between the mean payoff of the rounds in which the learner cooperated
    and of those in which it defected there (its signal head stays at 0.5)."""

    name = "toy-bandit"
    config_class = BanditConfig
    sample_based = True
    tuning_space = {"lr": (0.1, 0.5, 2.0), "rounds_per_update": (5, 10)}  # noqa: RUF012

    def __init__(self, config, env_config, batch_shape, seed=0, device="cpu"):
        self.config = config
        self.policy = ReputationPolicy(batch_shape, kind=config.policy, device=device)
        self.updates = 0

    def update(self, rollout):
        ctx = torch.nn.functional.one_hot(rollout.action_contexts, 4).float()  # (T, S, F, B, 4)
        cooperated = rollout.actions.float()[..., None]
        reward = rollout.rewards[..., None]

        def mean(weight):
            return (weight * reward).sum(dim=(0, 3)) / weight.sum(dim=(0, 3)).clamp(min=1)

        step = mean(ctx * cooperated) - mean(ctx * (1 - cooperated))         # (S, F, 4)
        with torch.no_grad():
            self.policy.action_table += self.config.lr * step
        self.updates += 1
        return {"bandit/mean_reward": float(rollout.rewards.mean())}

    def state_dict(self):
        return {"policy": self.policy.state_dict(), "updates": self.updates}

    def load_state_dict(self, state):
        self.policy.load_state_dict(state["policy"])
        self.updates = state["updates"]


register(Bandit)

SMALL = dict(rounds=20, num_envs=2, eval_envs=4, eval_rounds=10, eval_burn_in=0)


def test_the_registry_knows_the_builtins_and_the_registered_learner():
    assert algorithm_names()[:3] == tuple(BUILTIN) and "toy-bandit" in algorithm_names()
    algorithm = get_algorithm("toy-bandit")
    assert algorithm.learner is Bandit and algorithm.sample_based
    assert algorithm.policy_classes == ("tabular",) and algorithm.colour.startswith("tab:")
    assert algorithm.search_space("tabular") == {"lr": (0.1, 0.5, 2.0),
                                                 "rounds_per_update": (5, 10)}
    register(Bandit)  # again: a no-op
    assert get_algorithm(Bandit) is algorithm


def test_a_class_defined_anew_replaces_itself_and_no_other():
    """A notebook cell run twice defines the class again: it replaces its earlier self; a
    different class under a taken name is refused."""
    namespace = {"__name__": "notebook"}
    source = ("from dataclasses import dataclass\n@dataclass\nclass C:\n"
              "    rounds_per_update: int = 5\nclass Again:\n    name = 'again'\n"
              "    config_class = C\n    def update(self, r): ...\n"
              "    def state_dict(self): ...\n    def load_state_dict(self, s): ...\n")
    exec(source, namespace)
    first = register(namespace["Again"])
    exec(source, namespace)
    register(namespace["Again"])
    assert get_algorithm("again").learner is namespace["Again"] is not first
    other = type("Other", (namespace["Again"],), {})
    with pytest.raises(ValueError, match=r"'again' is taken by notebook\.Again"):
        register(other)


def test_train_and_resume(tmp_path, stop_training):
    config = TrainConfig("L6-v0", algo="toy-bandit", seeds=(0, 1), checkpoint_every=1, **SMALL)
    whole = train(config, tmp_path / "whole", progress=False)
    assert [m["algo"] for m in whole] == ["toy-bandit", "toy-bandit"]
    # the learner learned: immediate payoffs favour defection in every context it met
    action = whole[0]["policies"]["agent_0"]["action"]
    assert min(action.values()) < 0.5
    with stop_training(2), pytest.raises(KeyboardInterrupt):  # after the first checkpoint
        train(config, tmp_path / "stopped", progress=False)
    resumed = train(config, tmp_path / "stopped", resume=True, progress=False)
    for a, b in zip(whole, resumed, strict=True):
        assert a["policies"] == b["policies"]
        assert a["per_interaction_payoff"] == b["per_interaction_payoff"]


def test_cli_train_resume_and_evaluate(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["train", "--scenario", "L6-v0", "--algo", "toy-bandit", "--rounds", "20",
            "--num-envs", "2", "--eval-envs", "4", "--eval-rounds", "10", "--out", str(out),
            "--quiet"]
    assert main(argv) == 0
    assert json.loads((out / "metrics.json").read_text())["algo"] == "toy-bandit"
    assert main(["train", "--resume", str(out), "--algo", "rg"]) == 2
    assert "--algo rg contradicts" in capsys.readouterr().err
    assert main(["evaluate", "--run", str(out)]) == 0


def test_tune_and_sweep(tmp_path):
    from reciprocity.sweep import run_sweep
    from reciprocity.tuning import QUICK, TuningConfig, run_tuning, selected_params

    cfg = TuningConfig(**{**QUICK, "algos": ("toy-bandit",), "eval_envs": 4})
    outcome = run_tuning(cfg, tmp_path / "tune", progress=False)
    assert set(outcome["selected"]) == {"toy-bandit"}
    assert set(outcome["selected"]["toy-bandit"]) == {"tabular"}
    assert outcome["search_spaces"]["toy-bandit"]["tabular"]["lr"] == [0.1, 0.5, 2.0]
    assert set(selected_params(outcome, "toy-bandit", "tabular", 20)) == \
        {"lr", "rounds_per_update"}
    records = run_sweep({"scenarios": ["L6-v0"], "algos": ["toy-bandit"], "seeds": 2,
                         "rounds": 20,
                         "num_envs": 2, "eval_envs": 4, "search_envs": 2,
                         "params": {"toy-bandit": {"lr": [0.1, 2.0]}}}, tmp_path / "sweep",
                        workers=2, progress=False)
    assert [(r["algo"], r["params"]["lr"]) for r in records] == [("toy-bandit", 0.1),
                                                                  ("toy-bandit", 2.0)]


def test_quick_benchmark_puts_it_in_the_claim_map_and_the_institutions(tmp_path):
    """... and a policy evaluated elsewhere (evaluate --policy) joins the tables and the claim
    map by --extra-records, scored against the benchmark's own reference."""
    (tmp_path / "mine.py").write_text(textwrap.dedent('''
        import numpy as np

        def disc_sj(obs):  # cooperate with Good recipients; assess by stern judging
            phase, _, action, recipient, _ = np.asarray(obs).T
            return np.where(phase == 0, recipient, action == recipient).astype(float)
        '''))
    assert main(["evaluate", "--scenario", "L6-v0", "--policy", f"{tmp_path / 'mine.py'}:disc_sj",
                 "--eval-envs", "16", "--out", str(tmp_path / "mine"), "--quiet"]) == 0
    out = tmp_path / "results"
    assert main(["benchmark", "--quick", "--algos", "toy-bandit", "--out", str(out),
                 "--extra-records", str(tmp_path / "mine" / "evaluation.json"), "--quiet"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert {r["algo"] for r in results["records"]} == {"toy-bandit"}
    assert {r["policy_class"] for r in results["records"]} == {"tabular"}  # its only class
    [extra] = results["extra_records"]
    reference = json.loads((out / "references" / "L6-v0.json").read_text())
    assert (extra["algo"], extra["policy_class"]) == ("disc_sj", "own")
    assert extra["reference_payoff"] == reference["reference_payoff"]
    page = (out / "results.md").read_text()  # --quick: the page inside --out
    claim = page[page.index("### Claim map"):page.index("### Every scenario")]
    assert "toy-bandit: action head" in claim and "for toy-bandit" in claim
    assert "disc_sj: fraction of the reference" in claim
    assert "| L6-v0 | discriminative | disc_sj | own | – |" in page
    study = json.loads((out / "institutions" / "results.json").read_text())
    assert {r["algo"] for r in study["records"]} == {"toy-bandit"}
    tuning = json.loads((out / "tuning.json").read_text())
    assert set(tuning["selected"]) == {"toy-bandit"}


def test_attribute_a_run_of_it(tmp_path):
    run = tmp_path / "run"
    train(TrainConfig("L6-v0", algo="toy-bandit", **SMALL), run, progress=False)
    assert main(["attribute", "--run", str(run), "--out", str(tmp_path / "att"), "--horizon",
                 "4", "--games", "2", "--rounds", "5", "--no-figure", "--quiet"]) == 0
    record = json.loads((tmp_path / "att" / "attribution.json").read_text())
    assert record["policy"] == "toy-bandit"


LEARNER_FILE = '''
from dataclasses import dataclass

from reciprocity.agents.policy import ReputationPolicy


@dataclass
class Config:
    rounds_per_update: int = 5


class Frozen:
    """Never learns: plays its initial policy (0.5 everywhere)."""

    name = "frozen"
    config_class = Config

    def __init__(self, config, env_config, batch_shape, seed=0, device="cpu"):
        self.policy = ReputationPolicy(batch_shape, device=device)

    def update(self, rollout):
        return {}

    def state_dict(self):
        return {"policy": self.policy.state_dict()}

    def load_state_dict(self, state):
        self.policy.load_state_dict(state["policy"])
'''


def test_a_learner_in_a_file_is_named_by_its_path(tmp_path, monkeypatch):
    path = tmp_path / "mylearners.py"
    path.write_text(textwrap.dedent(LEARNER_FILE))
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "run"
    assert main(["train", "--scenario", "L6-v0", "--algo", "mylearners.py:Frozen", "--rounds",
                 "10", "--num-envs", "2", "--eval-envs", "4", "--eval-rounds", "10", "--out",
                 str(out), "--quiet"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["algo"] == "frozen"
    assert set(metrics["policies"]["agent_0"]["action"].values()) == {0.5}
    # the run names its learner by an absolute path: it resumes from anywhere
    manifest = json.loads((out / "run.json").read_text())
    assert manifest["config"]["algo"] == f"{path.resolve()}:Frozen"
    monkeypatch.syspath_prepend(str(tmp_path))  # and as a module on the path
    assert get_algorithm("mylearners:Frozen").name == "frozen"


@pytest.mark.parametrize("source, needle", [
    ("class L:\n    pass\n", "must declare name"),
    ("class L:\n    name = 'x'\n", "must declare config_class"),
    ("from dataclasses import dataclass\n@dataclass\nclass C:\n    lr: float = 1.0\n"
     "class L:\n    name = 'x'\n    config_class = C\n"
     "    def update(self, r): ...\n    def state_dict(self): ...\n"
     "    def load_state_dict(self, s): ...\n", "needs an integer rounds_per_update"),
    ("from dataclasses import dataclass\n@dataclass\nclass C:\n    rounds_per_update: int = 5\n"
     "class L:\n    name = 'x'\n    config_class = C\n    tuning_space = {'lr': (1, 2)}\n"
     "    def update(self, r): ...\n    def state_dict(self): ...\n"
     "    def load_state_dict(self, s): ...\n", "tuning_space names 'lr'"),
    ("from dataclasses import dataclass\n@dataclass\nclass C:\n    rounds_per_update: int = 5\n"
     "class L:\n    name = 'rg'\n    config_class = C\n"
     "    def update(self, r): ...\n    def state_dict(self): ...\n"
     "    def load_state_dict(self, s): ...\n", "name 'rg', which is taken"),
])
def test_a_bad_declaration_is_named(tmp_path, source, needle):
    path = tmp_path / "bad.py"
    path.write_text(source)
    with pytest.raises(ValueError, match=needle):
        get_algorithm(f"{path}:L")


def test_unknown_algorithms_and_locators_are_one_line_errors(tmp_path, capsys):
    for algo, needle in (("nope", "unknown algorithm 'nope'"),
                         (f"{tmp_path}/missing.py:L", "no such file"),
                         ("no_such_module_xyz:L", "cannot import module"),
                         ("reciprocity.learners:Nothing", "has no 'Nothing'")):
        assert main(["train", "--scenario", "L6-v0", "--algo", algo, "--out",
                     str(tmp_path / "x")]) == 2
        assert needle in capsys.readouterr().err
    with pytest.raises(ValueError, match="expected a learner class"):
        declare(object())


def test_an_installed_package_s_learner_is_known_by_its_entry_point(tmp_path, monkeypatch):
    """The entry-point group reciprocity.learners (what an installed package declares in its
    pyproject.toml) makes a learner known by name, in the CLI's choices too."""
    from importlib.metadata import EntryPoint

    from reciprocity import learners

    (tmp_path / "installed_learners.py").write_text(
        textwrap.dedent(LEARNER_FILE).replace('name = "frozen"', 'name = "installed"'))
    monkeypatch.syspath_prepend(str(tmp_path))
    point = EntryPoint(name="installed", value="installed_learners:Frozen",
                       group=learners.ENTRY_POINT_GROUP)
    monkeypatch.setattr(learners, "entry_points",
                        lambda group: [point] if group == learners.ENTRY_POINT_GROUP else [])
    assert "installed" in algorithm_names()
    algorithm = get_algorithm("installed")
    assert algorithm.learner.__module__ == "installed_learners"
    assert algorithm.locator == "installed_learners:Frozen"  # what a Ray worker loads
    config = TrainConfig("L6-v0", algo="installed", rounds=10, num_envs=2, eval_envs=4,
                         eval_rounds=10, eval_burn_in=0)
    assert train(config, progress=False)[0]["algo"] == "installed"
    wrong = EntryPoint(name="misnamed", value="installed_learners:Frozen",
                       group=learners.ENTRY_POINT_GROUP)
    monkeypatch.setattr(learners, "entry_points", lambda group: [wrong])
    with pytest.raises(ValueError, match="the two names must agree"):
        get_algorithm("misnamed")

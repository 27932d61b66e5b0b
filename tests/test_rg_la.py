"""The learning-aware RG learner (rg-la): its lookahead, its gradient, and that it is RG where
there is nobody to anticipate."""

import math

import pytest
import torch
from world_fixtures import fill_learned_world

from reciprocity.agents.model import unroll
from reciprocity.agents.rg import ReciprocityGradient, RGConfig
from reciprocity.agents.rg_la import LearningAwareRG, RGLAConfig
from reciprocity.envs import get_scenario, scenarios
from reciprocity.learners import get_algorithm
from reciprocity.train import train
from reciprocity.train_config import TrainConfig

torch.set_num_threads(1)


def _world(scenario, seeds=2, games=3, seed=0, dtype=torch.float64):
    """A learner's inputs: estimator tables (S, N, 4) / (S, N, 8) and start reputations
    (S, B, N), random but fixed."""
    n = get_scenario(scenario).env_config.num_agents
    g = torch.Generator().manual_seed(seed)
    est_action = (torch.rand(seeds, n, 4, generator=g) * 0.8 + 0.1).to(dtype)
    est_signal = (torch.rand(seeds, n, 8, generator=g) * 0.8 + 0.1).to(dtype)
    start = torch.rand(seeds, games, n, generator=g).to(dtype)
    return start, est_action, est_signal


def _learner(scenario, seeds=2, **options):
    ec = get_scenario(scenario).env_config
    options = {"world_model": "oracle", **options}  # the scenario's numbers unless told
    return LearningAwareRG(RGLAConfig(horizon=8, **options), ec, (seeds, ec.focal_slots.size),
                           seed=0)


def _own_tables(learner, seed=1):
    """Own tables (S, F, 4) / (S, F, 8) away from 0.5, as leaves."""
    g = torch.Generator().manual_seed(seed)
    shape = learner.policy.batch_shape
    return (torch.rand(*shape, 4, generator=g, dtype=torch.float64) * 0.8 + 0.1,
            torch.rand(*shape, 8, generator=g, dtype=torch.float64) * 0.8 + 0.1)


@pytest.mark.parametrize("u, tail", [(1.0, 0), (0.6, 0), (0.6, 2)])
def test_the_recorded_fused_unroll_is_the_fused_unroll_and_differentiable_twice(u, tail):
    g = torch.Generator().manual_seed(3)
    n = 6
    p0 = torch.rand(2, n, generator=g, dtype=torch.float64)
    action = (torch.rand(2, n, 4, generator=g, dtype=torch.float64) * 0.9).requires_grad_()
    signal = torch.rand(2, n, 8, generator=g, dtype=torch.float64).requires_grad_()
    kw = dict(horizon=12, gamma=0.95, benefit=3.0, cost=1.0, update_probability=u, tail=tail)
    fused = unroll(p0, action, signal, **kw)
    recorded = unroll(p0, action, signal, higher_order=True, **kw)
    torch.testing.assert_close(recorded, fused)
    grads = [torch.autograd.grad(v[:, 0].sum(), (action, signal), create_graph=h)
             for v, h in ((fused, False), (recorded, True))]
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(b, a)
    # the second derivative exists and matches finite differences of the first
    h = 1e-6
    second = torch.autograd.grad(grads[1][0][0, 1, 2], action)[0][0, 3, 1]
    bumped = action.detach().clone()
    bumped[0, 3, 1] += h
    up = torch.autograd.grad(unroll(p0, bumped.requires_grad_(), signal, **kw)[:, 0].sum(),
                             bumped)[0][0, 1, 2]
    down_at = action.detach().clone()
    down_at[0, 3, 1] -= h
    down = torch.autograd.grad(unroll(p0, down_at.requires_grad_(), signal, **kw)[:, 0].sum(),
                               down_at)[0][0, 1, 2]
    assert math.isclose(second.item(), ((up - down) / (2 * h)).item(), rel_tol=1e-4,
                        abs_tol=1e-9)


@pytest.mark.parametrize("scenario", ["many-learners-v0", "many-learners-audit-v0"])
def test_the_anticipated_step_is_each_learner_s_own_gradient(scenario):
    """z_j' - z_j = eta dV_j/dz_j: compare with finite differences of plain RG's model value of
    learner j, with j's row of the estimators moved in logit space (an independent reference:
    no copies, no diagonal extraction)."""
    eta = 3.0
    learner = _learner(scenario, lookahead_lr=eta)
    start, est_action, est_signal = _world(scenario)
    own_action, own_signal = _own_tables(learner)
    z_action, z_signal = learner.anticipated_logits(start, est_action, est_signal, own_action,
                                                    own_signal)
    slots = learner.focal_slots.tolist()
    mean_start = start.mean(dim=1, keepdim=True)   # the lookahead starts from the mean
    rg = ReciprocityGradient(RGConfig(horizon=8, world_model="oracle"),
                             get_scenario(scenario).env_config, learner.policy.batch_shape)
    s, i, j = 1, 2, 5           # learner i's model of learner j
    for head, z, est in (("action", z_action, est_action), ("signal", z_signal, est_signal)):
        for k in range(est.shape[-1]):
            h = 1e-5

            def v_j(delta, est=est, k=k, head=head):
                moved = est.clone()
                logit = torch.logit(moved[:, slots[j], k]) + delta
                moved[:, slots[j], k] = torch.sigmoid(logit)
                # learner i's row is its own policy (model_values puts it in), j's row the
                # estimator's, moved
                a, sg = (moved, est_signal) if head == "action" else (est_action, moved)
                values = rg.model_values(mean_start, a[:, None], sg[:, None], own_action,
                                         own_signal)           # (S, F, 1, N)
                return values[s, i, 0, slots[j]]

            fd = (v_j(h) - v_j(-h)) / (2 * h)
            z0 = torch.logit(est[s, slots[j], k])
            assert math.isclose((z[s, i, j, k] - z0).item(), eta * fd.item(), rel_tol=1e-5,
                                abs_tol=1e-9), (head, k)


@pytest.mark.parametrize("steps, world, tail", [(1, "oracle", 0), (2, "oracle", 0),
                                                (1, "learned", 0), (2, "learned", 0),
                                                (1, "oracle", 2)])
def test_the_learning_aware_gradient_equals_finite_differences(steps, world, tail):
    """d/dtheta_i V_i(theta_i, z'(theta_i)) by autograd, against central differences of the
    whole objective, and its second-order part alone (theta_i moved in the lookahead only)
    against differences of V_i(theta_0, z'(theta)); with the scenario's numbers and with a
    learned world's per-learner estimates (each learner's own numbers in its model)."""
    scenario = "many-learners-v0"
    learner = _learner(scenario, lookahead_lr=5.0, lookahead_steps=steps, world_model=world,
                       tail_rounds=tail)
    if world == "learned":
        fill_learned_world(learner.world)
    start, est_action, est_signal = _world(scenario)
    action, signal = (t.requires_grad_() for t in _own_tables(learner))
    value = learner.objective(start, est_action, est_signal, action, signal)
    grad_action, grad_signal = torch.autograd.grad(value.sum(), (action, signal))

    def shaped(a, sg, lookahead_a=None, lookahead_sg=None):
        """V (S, F) with the lookahead seeing (lookahead_a, lookahead_sg) if given."""
        la = a if lookahead_a is None else lookahead_a
        ls = sg if lookahead_sg is None else lookahead_sg
        z = learner.anticipated_logits(start, est_action, est_signal, la, ls)
        others = [learner._place(t, torch.sigmoid(zz))
                  for t, zz in zip((est_action, est_signal), z, strict=True)]
        return learner.own_entry(learner.model_values(start, *others, a, sg)).mean(dim=-1)

    # the plain (first-order) part: the lookahead frozen at theta_0
    with torch.no_grad():
        base_a, base_s = action.detach().clone(), signal.detach().clone()
    first_a, first_s = torch.autograd.grad(
        shaped(action, signal, base_a, base_s).sum(), (action, signal))
    h = 1e-6
    for head, grad, first, base in (("action", grad_action, first_a, base_a),
                                    ("signal", grad_signal, first_s, base_s)):
        for (s, f, k) in ((0, 0, 1), (1, 3, 2), (1, 6, 0)):
            up, down = base.clone(), base.clone()
            up[s, f, k] += h
            down[s, f, k] -= h
            if head == "action":
                total = shaped(up, base_s) - shaped(down, base_s)
                second = shaped(base_a, base_s, up, base_s) - shaped(base_a, base_s, down, base_s)
            else:
                total = shaped(base_a, up) - shaped(base_a, down)
                second = shaped(base_a, base_s, base_a, up) - shaped(base_a, base_s, base_a, down)
            # learner f's own tables move only its own objective's entry of (S, F)
            fd_total = (total.sum() / (2 * h)).item()
            fd_second = (second.sum() / (2 * h)).item()
            assert math.isclose(grad[s, f, k].item(), fd_total, rel_tol=1e-4, abs_tol=1e-8)
            assert math.isclose((grad - first)[s, f, k].item(), fd_second, rel_tol=1e-4,
                                abs_tol=1e-8)
    # the shaping term is there: the learning-aware gradient is not RG's
    assert (grad_action - first_a).abs().max() > 1e-4


def test_with_one_learner_the_objective_is_rg_s():
    scenario = "discriminators-vs-defectors-v0"
    learner = _learner(scenario)
    rg = ReciprocityGradient(RGConfig(horizon=8, world_model="oracle"),
                             get_scenario(scenario).env_config, learner.policy.batch_shape)
    start, est_action, est_signal = _world(scenario, dtype=torch.float32)
    own = _own_tables(learner)
    own = (own[0].float(), own[1].float())
    assert torch.equal(learner.objective(start, est_action, est_signal, *own),
                       rg.objective(start, est_action, est_signal, *own))


SINGLE = [s for s in scenarios() if get_scenario(s).num_focal == 1]


@pytest.mark.parametrize("scenario", SINGLE)
def test_rg_la_trains_to_rg_s_tables_on_single_learner_scenarios(scenario):
    """Every single-learner catalogue scenario: the same run with rg-la and rg ends at the
    same tables, bit for bit (and the same payoff)."""
    small = dict(scenario=scenario, seeds=(0, 1), rounds=40, num_envs=2, eval_envs=4,
                 eval_rounds=10, eval_burn_in=0)
    results = [train(TrainConfig(algo=algo, **small), progress=False)
               for algo in ("rg", "rg-la")]
    for rg, la in zip(*results, strict=True):
        assert la["algo"] == "rg-la" and rg["algo"] == "rg"
        assert la["policies"] == rg["policies"]
        assert la["per_interaction_payoff"] == rg["per_interaction_payoff"]


def test_rg_la_is_declared_searched_like_the_others_and_validated():
    algorithm = get_algorithm("rg-la")
    assert algorithm.learner is LearningAwareRG and not algorithm.sample_based
    for policy in ("tabular", "mlp"):
        space = algorithm.search_space(policy)
        assert math.prod(len(v) for v in space.values()) == 720
        assert {"lookahead_lr", "lookahead_steps"} <= set(space)
    for bad, field in (({"lookahead_lr": -1.0}, "lookahead_lr"),
                       ({"lookahead_steps": 0}, "lookahead_steps")):
        with pytest.raises(ValueError, match=field):
            RGLAConfig(**bad)
    # the lookahead costs more than RG's update, and says so to the scheduler
    assert algorithm.relative_cost(RGLAConfig(), 10) > \
        get_algorithm("rg").relative_cost(RGConfig(), 10)
